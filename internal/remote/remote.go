// Package remote is the engine's source for `weft worker`: a Weft server's
// HTTP API. Claims long-poll POST /v1/claims, lease renewals are
// heartbeats, output frames are numbered so a retried request stores them
// once, and the attempts the engine finished are reported together
// with POST /v1/outcomes, each handler's verdict translated into the
// options of a failure, so that the server decides the outcome by the
// retry policy it knows for the kind. Handlers read their flow parents from
// the claim, add flow members, create and read waitpoints with the tokens
// the server signs, and suspend on them, as they do in process.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// Bounds of the API (see docs/api.md).
const (
	// maxClaim is the most tasks one claim may ask for.
	maxClaim = 100
	// maxDelay is the longest retry_in or snooze a fail request may give.
	maxDelay = 365 * 24 * time.Hour
)

// reportTimeout bounds one report request; an outcome that could not be
// reported in time is reported again.
const reportTimeout = 30 * time.Second

// maxReportBytes bounds the outcomes of one batch report, well within the
// server's 32 MiB limit on its body, as estimate counts them.
const maxReportBytes = 8 << 20

// Config configures a Source.
type Config struct {
	// Client calls the server.
	Client *apiclient.Client
	// Wait is how long one claim waits for a task when none is ready.
	// Default 30s; the server allows at most 60s.
	Wait time.Duration
	// Logger receives a record per reported attempt. Default
	// slog.Default().
	Logger *slog.Logger
}

// Source is an engine.Source over the HTTP API, and its FlowSource,
// WaitSource, TokenSource and StreamSource. It is not an engine.Notifier:
// its claims wait for work on the server, and cancel requests arrive with
// heartbeats.
//
// The server's lease epochs are inside its opaque lease tokens, so the
// tasks a Source hands the engine carry epochs of the Source's own, one per
// claim, which name the lease token to use.
type Source struct {
	c       *apiclient.Client
	wait    time.Duration
	log     *slog.Logger
	refused chan error

	// oneByOne is set once the server turned out not to take batch
	// reports.
	oneByOne atomic.Bool

	mu     sync.Mutex
	leases map[string]*lease // by task id: claimed and not yet reported
	epoch  int64             // the last epoch handed out
}

// lease is one claimed task's lease.
type lease struct {
	epoch int64
	token string
	// expires is when the lease ends unless a heartbeat extends it: after
	// that, the engine no longer counts on the task (see ExtendLeases).
	expires time.Time
	// reported is set, with result, once the attempt's outcome was
	// recorded by a Finish that has to be repeated for other attempts.
	reported bool
	result   store.FinishResult
	// stream is the attempt's output stream as this worker wrote it.
	stream *stream
	// parents are a flow member's parents' outcomes, as its claim carried
	// them.
	parents []store.ParentOutcome
	// tokens are the tokens the server answered for the task's
	// waitpoints, by waitpoint id.
	tokens map[string]string
}

// stream numbers the frames one claim writes — 1, 2, 3... as the server
// counts them per claim — so that a request the server stored but whose
// answer was lost is stored once when sent again.
type stream struct {
	// mu is held across a request, so that frames go out in order.
	mu sync.Mutex
	// stored counts the frames the server acknowledged; unsent are the
	// frames after them of a request that failed without an answer, sent
	// again before the next ones.
	stored int64
	unsent []api.FrameInput
}

// The engine finds what a Source serves beyond claims by these
// interfaces.
var _ interface {
	engine.Source
	engine.FlowSource
	engine.WaitSource
	engine.TokenSource
	engine.StreamSource
} = (*Source)(nil)

