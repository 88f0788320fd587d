package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// Claim bounds.
const (
	maxClaimTasks  = 100
	maxClaimLists  = 100
	maxWorkerIDLen = 200
	minLeaseTTL    = time.Second
	maxLeaseTTL    = time.Hour
	maxErrorBytes  = 64 << 10
	// claimPoll is the long poll's safety net, should a wakeup be missed.
	claimPoll = 5 * time.Second
)

func badField(field, format string, args ...any) error {
	return &api.FieldError{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// claim leases up to req.Max ready tasks to a remote worker, waiting up to
// wait for one to become ready.
func (s *Server) claim(w http.ResponseWriter, r *http.Request) {
	var req api.ClaimRequest
	if err := decode(w, r, smallBodyBytes, &req); err != nil {
		s.respondErr(w, r, err)
		return
	}
	creq, limit, wait, err := claimParams(req)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.registry.touch(r, creq)
	ctx := r.Context()
	// Subscribing before the first claim means a task enqueued between
	// the claim and the wait still wakes us.
	wake, stop := s.st.Subscribe()
	defer stop()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	names := make([]string, len(creq.Queues))
	for i, q := range creq.Queues {
		names[i] = q.Queue
	}
	for {
		tasks, err := s.claimUpTo(r, creq, limit)
		if err != nil {
			s.respondErr(w, r, err)
			return
		}
		if len(tasks) > 0 || wait <= 0 {
			out := api.ClaimResponse{Tasks: make([]api.ClaimedTask, len(tasks))}
			for i, t := range tasks {
				out.Tasks[i] = api.ClaimedTask{Task: api.FromTask(t), LeaseToken: leaseToken(t.ID, t.LeaseEpoch, creq.LeaseTTL, len(t.LimitKeys) > 0), LeaseExpiresAt: t.LeaseExpiresAt.UTC()}
				if k, ok := s.cfg.Kinds[t.Kind]; ok && t.AttemptTimeout <= 0 && k.Timeout > 0 {
					// Bounded as the kind's in-process attempts are.
					out.Tasks[i].Timeout = k.Timeout.String()
				}
				if t.FlowID != "" {
					// A child reads its parents' outcomes by key. Should
					// the read fail, the claim fails as a lost answer
					// would: the leases expire and the tasks are rescued.
					ps, err := s.st.Parents(ctx, t.ID)
					if err != nil {
						s.respondErr(w, r, err)
						return
					}
					out.Tasks[i].Parents = api.FromParents(ps)
				}
			}
			s.metrics.claimed.Add(float64(len(tasks)))
			if err := s.claimedSignals(ctx, out.Tasks); err != nil {
				s.respondErr(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		next := claimPoll
		if at, ok, err := s.st.NextRunAt(ctx, names, creq.Kinds); err == nil && ok {
			next = min(next, max(time.Until(at), time.Millisecond))
		}
		timer := time.NewTimer(next)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.drained:
			wait = 0
		case <-deadline.C:
			wait = 0
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// claimUpTo claims at most limit tasks in all: one queue after another,
// each asked only for what is still missing.
func (s *Server) claimUpTo(r *http.Request, req store.ClaimRequest, limit int) ([]*store.Task, error) {
	var out []*store.Task
	for _, q := range req.Queues {
		one := req
		one.Queues = []store.QueueClaim{{Queue: q.Queue, Limit: limit - len(out)}}
		tasks, err := s.st.Claim(r.Context(), one)
		if err != nil {
			return out, err
		}
		out = append(out, tasks...)
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

func claimParams(req api.ClaimRequest) (store.ClaimRequest, int, time.Duration, error) {
	var zero store.ClaimRequest
	if err := checkWorkerID(req.WorkerID); err != nil {
		return zero, 0, 0, err
	}
	queues := req.Queues
	if len(queues) == 0 {
		queues = []string{store.DefaultQueue}
	}
	if len(queues) > maxClaimLists || len(req.Kinds) > maxClaimLists {
		field := "queues"
		if len(req.Kinds) > maxClaimLists {
			field = "kinds"
		}
		return zero, 0, 0, badField(field, "at most %d queues and %d kinds per claim", maxClaimLists, maxClaimLists)
	}
	out := store.ClaimRequest{Owner: req.WorkerID, LeaseTTL: defaultLeaseTTL}
	seen := map[string]bool{}
	for i, q := range queues {
		if !store.ValidName(q) {
			return zero, 0, 0, badField(fmt.Sprintf("queues[%d]", i), "%q is not a valid queue name", q)
		}
		if !seen[q] {
			seen[q] = true
			out.Queues = append(out.Queues, store.QueueClaim{Queue: q})
		}
	}
	for i, k := range req.Kinds {
		if !store.ValidName(k) {
			return zero, 0, 0, badField(fmt.Sprintf("kinds[%d]", i), "%q is not a valid kind name", k)
		}
	}
	out.Kinds = req.Kinds
	if err := store.CheckLabels(req.Labels); err != nil {
		return zero, 0, 0, err
	}
	out.Labels = req.Labels
	limit := req.Max
	if limit == 0 {
		limit = 1
	}
	if limit < 1 || limit > maxClaimTasks {
		return zero, 0, 0, badField("max", "%d is out of range (1-%d)", req.Max, maxClaimTasks)
	}
	wait, err := durationField("wait", req.Wait, 0, 0, maxClaimWait)
	if err != nil {
		return zero, 0, 0, err
	}
	ttl, err := durationField("lease_ttl", req.LeaseTTL, defaultLeaseTTL, minLeaseTTL, maxLeaseTTL)
	if err != nil {
		return zero, 0, 0, err
	}
	out.LeaseTTL = ttl
	return out, limit, wait, nil
}

func checkWorkerID(id string) error {
	if id == "" {
		return badField("worker_id", "must not be empty: name the worker (for example host-pid)")
	}
	if len(id) > maxWorkerIDLen {
		return badField("worker_id", "%d bytes exceeds the limit of %d", len(id), maxWorkerIDLen)
	}
	for _, c := range id {
		if !unicode.IsPrint(c) || c == unicode.ReplacementChar {
			return badField("worker_id", "must be printable text")
		}
	}
	return nil
}

// durationField parses an optional Go duration within [lo, hi].
func durationField(field, v string, def, lo, hi time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, badField(field, "%q is not a duration (for example \"30s\")", v)
	}
	if d < lo || d > hi {
		return 0, badField(field, "%s is out of range (%s to %s)", d, lo, hi)
	}
	return d, nil
}

// A lease token names the task, the epoch of the claim that leased it,
// the claim's lease TTL (the default of later heartbeats) and, with a
// fourth part "l", that the task draws on limits. The epoch is what
// fences: a token from an earlier claim is refused once the task was
// rescued or claimed again. The limits mark lets a completion, which
// reads nothing, still send its outcome to the path that frees the
// task's slots (store.Outcome.Limited); tokens without it, issued before
// limits existed, stay valid.
func leaseToken(id string, epoch int64, ttl time.Duration, limited bool) string {
	raw := id + ":" + strconv.FormatInt(epoch, 10) + ":" + strconv.FormatInt(ttl.Milliseconds(), 10)
	if limited {
		raw += ":l"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// lease is what a lease token says.
type lease struct {
	epoch   int64
	ttl     time.Duration
	limited bool
}

func parseLeaseToken(id, token string) (lease, error) {
	if token == "" {
		return lease{}, badField("lease_token", "must not be empty: use the lease_token of the claimed task")
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	parts := strings.Split(string(raw), ":")
	limited := len(parts) == 4 && parts[3] == "l"
	if err != nil || (len(parts) != 3 && !limited) {
		return lease{}, badField("lease_token", "not a lease token issued by this API")
	}
	epoch, eerr := strconv.ParseInt(parts[1], 10, 64)
	ms, terr := strconv.ParseInt(parts[2], 10, 64)
	ttl := time.Duration(ms) * time.Millisecond
	if eerr != nil || terr != nil || epoch < 1 || ttl < minLeaseTTL || ttl > maxLeaseTTL {
		return lease{}, badField("lease_token", "not a lease token issued by this API")
	}
	if parts[0] != id {
		return lease{}, badField("lease_token", "the token is for task %s, not %s", parts[0], id)
	}
	return lease{epoch: epoch, ttl: ttl, limited: limited}, nil
}

// decodeLeased decodes a worker write's body into req and checks its lease
// token (token points into req) against the task in the path, answering
// the error itself when either fails.
func (s *Server) decodeLeased(w http.ResponseWriter, r *http.Request, req any, token *string) (string, lease, bool) {
	if err := decode(w, r, smallBodyBytes, req); err != nil {
		s.respondErr(w, r, err)
		return "", lease{}, false
	}
	id := r.PathValue("id")
	l, err := parseLeaseToken(id, *token)
	if err != nil {
		s.respondErr(w, r, err)
		return "", lease{}, false
	}
	return id, l, true
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	var req api.HeartbeatRequest
	id, l, ok := s.decodeLeased(w, r, &req, &req.LeaseToken)
	if !ok {
		return
	}
	ttl, err := durationField("lease_ttl", req.LeaseTTL, l.ttl, minLeaseTTL, maxLeaseTTL)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	expires := time.Now().Add(ttl).Truncate(time.Microsecond)
	cancel, err := s.st.ExtendLease(r.Context(), id, l.epoch, ttl)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.HeartbeatResponse{LeaseExpiresAt: expires.UTC(), CancelRequested: cancel})
}

func (s *Server) progress(w http.ResponseWriter, r *http.Request) {
	var req api.ProgressRequest
	id, l, ok := s.decodeLeased(w, r, &req, &req.LeaseToken)
	if !ok {
		return
	}
	if len(req.Progress) == 0 {
		s.respondErr(w, r, badField("progress", "must be given (any JSON value)"))
		return
	}
	if err := store.CheckProgress(req.Progress, store.Limits{}); err != nil {
		s.respondErr(w, r, err)
		return
	}
	if err := s.st.Progress(r.Context(), id, l.epoch, req.Progress); err != nil {
		s.respondErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request) {
	var req api.CompleteRequest
	id, l, ok := s.decodeLeased(w, r, &req, &req.LeaseToken)
	if !ok {
		return
	}
	v, err := completeVerdict(req.Result)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.finish(w, r, id, l, v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request) {
	var req api.FailRequest
	id, l, ok := s.decodeLeased(w, r, &req, &req.LeaseToken)
	if !ok {
		return
	}
	v, err := failVerdict(req)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.finish(w, r, id, l, v)
}

// completeVerdict reads a completion's result.
func completeVerdict(result json.RawMessage) (engine.Verdict, error) {
	if err := store.CheckProgress(result, store.Limits{}); err != nil {
		return engine.Verdict{}, &api.FieldError{Status: http.StatusUnprocessableEntity, Field: "result", Message: strings.TrimPrefix(err.Error(), "invalid progress: ")}
	}
	return engine.Verdict{Action: engine.Complete, Result: result}, nil
}

// failVerdict reads what the worker asked for; the options exclude each
// other.
func failVerdict(req api.FailRequest) (engine.Verdict, error) {
	if strings.TrimSpace(req.Error) == "" {
		return engine.Verdict{}, badField("error", "must say what went wrong")
	}
	msg := req.Error
	if len(msg) > maxErrorBytes {
		msg = msg[:maxErrorBytes] + " [truncated]"
	}
	v := engine.Verdict{Action: engine.Retry, Err: errors.New(msg)}
	var set []string
	if req.Permanent {
		v.Action, set = engine.Fail, append(set, "permanent")
	}
	if req.Cancel {
		v.Action, set = engine.Cancel, append(set, "cancel")
	}
	if req.RetryIn != "" {
		d, err := durationField("retry_in", req.RetryIn, 0, 0, 365*24*time.Hour)
		if err != nil {
			return v, err
		}
		v.Delay, set = d, append(set, "retry_in")
	}
	if req.Snooze != "" {
		d, err := durationField("snooze", req.Snooze, 0, 0, 365*24*time.Hour)
		if err != nil {
			return v, err
		}
		v.Action, v.Delay, set = engine.Snooze, d, append(set, "snooze")
	}
	if req.RateLimited {
		if req.Snooze == "" {
			return v, badField("rate_limited", "needs snooze: the delay until the upstream takes requests again (its Retry-After)")
		}
		v.RateLimited = true
	}
	if len(set) > 1 {
		return v, badField(set[1], "%s and %s exclude each other: give at most one of permanent, cancel, retry_in and snooze", set[0], set[1])
	}
	return v, nil
}

// finish records one remote attempt's outcome.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, id string, l lease, v engine.Verdict) {
	ctx := r.Context()
	now := time.Now().Truncate(time.Microsecond)
	o, t, err := s.decide(ctx, id, l, v, now)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	res, err := s.st.Finish(ctx, []store.Outcome{o})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	if s.cfg.LogOutcomes {
		engine.LogOutcome(s.log, t, o, res[0], time.Time{}, now)
	}
	writeJSON(w, http.StatusOK, recorded(o, res[0]))
}

// decide turns a remote attempt's verdict into the outcome to record,
// through the same decision rules as in-process handlers. A failure is
// decided by the retry policy of the task's kind, and needs the task as
// stored: its kind, its attempt count and whether its cancellation was
// requested. The epoch check made here is repeated, fenced, by the write
// itself. It returns the task as far as it knows it: only its id and
// epoch for a completion, which needs no read.
func (s *Server) decide(ctx context.Context, id string, l lease, v engine.Verdict, now time.Time) (store.Outcome, *store.Task, error) {
	t := &store.Task{ID: id, LeaseEpoch: l.epoch}
	var cause error
	if v.Action != engine.Complete {
		var err error
		if t, err = s.st.Get(ctx, id); err != nil {
			return store.Outcome{}, nil, err
		}
		if t.State != store.StateRunning || t.LeaseEpoch != l.epoch {
			return store.Outcome{}, nil, store.ErrLeaseLost
		}
		if t.CancelRequested {
			cause = engine.ErrCancelRequested
		}
	}
	o := engine.Decide(t, v, cause, s.backoff(t.Kind), now)
	// A completion read no task: its token says whether it draws on
	// limits.
	o.Limited = o.Limited || l.limited
	return o, t, nil
}

// recorded answers an outcome that Finish recorded as r says.
func recorded(o store.Outcome, r store.FinishResult) api.Outcome {
	out := api.Outcome{ID: o.TaskID, State: string(r.State)}
	if r.State == store.StatePending {
		at := o.RunAt.UTC()
		out.RunAt = &at
	}
	return out
}

// backoff is the retry policy of a remote failure of kind: the kind's own
// when this process registered it with one, else the default, since the
// worker's policy is not known here.
func (s *Server) backoff(kind string) func(attempt int) time.Duration {
	if k, ok := s.cfg.Kinds[kind]; ok && k.Backoff != nil {
		return k.Backoff
	}
	return engine.DefaultBackoff
}
