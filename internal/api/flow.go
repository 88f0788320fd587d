package api

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// FlowTaskInput is one member of a flow: a task, as POST /v1/tasks takes
// it, with its key in the flow and its dependencies.
type FlowTaskInput struct {
	TaskInput
	// Key names the member in its flow, as kinds are named.
	Key string `json:"key"`
	// DependsOn lists the member's parents by key; "key/*" is a member
	// and every member it adds while it runs, "*" every other member.
	DependsOn []string `json:"depends_on,omitempty"`
	// Join is the condition over the parents' outcomes (default
	// all_succeeded); Quorum is its k for a quorum join.
	Join   string `json:"join,omitempty"`
	Quorum int    `json:"quorum,omitempty"`
	// LetRun keeps the other parents running once an any_succeeded or
	// quorum join is met.
	LetRun bool `json:"let_run,omitempty"`
}

// FlowInput is a flow to submit: its members are stored together or not
// at all.
type FlowInput struct {
	Name     string          `json:"name,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Tasks    []FlowTaskInput `json:"tasks"`
}

// AddMembersRequest adds members to the flow of a running member, under
// its lease.
type AddMembersRequest struct {
	LeaseToken string          `json:"lease_token"`
	Tasks      []FlowTaskInput `json:"tasks"`
}

// FlowEnqueued answers a submitted flow, or members added to one: the
// flow's id and each new member's task id by key.
type FlowEnqueued struct {
	ID    string            `json:"id"`
	Tasks map[string]string `json:"tasks"`
}

// Flow is a stored flow. Progress is the share of members that are final
// (0 to 1); Rate (members per second) and ETA (a Go duration) are the
// recent completion rate and the time the rest will take at it, absent
// until a few members are done and once the flow is final.
type Flow struct {
	ID              string           `json:"id"`
	Name            string           `json:"name,omitempty"`
	State           string           `json:"state"`
	Metadata        json.RawMessage  `json:"metadata,omitempty"`
	Counts          store.FlowCounts `json:"counts"`
	Progress        float64          `json:"progress"`
	Rate            float64          `json:"rate,omitempty"`
	ETA             string           `json:"eta,omitempty"`
	CancelRequested bool             `json:"cancel_requested"`
	CreatedAt       time.Time        `json:"created_at"`
	FinalizedAt     *time.Time       `json:"finalized_at,omitempty"`
	// Members is absent from listings, and when asked to be left out.
	Members []FlowMember `json:"members,omitempty"`
}

// FlowMember is one member of a flow as its flow lists it. Reason and
// ReasonKey say why the flow skipped or cancelled it, and which member
// made its condition impossible; AddedBy names the member that added it
// while it ran.
type FlowMember struct {
	Key       string   `json:"key"`
	TaskID    string   `json:"task_id"`
	Kind      string   `json:"kind"`
	Queue     string   `json:"queue"`
	State     string   `json:"state"`
	DependsOn []string `json:"depends_on,omitempty"`
	Join      string   `json:"join,omitempty"`
	Quorum    int      `json:"quorum,omitempty"`
	LetRun    bool     `json:"let_run,omitempty"`
	AddedBy   string   `json:"added_by,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	ReasonKey string   `json:"reason_key,omitempty"`
}

// FlowList is one page of a listing of flows, without their members.
// NextCursor, when set, fetches the next page.
type FlowList struct {
	Flows      []Flow `json:"flows"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// FlowListParams filters and pages a listing of flows: GET /v1/flows's
// query parameters. Zero fields are left to the server's defaults.
type FlowListParams struct {
	States []string
	Limit  int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

// Query encodes p as the listing's query parameters, leaving out the zero
// fields.
func (p FlowListParams) Query() url.Values {
	q := url.Values{}
	if len(p.States) > 0 {
		q.Set("state", strings.Join(p.States, ","))
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	return q
}

// Parent is the final outcome of a claimed member's parent, as the claim
// response carries it under the parent's key.
type Parent struct {
	TaskID string          `json:"task_id"`
	State  string          `json:"state"`
	Result json.RawMessage `json:"result,omitempty"`
	Errors []AttemptError  `json:"errors"`
}

// ToNewFlow translates a flow for the store, which validates it as every
// other entry path does; only durations that do not parse are refused
// here, with their paths (tasks[2].delay).
func ToNewFlow(in FlowInput) (store.NewFlow, error) {
	members, err := ToNewMembers(in.Tasks)
	if err != nil {
		return store.NewFlow{}, err
	}
	return store.NewFlow{Name: in.Name, Metadata: in.Metadata, Members: members}, nil
}

// ToNewMembers translates flow members for the store, as ToNewFlow.
func ToNewMembers(in []FlowTaskInput) ([]store.NewFlowMember, error) {
	out := make([]store.NewFlowMember, len(in))
	for i, m := range in {
		t, err := toNewTask(m.TaskInput, "tasks", i)
		if err != nil {
			return nil, err
		}
		out[i] = store.NewFlowMember{Key: m.Key, Task: t, DependsOn: m.DependsOn, Join: store.Join(m.Join), Quorum: m.Quorum, LetRun: m.LetRun}
	}
	return out, nil
}

// FromFlowResult converts what submitting a flow, or adding members, made.
func FromFlowResult(r store.FlowResult) FlowEnqueued {
	return FlowEnqueued{ID: r.ID, Tasks: r.Tasks}
}

// FromFlow converts a stored flow, without its members.
func FromFlow(f *store.Flow) Flow {
	out := Flow{
		ID: f.ID, Name: f.Name, State: string(f.State), Metadata: f.Metadata, Counts: f.Counts,
		Rate: f.Rate, CancelRequested: f.CancelRequested,
		CreatedAt: f.CreatedAt.UTC(), FinalizedAt: timePtr(f.FinalizedAt),
	}
	if f.Counts.Total > 0 {
		out.Progress = float64(f.Counts.Done()) / float64(f.Counts.Total)
	}
	if f.ETA > 0 {
		out.ETA = f.ETA.String()
	}
	return out
}

// FromFlowMember converts a member as its flow lists it.
func FromFlowMember(m store.FlowMember) FlowMember {
	return FlowMember{
		Key: m.Key, TaskID: m.TaskID, Kind: m.Kind, Queue: m.Queue, State: string(m.State),
		DependsOn: m.DependsOn, Join: string(m.Join), Quorum: m.Quorum, LetRun: m.LetRun,
		AddedBy: m.AddedBy, Reason: m.Reason, ReasonKey: m.ReasonKey,
	}
}

// FromParents converts a member's parents' outcomes to the claim
// response's map by key; nil when it has none.
func FromParents(ps []store.ParentOutcome) map[string]Parent {
	if len(ps) == 0 {
		return nil
	}
	out := make(map[string]Parent, len(ps))
	for _, p := range ps {
		errs := make([]AttemptError, len(p.Errors))
		for i, e := range p.Errors {
			errs[i] = AttemptError{Attempt: e.Attempt, At: e.At.UTC(), Error: e.Error, Stack: e.Stack}
		}
		out[p.Key] = Parent{TaskID: p.TaskID, State: string(p.State), Result: p.Result, Errors: errs}
	}
	return out
}