// New returns a Source for cfg.
func New(cfg Config) *Source {
	if cfg.Wait <= 0 {
		cfg.Wait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Source{c: cfg.Client, wait: cfg.Wait, log: cfg.Logger, refused: make(chan error, 1), leases: make(map[string]*lease)}
}

// Refused receives the error of a claim that the server refused outright
// (a wrong token, a request it will never accept): claiming again cannot
// succeed, so the worker should stop.
func (s *Source) Refused() <-chan error { return s.refused }

// Claim asks the server for tasks, waiting up to Config.Wait for one. The
// API takes one limit for all queues; the smallest of the queues' limits
// never hands a queue more tasks than it has room for. req.NotResumable is
// not sent: the API has no such option, so a remote worker's orphaned
// tasks are rescued as resumable ones.
func (s *Source) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Task, error) {
	creq := api.ClaimRequest{WorkerID: req.Owner, Kinds: req.Kinds, Max: maxClaim, Wait: s.wait.String(), LeaseTTL: req.LeaseTTL.String(), Labels: req.Labels}
	for _, q := range req.Queues {
		creq.Queues = append(creq.Queues, q.Queue)
		creq.Max = min(creq.Max, q.Limit)
	}
	resp, err := s.c.Claim(ctx, creq)
	if err != nil {
		if refusal(err) {
			select {
			case s.refused <- err:
			default:
			}
		}
		return nil, fmt.Errorf("claim: %w", err)
	}
	tasks := make([]*store.Task, len(resp.Tasks))
	expires := time.Now().Add(req.LeaseTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ct := range resp.Tasks {
		s.epoch++
		s.leases[ct.ID] = &lease{epoch: s.epoch, token: ct.LeaseToken, expires: expires, stream: &stream{}, parents: toParents(ct.Parents)}
		tasks[i] = toTask(ct, s.epoch)
	}
	return tasks, nil
}

// toTask is a claimed task as the engine runs it, under the Source's epoch.
func toTask(ct api.ClaimedTask, epoch int64) *store.Task {
	t := &store.Task{
		ID: ct.ID, Kind: ct.Kind, Queue: ct.Queue, Args: ct.Args, Priority: ct.Priority,
		State: store.StateRunning, RunAt: ct.RunAt, Attempt: ct.Attempt, MaxAttempts: ct.MaxAttempts,
		Metadata: ct.Metadata, LeaseOwner: ct.Worker, LeaseEpoch: epoch, LeaseExpiresAt: ct.LeaseExpiresAt,
		CancelRequested: ct.CancelRequested, CreatedAt: ct.CreatedAt, FlowID: ct.FlowID, FlowKey: ct.Key,
		LimitKeys: ct.Limits, Cost: ct.Cost, FairnessKey: ct.FairnessKey,
		Errors: toAttemptErrors(ct.Errors),
	}
	if d, err := time.ParseDuration(ct.Timeout); err == nil && d > 0 {
		t.AttemptTimeout = d
	}
	if ct.AttemptedAt != nil {
		t.AttemptedAt = *ct.AttemptedAt
	}
	return t
}

// toAttemptErrors converts the errors of a task's attempts.
func toAttemptErrors(in []api.AttemptError) []store.AttemptError {
	out := make([]store.AttemptError, len(in))
	for i, e := range in {
		out[i] = store.AttemptError{Attempt: e.Attempt, At: e.At, Error: e.Error, Stack: e.Stack}
	}
	return out
}

// ExtendLeases sends a heartbeat for every lease not yet reported, at
// once, and returns those the server still holds for this worker.
//
// A heartbeat that fails (the network, the server) leaves its lease
// counted as held, since it may well be: the next renewal tries again. But
// a lease no heartbeat has extended for a whole TTL is dropped, as the
// engine drops its handler then: otherwise a task the engine gave up on
// would be kept leased for as long as this process lives. Only when every
// heartbeat failed does the call fail.
func (s *Source) ExtendLeases(ctx context.Context, _ string, ttl time.Duration) ([]store.Lease, error) {
	type beat struct {
		id string
		l  lease
	}
	now := time.Now()
	var beats []beat
	s.mu.Lock()
	for id, l := range s.leases {
		switch {
		case l.reported:
		case now.After(l.expires):
			delete(s.leases, id)
		default:
			beats = append(beats, beat{id, *l})
		}
	}
	s.mu.Unlock()

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		held    []store.Lease
		failed  int
		lastErr error
	)
	for _, b := range beats {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, ttl/3)
			defer cancel()
			started := time.Now()
			resp, err := s.c.Heartbeat(hctx, b.id, api.HeartbeatRequest{LeaseToken: b.l.token, LeaseTTL: ttl.String()})
			switch {
			case err == nil:
				s.extended(b.id, b.l.epoch, started.Add(ttl))
			case gone(err):
				s.drop(b.id, b.l.epoch)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				lastErr = err
			}
			held = append(held, store.Lease{TaskID: b.id, Epoch: b.l.epoch, CancelRequested: err == nil && resp.CancelRequested})
		})
	}
	wg.Wait()
	if failed > 0 && failed == len(beats) {
		return nil, fmt.Errorf("heartbeat: %w", lastErr)
	}
	return held, nil
}

// extended records a heartbeat's new lease expiry.
func (s *Source) extended(id string, epoch int64, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[id]; ok && l.epoch == epoch {
		l.expires = expires
	}
}

// drop forgets a lease the server no longer holds.
func (s *Source) drop(id string, epoch int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[id]; ok && l.epoch == epoch {
		delete(s.leases, id)
	}
}

