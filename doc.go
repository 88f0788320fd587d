// Package weft is the embedding API of Weft, a durable task and workflow
// engine: applications enqueue tasks, Weft stores them durably and runs them
// on typed Go workers under fenced leases, retrying failures with backoff.
//
// A Client sits on a storage backend — store/sqlite, embedded and the
// default, or store/postgres for many nodes on one database; one
// conformance suite (store/storetest) holds both to the same contract —
// and, when started with workers, claims and runs tasks:
//
//	st, _ := sqlite.Open(ctx, "weft.db", nil)
//	workers := weft.NewWorkers()
//	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[EmailArgs]) error {
//		return send(ctx, t.Args.To)
//	})
//	client, _ := weft.NewClient(st, &weft.Config{Workers: workers})
//	_ = client.Start(ctx)
//	_, _ = client.Enqueue(ctx, EmailArgs{To: "a@example.com"}, nil)
//
// Execution is at least once; recording an outcome is exactly once: every
// write of an attempt names its lease epoch, and a stale epoch is refused
// with ErrLeaseLost. A started client claims ahead of its free workers into
// local run queues sized to a few tens of milliseconds of its throughput,
// and hands those tasks back at once, without spending an attempt, when it
// stops.
//
// Validation happens once, in store.Prepare, for every entry path (this
// package, the HTTP API, the CLI); the rules of every state transition are
// decided once, in package store, and applied by each backend.
package weft
