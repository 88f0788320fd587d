package ops

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// SubmitFlow stores a flow and its members atomically. Nothing is written
// when anything is wrong with it: the error is a *store.ValidationError
// naming the field as a JSON path (tasks[2].depends_on[0]; a cycle names
// its keys), which matches store.ErrTooLarge as well for too many
// members, or store.ErrConflict when another task holds a member's unique
// key.
func (s *Service) SubmitFlow(ctx context.Context, in api.FlowInput) (api.FlowEnqueued, error) {
	f, err := api.ToNewFlow(in)
	if err != nil {
		return api.FlowEnqueued{}, err
	}
	res, err := s.b.EnqueueFlow(ctx, f)
	if err != nil {
		return api.FlowEnqueued{}, fmt.Errorf("submit flow: %w", err)
	}
	return api.FromFlowResult(res), nil
}

// Flow reads a flow, with its members unless members is false;
// store.ErrFlowNotFound when there is none.
func (s *Service) Flow(ctx context.Context, id string, members bool) (api.Flow, error) {
	f, err := s.b.Flow(ctx, id)
	if err != nil {
		return api.Flow{}, err
	}
	out := api.FromFlow(f)
	if !members {
		return out, nil
	}
	ms, err := s.b.FlowMembers(ctx, id)
	if err != nil {
		return api.Flow{}, err
	}
	out.Members = make([]api.FlowMember, len(ms))
	for i, m := range ms {
		out.Members[i] = api.FromFlowMember(m)
	}
	return out, nil
}

// CancelFlow cancels a flow: its pending and blocked members at once, its
// running ones by a cancellation request. It answers the flow as it now
// is, without its members. Cancelling a cancelled flow again is fine; a
// succeeded or failed one is store.ErrAlreadyFinished, returned with the
// flow.
func (s *Service) CancelFlow(ctx context.Context, id string) (api.Flow, error) {
	f, err := s.b.CancelFlow(ctx, id)
	if errors.Is(err, store.ErrAlreadyFinished) && f != nil {
		err = &flowFinishedError{id: f.ID, state: f.State}
	}
	return flowResult(f, err)
}

// flowFinishedError refuses to cancel a flow that has ended, in words
// about the flow; it matches store.ErrAlreadyFinished.
type flowFinishedError struct {
	id    string
	state store.FlowState
}

func (e *flowFinishedError) Error() string {
	return fmt.Sprintf("flow %s already %s: only a running flow can be cancelled", e.id, e.state)
}

func (e *flowFinishedError) Unwrap() error { return store.ErrAlreadyFinished }

// RetryFlow makes a flow's failed and cancelled members pending again and
// reopens those skipped or cancelled because of them; completed members
// keep their results. It answers the flow as it now is, without its
// members; store.ErrConflict, with the flow, when no member needs it.
func (s *Service) RetryFlow(ctx context.Context, id string) (api.Flow, error) {
	return flowResult(s.b.RetryFlow(ctx, id))
}

// flowResult converts the flow a store call returned, which a refusal may
// carry along with its error.
func flowResult(f *store.Flow, err error) (api.Flow, error) {
	if f == nil {
		return api.Flow{}, err
	}
	return api.FromFlow(f), err
}

// AddMembers adds members to the flow of the running task taskID, under
// the lease of its claim's epoch: store.ErrLeaseLost when that lease is no
// longer held, store.ErrConflict when the task is not a flow member, and
// errors as SubmitFlow's for the members.
func (s *Service) AddMembers(ctx context.Context, taskID string, epoch int64, in []api.FlowTaskInput) (api.FlowEnqueued, error) {
	members, err := api.ToNewMembers(in)
	if err != nil {
		return api.FlowEnqueued{}, err
	}
	res, err := s.b.AddMembers(ctx, taskID, epoch, members)
	if err != nil {
		return api.FlowEnqueued{}, fmt.Errorf("add members to the flow of %s: %w", taskID, err)
	}
	return api.FromFlowResult(res), nil
}