// token is the lease token of the attempt of task id under epoch, if this
// Source still holds it and has not reported it.
func (s *Source) token(id string, epoch int64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[id]
	if !ok || l.epoch != epoch || l.reported {
		return "", false
	}
	return l.token, true
}

// Progress sends a progress report under the attempt's lease.
func (s *Source) Progress(ctx context.Context, taskID string, epoch int64, data json.RawMessage) error {
	tok, ok := s.token(taskID, epoch)
	if !ok {
		return store.ErrLeaseLost
	}
	err := s.c.Progress(ctx, taskID, api.ProgressRequest{LeaseToken: tok, Progress: data})
	if gone(err) {
		return fmt.Errorf("%w: %w", store.ErrLeaseLost, err)
	}
	return err
}

// AppendFrames sends frames under the attempt's lease (POST
// /v1/tasks/{id}/stream), numbered as the claim's next frames, and returns
// them as stored. Frames are checked first (store.CheckFrames). When a
// request fails without an answer (the network, the server), its frames
// are sent again, alone and under the same numbers, before the next
// call's: the server stores them once whether or not it had them. A
// refusal (a full stream) means nothing was stored, and the numbers are
// used again.
func (s *Source) AppendFrames(ctx context.Context, taskID string, epoch int64, frames []store.NewFrame) ([]store.Frame, error) {
	if err := store.CheckFrames(frames); err != nil {
		return nil, err
	}
	s.mu.Lock()
	l, ok := s.leases[taskID]
	if !ok || l.epoch != epoch || l.reported {
		s.mu.Unlock()
		return nil, store.ErrLeaseLost
	}
	tok, st := l.token, l.stream
	s.mu.Unlock()

	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.unsent) > 0 {
		if _, err := s.sendFrames(ctx, taskID, tok, st, st.unsent); err != nil {
			return nil, err
		}
	}
	in := make([]api.FrameInput, len(frames))
	for i, f := range frames {
		data := json.RawMessage(f.Data)
		if f.Kind == store.FrameText {
			data, _ = json.Marshal(string(f.Data))
		}
		in[i] = api.FrameInput{Seq: st.stored + int64(i) + 1, Kind: string(f.Kind), Data: data}
	}
	stored, err := s.sendFrames(ctx, taskID, tok, st, in)
	if err != nil {
		return nil, err
	}
	out := make([]store.Frame, len(frames))
	for i, f := range stored {
		out[i] = store.Frame{Seq: f.Seq, Attempt: f.Attempt, At: f.At, Kind: frames[i].Kind, Data: frames[i].Data}
	}
	return out, nil
}

// sendFrames sends one request of frames numbered after st.stored, and
// counts them stored once answered. Without an answer they are kept in
// st.unsent to be sent again; refused, they were not stored and are
// dropped.
func (s *Source) sendFrames(ctx context.Context, taskID, tok string, st *stream, in []api.FrameInput) ([]api.Frame, error) {
	resp, err := s.c.AppendStream(ctx, taskID, api.StreamRequest{LeaseToken: tok, Frames: in})
	switch {
	case gone(err):
		return nil, fmt.Errorf("%w: %w", store.ErrLeaseLost, err)
	case refusal(err):
		st.unsent = nil
		return nil, fmt.Errorf("stream: %w", err)
	case err == nil && len(resp.Frames) != len(in):
		err = fmt.Errorf("the server answered %d frames for %d", len(resp.Frames), len(in))
	}
	if err != nil {
		st.unsent = in
		return nil, fmt.Errorf("stream: %w", err)
	}
	st.stored += int64(len(in))
	st.unsent = nil
	return resp.Frames, nil
}

