package remote

import (
	"context"
	"errors"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// CreateWaitpoint creates a waitpoint for the claimed task under its lease
// (POST /v1/tasks/{id}/waitpoints), or answers the one of that name it
// has, and keeps the token the server signed for it. The waitpoint is
// checked first, as the store checks it; its expiry goes as the time left
// until it, rounded up to the second the server keeps.
func (s *Source) CreateWaitpoint(ctx context.Context, taskID string, epoch int64, wp store.NewWaitpoint) (store.Waitpoint, error) {
	now := time.Now()
	if err := store.CheckWaitpoint(wp, now); err != nil {
		return store.Waitpoint{}, err
	}
	tok, ok := s.token(taskID, epoch)
	if !ok {
		return store.Waitpoint{}, store.ErrLeaseLost
	}
	req := api.WaitpointRequest{LeaseToken: tok, Name: wp.Name, Allow: wp.Allow}
	if !wp.ExpiresAt.IsZero() {
		req.ExpiresIn = (wp.ExpiresAt.Sub(now) + time.Second - 1).Truncate(time.Second).String()
	}
	out, err := s.c.CreateWaitpoint(ctx, taskID, req)
	if err != nil {
		return store.Waitpoint{}, storeError(err)
	}
	s.keepTokens(taskID, out)
	return toWaitpoint(out), nil
}

// Waitpoints reads the task's waitpoints with their signals (GET
// /v1/tasks/{id}/waitpoints), and keeps their tokens.
func (s *Source) Waitpoints(ctx context.Context, taskID string) ([]store.Waitpoint, error) {
	list, err := s.c.Waitpoints(ctx, taskID)
	if err != nil {
		return nil, storeError(err)
	}
	s.keepTokens(taskID, list.Waitpoints...)
	out := make([]store.Waitpoint, len(list.Waitpoints))
	for i, wp := range list.Waitpoints {
		out[i] = toWaitpoint(wp)
	}
	return out, nil
}

// WaitpointToken is the token the server answered for a waitpoint of a
// task this Source holds: the worker has no key to sign one.
func (s *Source) WaitpointToken(taskID, waitpointID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[taskID]
	if !ok {
		return "", false
	}
	tok, ok := l.tokens[waitpointID]
	return tok, ok
}

// keepTokens keeps the tokens of the task's waitpoints wps for as long as
// the Source holds the task.
func (s *Source) keepTokens(taskID string, wps ...api.Waitpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[taskID]
	if !ok {
		return
	}
	if l.tokens == nil {
		l.tokens = make(map[string]string, len(wps))
	}
	for _, wp := range wps {
		if wp.Token != "" {
			l.tokens[wp.ID] = wp.Token
		}
	}
}

// toWaitpoint converts a waitpoint as the API answers it.
func toWaitpoint(wp api.Waitpoint) store.Waitpoint {
	out := store.Waitpoint{
		ID: wp.ID, TaskID: wp.TaskID, Name: wp.Name, Allow: wp.Allow, State: store.WaitpointState(wp.State),
		Resolution: wp.Resolution, CreatedAt: wp.CreatedAt, Signals: make([]store.Signal, len(wp.Signals)),
	}
	if wp.ExpiresAt != nil {
		out.ExpiresAt = *wp.ExpiresAt
	}
	if wp.ResolvedAt != nil {
		out.ResolvedAt = *wp.ResolvedAt
	}
	for i, sg := range wp.Signals {
		out.Signals[i] = store.Signal{
			ID: sg.ID, WaitpointID: sg.WaitpointID, Waitpoint: sg.Waitpoint, Name: sg.Name, Payload: sg.Payload,
			Key: sg.IdempotencyKey, Source: sg.Source, ReceivedAt: sg.ReceivedAt,
		}
	}
	return out
}

// suspends reports whether a finished attempt suspends its task: a wait
// verdict, which the server decides (a cancel request wins over it, as
// engine.Decide says).
func suspends(f *engine.Finished) bool {
	return f.Verdict.Action == engine.Wait && f.Verdict.Wait != nil
}

// suspend suspends the task on its waitpoints (POST /v1/tasks/{id}/wait).
// A wait the server refuses as one that cannot be (a waitpoint the task
// does not have, a bad mode or timeout) fails the task for good with the
// error the store records for it in process: the handler asked for what
// cannot be, and would ask again if it ran again.
func (s *Source) suspend(ctx context.Context, token string, f *engine.Finished) (api.Outcome, error) {
	w := f.Verdict.Wait
	req := api.WaitRequest{LeaseToken: token, Waitpoints: w.Waitpoints, Mode: string(w.Mode), Count: w.Count, OnTimeout: string(w.OnTimeout)}
	if w.Timeout != 0 {
		req.Timeout = w.Timeout.String()
	}
	out, err := s.c.Wait(ctx, f.Task.ID, req)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || !errors.Is(ae, apiclient.ErrInvalid) {
		return out, err
	}
	invalid := &store.ValidationError{Index: -1, Field: "wait." + ae.Field, Message: ae.Message}
	return s.c.Fail(ctx, f.Task.ID, api.FailRequest{LeaseToken: token, Error: invalid.Error(), Permanent: true})
}
