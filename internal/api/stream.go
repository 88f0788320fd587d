package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/weftworks/weft/store"
)

// FrameEnd is the kind of the line or event that ends a task's stream.
const FrameEnd = "end"

// Frame is one frame of a task's output stream, or its end. Text frames
// carry their text as a JSON string in Data, JSON frames their value; the
// end (Kind "end") carries no Seq and no Data but the task's final State,
// At being when it was reached.
type Frame struct {
	Seq     int64           `json:"seq,omitempty"`
	Attempt int             `json:"attempt,omitempty"`
	At      time.Time       `json:"at"`
	Kind    string          `json:"kind"`
	Data    json.RawMessage `json:"data,omitempty"`
	State   string          `json:"state,omitempty"`
}

// FramePage is one page of a task's stream read from an offset. End is set
// when the task is final and Frames are its last frames: there is nothing
// more to read.
type FramePage struct {
	Frames []Frame `json:"frames"`
	End    *Frame  `json:"end,omitempty"`
}

// FrameInput is a frame a worker appends: Kind "text" with a JSON string
// as Data, or "json" with any JSON value. Seq, when given, is the worker's
// own number for the frame — 1 for the first frame of its claim, then 2,
// 3... — so that a retried request stores each frame once; give it to
// every frame of a request or to none.
type FrameInput struct {
	Seq  int64           `json:"seq,omitempty"`
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// StreamRequest appends frames under the lease (POST
// /v1/tasks/{id}/stream).
type StreamRequest struct {
	LeaseToken string       `json:"lease_token"`
	Frames     []FrameInput `json:"frames"`
}

// StreamResponse answers a StreamRequest with the frames as stored, one
// per frame sent, without their data: a frame sent again under its number
// comes back as it was first stored.
type StreamResponse struct {
	Frames []Frame `json:"frames"`
}

// TaskResult is a task's outcome as GET /v1/tasks/{id}/result reports it:
// Final says whether the task reached a final state (the answer is then
// 200; 202 while it has not).
type TaskResult struct {
	ID          string          `json:"id"`
	State       string          `json:"state"`
	Final       bool            `json:"final"`
	Result      json.RawMessage `json:"result,omitempty"`
	Errors      []AttemptError  `json:"errors"`
	FinalizedAt *time.Time      `json:"finalized_at,omitempty"`
}

// FromFrame converts a stored frame.
func FromFrame(f store.Frame) Frame {
	out := Frame{Seq: f.Seq, Attempt: f.Attempt, At: f.At.UTC(), Kind: string(f.Kind), Data: json.RawMessage(f.Data)}
	if f.Kind == store.FrameText {
		// A string marshals whatever it holds; the store keeps UTF-8.
		out.Data, _ = json.Marshal(string(f.Data))
	}
	return out
}

// FromFrameEnd converts a stream's end.
func FromFrameEnd(e *store.FrameEnd) *Frame {
	if e == nil {
		return nil
	}
	return &Frame{Kind: FrameEnd, At: e.At.UTC(), State: string(e.State)}
}

// ToNewFrames converts frames to append, with errors naming their field
// ("frames[2].data"). JSON data is compacted, so that a request sent again
// compares equal to what was stored.
func ToNewFrames(in []FrameInput) ([]store.NewFrame, error) {
	out := make([]store.NewFrame, len(in))
	for i, f := range in {
		bad := func(field, msg string) error {
			return &FieldError{Status: http.StatusUnprocessableEntity, Field: fmt.Sprintf("frames[%d].%s", i, field), Message: msg}
		}
		if len(f.Data) == 0 {
			return nil, bad("data", "must be given: a string for a text frame, any JSON value for a json frame")
		}
		out[i] = store.NewFrame{Seq: f.Seq, Kind: store.FrameKind(f.Kind)}
		switch out[i].Kind {
		case store.FrameText:
			var s string
			if err := json.Unmarshal(f.Data, &s); err != nil {
				return nil, bad("data", "a text frame's data must be a JSON string")
			}
			out[i].Data = []byte(s)
		case store.FrameJSON:
			var b bytes.Buffer
			if err := json.Compact(&b, f.Data); err != nil {
				return nil, bad("data", "not valid JSON")
			}
			out[i].Data = b.Bytes()
		default:
			return nil, bad("kind", fmt.Sprintf("%q is not a frame kind (text, json)", f.Kind))
		}
	}
	return out, nil
}

// FromTaskResult reports a task's outcome.
func FromTaskResult(t *store.Task) TaskResult {
	full := FromTask(t)
	return TaskResult{ID: t.ID, State: string(t.State), Final: t.State.Terminal(), Result: full.Result, Errors: full.Errors, FinalizedAt: full.FinalizedAt}
}