// Finish reports the attempts in one request (POST /v1/outcomes), or in
// several when they are more, or larger, than one request takes; to a
// server without that route, with one complete or fail each. When some
// could not be reported (the network, the server), it fails, and remembers
// what the others got so that the engine's next call, with the same
// attempts, reports only the rest.
func (s *Source) Finish(ctx context.Context, batch []engine.Finished) ([]store.FinishResult, error) {
	results := make([]store.FinishResult, len(batch))
	errs := make([]error, len(batch))
	// Suspensions have a route of their own (POST /v1/tasks/{id}/wait).
	var todo, waits []unreported
	s.mu.Lock()
	for i := range batch {
		f := &batch[i]
		l, ok := s.leases[f.Task.ID]
		switch {
		case !ok || l.epoch != f.Task.LeaseEpoch:
			// Dropped by a heartbeat that found the lease gone, or
			// for want of heartbeats: the server no longer counts on
			// this attempt either.
			results[i].Err = store.ErrLeaseLost
		case l.reported:
			results[i] = l.result
		case suspends(f):
			waits = append(waits, unreported{i: i, token: l.token})
		default:
			todo = append(todo, unreported{i: i, token: l.token})
		}
	}
	s.mu.Unlock()
	if !s.oneByOne.Load() {
		err := s.reportBatches(ctx, batch, todo, results, errs)
		if !errors.Is(err, apiclient.ErrNotFound) {
			todo = nil
		} else {
			// Only a server without the route answers the whole
			// request 404: an older version, which takes complete
			// and fail.
			s.oneByOne.Store(true)
			s.log.Warn("the server has no POST /v1/outcomes (an older version); reporting outcomes one by one")
			todo = slices.DeleteFunc(todo, func(u unreported) bool { return errs[u.i] == nil })
			for _, u := range todo {
				errs[u.i] = nil
			}
		}
	}
	s.reportEach(ctx, batch, append(todo, waits...), results, errs)

	failed := errors.Join(errs...)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		id := batch[i].Task.ID
		l, ok := s.leases[id]
		if !ok || l.epoch != batch[i].Task.LeaseEpoch || errs[i] != nil {
			continue
		}
		if failed != nil {
			l.reported, l.result = true, results[i]
			continue
		}
		delete(s.leases, id)
		s.logReport(&batch[i], results[i])
	}
	if failed != nil {
		return nil, fmt.Errorf("report outcomes: %w", failed)
	}
	return results, nil
}

// unreported is an attempt of a Finish batch still to be reported: its
// index in the batch and its lease token.
type unreported struct {
	i     int
	token string
}

// reportBatches reports the attempts todo of batch in as few requests as
// they fit in, one request after another. A request that fails is not
// followed by more: its error is set in errs for its attempts and every
// later one, and returned.
func (s *Source) reportBatches(ctx context.Context, batch []engine.Finished, todo []unreported, results []store.FinishResult, errs []error) error {
	for len(todo) > 0 {
		in := make([]api.OutcomeInput, 0, min(len(todo), api.MaxOutcomes))
		size := 0
		for _, u := range todo[:min(len(todo), api.MaxOutcomes)] {
			o := outcomeInput(u.token, &batch[u.i])
			size += estimate(o)
			if len(in) > 0 && size > maxReportBytes {
				break
			}
			in = append(in, o)
		}
		res, err := s.reportBatch(ctx, in)
		if err != nil {
			for _, u := range todo {
				errs[u.i] = err
			}
			return err
		}
		for k, r := range res {
			results[todo[k].i] = r
		}
		todo = todo[len(in):]
	}
	return nil
}

// reportBatch sends one request's outcomes. Its error is for a failure of
// the whole request, when nothing was recorded and asking again may
// succeed; the server's refusals are in the results, one per outcome.
func (s *Source) reportBatch(ctx context.Context, in []api.OutcomeInput) ([]store.FinishResult, error) {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	resp, err := s.c.ReportOutcomes(ctx, in)
	res := make([]store.FinishResult, len(in))
	switch {
	case refusal(err) && !errors.Is(err, apiclient.ErrNotFound):
		// Refused outright, as a single report of each would be.
		for k := range res {
			res[k].Err = err
		}
		return res, nil
	case err != nil:
		return nil, err
	case len(resp.Outcomes) != len(in):
		return nil, fmt.Errorf("the server answered %d results for %d outcomes", len(resp.Outcomes), len(in))
	}
	for k, r := range resp.Outcomes {
		res[k] = finishResult(r.State, apiclient.OutcomeErr(r))
	}
	return res, nil
}

// reportEach reports the attempts todo of batch with one complete, fail or
// wait request each, at once: suspensions, and the other outcomes for a
// server without the batch route.
func (s *Source) reportEach(ctx context.Context, batch []engine.Finished, todo []unreported, results []store.FinishResult, errs []error) {
	var wg sync.WaitGroup
	for _, u := range todo {
		wg.Go(func() { results[u.i], errs[u.i] = s.report(ctx, u.token, &batch[u.i]) })
	}
	wg.Wait()
}

// report sends one attempt's outcome. Its error is for a failure worth
// trying again; the server's refusals are in the result.
func (s *Source) report(ctx context.Context, token string, f *engine.Finished) (store.FinishResult, error) {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	var (
		out api.Outcome
		err error
	)
	switch {
	case f.Verdict.Action == engine.Complete:
		out, err = s.c.Complete(ctx, f.Task.ID, api.CompleteRequest{LeaseToken: token, Result: f.Verdict.Result})
	case suspends(f):
		out, err = s.suspend(ctx, token, f)
	default:
		out, err = s.c.Fail(ctx, f.Task.ID, failRequest(token, f))
	}
	if err != nil && !refusal(err) {
		return store.FinishResult{}, err
	}
	return finishResult(out.State, err), nil
}