// FlowEvents opens the event log of a flow's members after the cursor
// after (0 for all), each event named by its member's key; with follow,
// reading it waits for more until the flow is final. The flow is read
// first, so that an unknown id is store.ErrFlowNotFound here.
func (s *Service) FlowEvents(ctx context.Context, id string, after int64, follow bool) (*EventStream, error) {
	f, err := s.b.Flow(ctx, id)
	if err != nil {
		return nil, err
	}
	return &EventStream{
		s: s, id: id, after: after, follow: follow, final: f.State != store.FlowRunning,
		isFinal: func(ctx context.Context) (bool, error) {
			f, err := s.b.Flow(ctx, id)
			if err != nil {
				return false, err
			}
			return f.State != store.FlowRunning, nil
		},
		read: func(ctx context.Context, after int64, limit int) ([]store.Event, error) {
			return s.b.FlowEvents(ctx, id, after, limit)
		},
		keys: &memberKeys{b: s.b, flowID: id},
	}, nil
}

// memberKeys names the members of a flow by task id, read when first
// needed and again when an event names a task it does not know (a member
// added at run time).
type memberKeys struct {
	b      Backend
	flowID string
	byTask map[string]string
}

// name sets the Key of each event of page; k nil (a task's stream) leaves
// them as they are.
func (k *memberKeys) name(ctx context.Context, page []api.Event) error {
	if k == nil {
		return nil
	}
	for i := range page {
		key, ok := k.byTask[page[i].TaskID]
		if !ok {
			ms, err := k.b.FlowMembers(ctx, k.flowID)
			if err != nil {
				return err
			}
			k.byTask = make(map[string]string, len(ms))
			for _, m := range ms {
				k.byTask[m.TaskID] = m.Key
			}
			key = k.byTask[page[i].TaskID]
		}
		page[i].Key = key
	}
	return nil
}

// ParseFlowListQuery reads GET /v1/flows's query parameters
// (api.FlowListParams' Query is its inverse): state (comma-separated),
// limit and cursor. ListFlows checks the values.
func ParseFlowListQuery(q url.Values) (api.FlowListParams, error) {
	for key := range q {
		switch key {
		case "state", "limit", "cursor":
		default:
			return api.FlowListParams{}, badRequest(key, "unknown query parameter %q (state, limit, cursor)", key)
		}
	}
	p := api.FlowListParams{Cursor: q.Get("cursor")}
	if v := q.Get("state"); v != "" {
		p.States = strings.Split(v, ",")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || !validLimit(n) {
			return p, badLimit(v)
		}
		p.Limit = n
	}
	return p, nil
}

// ListFlows reads one page of flows in creation order, without their
// members. Limit is the page size, 1 to MaxPage, 0 meaning DefaultPage.
// NextCursor is set on a full page, so the last page may come back empty.
func (s *Service) ListFlows(ctx context.Context, p api.FlowListParams) (api.FlowList, error) {
	sp := store.FlowListParams{After: p.Cursor, Limit: p.Limit}
	if p.Cursor != "" {
		if _, err := uuid.Parse(p.Cursor); err != nil {
			return api.FlowList{}, badRequest("cursor", "not a cursor from a previous page")
		}
	}
	for _, name := range p.States {
		st := store.FlowState(strings.TrimSpace(name))
		if !st.Valid() {
			return api.FlowList{}, badRequest("state", "%q is not a flow state (%s)", name, FlowStateNames())
		}
		sp.States = append(sp.States, st)
	}
	switch {
	case p.Limit == 0:
		sp.Limit = DefaultPage
	case !validLimit(p.Limit):
		return api.FlowList{}, badLimit(strconv.Itoa(p.Limit))
	}
	flows, err := s.b.ListFlows(ctx, sp)
	if err != nil {
		return api.FlowList{}, err
	}
	out := api.FlowList{Flows: make([]api.Flow, len(flows))}
	for i, f := range flows {
		out.Flows[i] = api.FromFlow(f)
	}
	if len(flows) == sp.Limit {
		out.NextCursor = flows[len(flows)-1].ID
	}
	return out, nil
}

// FlowStateNames lists the flow states for messages: "running, succeeded,
// failed, cancelled".
func FlowStateNames() string {
	names := make([]string, 0, 4)
	for _, s := range store.FlowStates() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}
