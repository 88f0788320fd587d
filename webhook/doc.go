// Package webhook is Weft's built-in "http" task kind: a task that makes one
// HTTP request, retried durably until the receiver accepts it. Applications
// register it once and then enqueue webhooks like any other task:
//
//	webhook.Register(workers, webhook.Config{DenyPrivate: true})
//	client.Enqueue(ctx, webhook.Args{URL: "https://example.com/hook", Body: body}, nil)
//
// Stored as JSON, the args are:
//
//	{
//	  "url":     "https://example.com/hook",   // required; http or https
//	  "method":  "POST",                       // GET, POST, PUT, PATCH, DELETE or HEAD; default POST
//	  "headers": {"Authorization": "Bearer …"},
//	  "body":    {"event": "paid"},            // any JSON value; see below
//	  "timeout": "10s"                         // per attempt; default Config.Timeout
//	}
//
// A body that is a JSON string is sent as its text, with Content-Type
// text/plain; charset=utf-8, so that form posts and signed payloads arrive
// byte for byte; any other JSON value is sent as JSON, with Content-Type
// application/json. A Content-Type in headers wins over either.
//
// Every request carries the headers Weft-Task-Id (the task's id, the same on
// every attempt) and Weft-Attempt (1, 2, …). Delivery is at least once — a
// worker can die after the receiver acted but before the outcome was
// recorded — so receivers that must act once should deduplicate on
// Weft-Task-Id.
//
// The status decides the outcome:
//
//   - 2xx completes the task; its result is a Result: the status, the
//     response's Content-Type and the body as text, cut to
//     Config.MaxResponseBytes.
//   - 408, 429 and 5xx retry: after the delay the Retry-After header asks for
//     (seconds or an HTTP date, at most 24h), otherwise after the kind's
//     backoff. Network errors and timeouts retry with backoff too.
//   - Any other status — other 4xx, or a 3xx left unfollowed (after 10
//     redirects, or without a Location) — fails the task at once, since
//     sending the same request again would get the same answer. The error
//     names the status and the start of the body. So does a redirect to a
//     scheme other than http or https.
//   - Invalid args fail the task at once with an error naming the field,
//     such as "args.url: scheme "ftp" is not http or https".
//
// When URLs come from users, set Config.DenyPrivate: the worker then refuses
// to connect to loopback, private, link-local, shared (CGNAT), unspecified
// and multicast addresses, so that a webhook cannot be aimed at the
// services inside the network it runs in. The check is made on the address
// actually dialled, after DNS resolution, for the first request and every
// redirect alike, so neither a hostname that resolves to 10.0.0.1 nor a
// redirect to http://169.254.169.254/ gets through. A refused address fails
// the task at once ("refused: 10.0.0.1 is a private address").
package webhook
