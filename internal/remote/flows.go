package remote

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

// Parents answers a claimed flow member's parents' outcomes as its claim
// carried them; store.ErrLeaseLost once the Source no longer holds the
// task.
func (s *Source) Parents(_ context.Context, taskID string) ([]store.ParentOutcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[taskID]
	if !ok || l.reported {
		return nil, store.ErrLeaseLost
	}
	return l.parents, nil
}

// AddMembers adds members to the claimed task's flow under its lease (POST
// /v1/tasks/{id}/members). The server assigns the new tasks' ids.
func (s *Source) AddMembers(ctx context.Context, taskID string, epoch int64, members []store.NewFlowMember) (store.FlowResult, error) {
	tok, ok := s.token(taskID, epoch)
	if !ok {
		return store.FlowResult{}, store.ErrLeaseLost
	}
	in := make([]api.FlowTaskInput, len(members))
	for i, m := range members {
		in[i] = flowTaskInput(m)
	}
	res, err := s.c.AddMembers(ctx, taskID, api.AddMembersRequest{LeaseToken: tok, Tasks: in})
	if err != nil {
		return store.FlowResult{}, storeError(err)
	}
	return store.FlowResult{ID: res.ID, Tasks: res.Tasks}, nil
}

// toParents converts a claimed member's parents, by key, to the store's
// outcomes in the order of their keys.
func toParents(ps map[string]api.Parent) []store.ParentOutcome {
	out := make([]store.ParentOutcome, 0, len(ps))
	for _, key := range slices.Sorted(maps.Keys(ps)) {
		p := ps[key]
		out = append(out, store.ParentOutcome{Key: key, TaskID: p.TaskID, State: store.State(p.State), Result: p.Result, Errors: toAttemptErrors(p.Errors)})
	}
	return out
}

// flowTaskInput is a member to add as the API takes it.
func flowTaskInput(m store.NewFlowMember) api.FlowTaskInput {
	t := m.Task
	in := api.FlowTaskInput{
		TaskInput: api.TaskInput{
			Kind: t.Kind, Args: t.Args, Queue: t.Queue, Priority: t.Priority,
			MaxAttempts: t.MaxAttempts, UniqueKey: t.UniqueKey, Metadata: t.Metadata,
		},
		Key: m.Key, DependsOn: m.DependsOn, Join: string(m.Join), Quorum: m.Quorum, LetRun: m.LetRun,
	}
	if !t.RunAt.IsZero() {
		at := t.RunAt
		in.RunAt = &at
	}
	if t.Delay != 0 {
		in.Delay = t.Delay.String()
	}
	if t.AttemptTimeout != 0 {
		in.Timeout = t.AttemptTimeout.String()
	}
	return in
}

// storeError is the server's refusal of a handler's request as the store's
// error for the same request in process, wrapping the server's answer, so
// that a handler tells errors apart the same way under `weft worker`.
func storeError(err error) error {
	switch {
	case gone(err):
		return fmt.Errorf("%w: %w", store.ErrLeaseLost, err)
	case errors.Is(err, apiclient.ErrConflict):
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case errors.Is(err, apiclient.ErrTooLarge):
		return fmt.Errorf("%w: %w", store.ErrTooLarge, err)
	case errors.Is(err, apiclient.ErrInvalid):
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return err
}