// finishResult is what the server answered one outcome: the state it
// recorded, or its refusal, a lost lease or a task that no longer exists
// read as store.ErrLeaseLost.
func finishResult(state string, err error) store.FinishResult {
	switch {
	case err == nil:
		return store.FinishResult{State: store.State(state)}
	case gone(err):
		return store.FinishResult{Err: fmt.Errorf("%w: %w", store.ErrLeaseLost, err)}
	}
	return store.FinishResult{Err: err}
}

// outcomeInput is a finished attempt as a batch report carries it.
func outcomeInput(token string, f *engine.Finished) api.OutcomeInput {
	if f.Verdict.Action == engine.Complete {
		return api.OutcomeInput{ID: f.Task.ID, LeaseToken: token, Result: f.Verdict.Result}
	}
	r := failRequest(token, f)
	return api.OutcomeInput{ID: f.Task.ID, LeaseToken: token, Error: &r.Error, Permanent: r.Permanent, Cancel: r.Cancel, RetryIn: r.RetryIn, Snooze: r.Snooze, RateLimited: r.RateLimited}
}

// estimate bounds the bytes an outcome adds to a batch report: its result
// as it is, its error escaped at worst six bytes a byte (\u0000), and the
// rest.
func estimate(o api.OutcomeInput) int {
	n := len(o.Result) + 256
	if o.Error != nil {
		n += 6 * len(*o.Error)
	}
	return n
}

func (s *Source) logReport(f *engine.Finished, r store.FinishResult) {
	if r.Err != nil {
		return // the engine warns of refused outcomes
	}
	t := f.Task
	switch {
	case f.Verdict.Action == engine.Complete:
		s.log.Info("task completed", "task", t.ID, "kind", t.Kind, "attempt", t.Attempt)
		return
	case suspends(f) && r.State == store.StateFailed:
		s.log.Info("task failed: the wait it asked for cannot be", "task", t.ID, "kind", t.Kind, "attempt", t.Attempt, "waitpoints", f.Verdict.Wait.Waitpoints)
		return
	case suspends(f):
		s.log.Info("task suspended", "task", t.ID, "kind", t.Kind, "attempt", t.Attempt, "state", r.State, "waitpoints", f.Verdict.Wait.Waitpoints)
		return
	}
	s.log.Info("task attempt failed", "task", t.ID, "kind", t.Kind, "attempt", t.Attempt, "state", r.State, "err", f.Verdict.Err)
}

// failRequest translates a verdict into the fail request with which the
// server decides the same outcome as engine.Decide would, by the kind's
// policy as the server knows it: a retry gives its delay only when the
// handler chose one.
func failRequest(token string, f *engine.Finished) api.FailRequest {
	v := f.Verdict
	req := api.FailRequest{LeaseToken: token}
	if v.Err != nil {
		req.Error = v.Err.Error()
	}
	if strings.TrimSpace(req.Error) == "" {
		req.Error = "failed without a message"
	}
	if v.Stack != "" {
		// The API keeps no stack apart from the error.
		req.Error += "\n\n" + v.Stack
	}
	switch {
	case v.Action == engine.Retry && errors.Is(f.Cause, engine.ErrShutdown):
		// Handed back, not failed: it runs again at once, without
		// spending the attempt.
		req.Snooze = "0s"
	case v.Action == engine.Cancel, errors.Is(f.Cause, engine.ErrCancelRequested):
		req.Cancel = true
	case v.Action == engine.Fail:
		req.Permanent = true
	case v.Action == engine.Snooze:
		req.Snooze = min(v.Delay, maxDelay).String()
		req.RateLimited = v.RateLimited
	case v.Delay > 0:
		req.RetryIn = min(v.Delay, maxDelay).String()
	}
	return req
}

// gone reports whether the server says the attempt is no longer this
// worker's: its lease was lost, or the task no longer exists.
func gone(err error) bool {
	return errors.Is(err, apiclient.ErrLeaseLost) || errors.Is(err, apiclient.ErrNotFound)
}

// refusal reports whether err is an answer of the server that asking
// again will not change (a 4xx other than a timeout or rate limit).
func refusal(err error) bool {
	var ae *apiclient.Error
	return errors.As(err, &ae) && ae.Status < 500 && ae.Status != 408 && ae.Status != 429
}
