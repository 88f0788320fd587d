package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// FrameKind says how a stream frame's data reads.
type FrameKind string

// The frame kinds.
const (
	// FrameText frames hold UTF-8 text.
	FrameText FrameKind = "text"
	// FrameJSON frames hold one JSON value.
	FrameJSON FrameKind = "json"
)

// Bounds of a task's output stream. They are fixed, documented in
// docs/api.md, and the same on every backend and entry path.
const (
	// MaxFrameBytes bounds the data of one frame.
	MaxFrameBytes = 1 << 20
	// MaxStreamBytes bounds the data of all of a task's frames together,
	// over all its attempts.
	MaxStreamBytes = 16 << 20
	// MaxFramesPerAppend bounds the frames of one AppendFrames call.
	MaxFramesPerAppend = 1000
)

// NewFrame is a frame to append to a task's stream.
type NewFrame struct {
	// Seq, when positive, is the writer's own number for the frame: 1 for
	// the first frame its attempt writes, then 2, 3 and so on. A frame
	// whose number the attempt already stored is not stored again: the
	// stored frame is returned in its place, so a writer that retries an
	// append it does not know the fate of stores it once. Zero numbers the
	// frame next; the frames of one call are numbered all or none.
	Seq  int64
	Kind FrameKind
	// Data is UTF-8 text for FrameText, one JSON value for FrameJSON; at
	// most MaxFrameBytes.
	Data []byte
}

// Frame is one stored frame of a task's output stream.
type Frame struct {
	// Seq numbers the task's frames from 1, over all its attempts: a
	// reader resumes with "frames after Seq".
	Seq int64
	// Attempt is the attempt that wrote the frame.
	Attempt int
	At      time.Time
	Kind    FrameKind
	Data    []byte
}

// FrameEnd marks the end of a task's stream: the task reached a final
// state and no frame follows the ones read with it. It is not stored: a
// read derives it from the task's state, read in the same snapshot as the
// frames, so a reader that sees the final state has also seen every frame
// (appends require the running state, under the lease, and commit before
// the final transition or not at all).
type FrameEnd struct {
	// State is the task's final state; At is when it was reached.
	State State
	At    time.Time
}

// Streams stores tasks' output streams: frames a running task appends
// under its lease, which anyone reads from an offset or follows live.
type Streams interface {
	// AppendFrames appends frames to a task's stream under its epoch,
	// after checking them (CheckFrames), and returns them as stored, one
	// per frame given: a frame the attempt already stored under the same
	// Seq (a retried append) is returned as it was stored. ErrLeaseLost
	// when the epoch is not the task's running lease; ErrNotFound when
	// there is no such task; ErrConflict when a numbered frame differs
	// from the frame stored under its number; a *ValidationError when a
	// number skips ahead, and one marked TooLarge when the stream would
	// pass MaxStreamBytes.
	AppendFrames(ctx context.Context, taskID string, epoch int64, frames []NewFrame) ([]Frame, error)
	// Frames reads a task's frames with Seq > after, oldest first, at
	// most limit (1 to 1,000; other values mean 1,000). end is set when
	// the task is final and the frames read are its last: the stream has
	// ended, and read in the same snapshot as the frames. ErrNotFound when
	// there is no such task.
	Frames(ctx context.Context, taskID string, after int64, limit int) (frames []Frame, end *FrameEnd, err error)
	// WatchFrames returns a channel that receives a value, coalesced,
	// after a commit that may have appended to task taskID's stream or
	// ended it, and stop to release it. Subscribe before reading, so that
	// nothing committed after the read goes unnoticed. Commits through
	// this store are signalled at once; those of other processes as the
	// backend can tell (see its documentation): a follower also reads
	// again on a timer of its own.
	WatchFrames(taskID string) (ch <-chan struct{}, stop func())
}

// CheckFrames validates frames to append: their number (1 to
// MaxFramesPerAppend), kinds, data (text as UTF-8, JSON as one value, each
// at most MaxFrameBytes) and writer's numbers (all or none given, each
// following the one before). Fields are named as in the HTTP API
// ("frames[3].data").
func CheckFrames(frames []NewFrame) error {
	bad := func(field, format string, args ...any) *ValidationError {
		return &ValidationError{Index: -1, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	switch n := len(frames); {
	case n == 0:
		return bad("frames", "must hold at least one frame")
	case n > MaxFramesPerAppend:
		e := bad("frames", "%d frames exceeds the limit of %d per append", n, MaxFramesPerAppend)
		e.TooLarge = true
		return e
	}
	for i, f := range frames {
		at := fmt.Sprintf("frames[%d].", i)
		switch f.Kind {
		case FrameText:
			if !utf8.Valid(f.Data) {
				return bad(at+"data", "text frames must be UTF-8")
			}
		case FrameJSON:
			if !json.Valid(f.Data) {
				return bad(at+"data", "not one valid JSON value")
			}
		default:
			return bad(at+"kind", "%q is not a frame kind (text, json)", f.Kind)
		}
		if len(f.Data) > MaxFrameBytes {
			e := bad(at+"data", "%d bytes exceeds the limit of %d bytes per frame", len(f.Data), MaxFrameBytes)
			e.TooLarge = true
			return e
		}
		switch {
		case f.Seq < 0:
			return bad(at+"seq", "%d is negative", f.Seq)
		case i > 0 && frames[0].Seq == 0 && f.Seq != 0:
			return bad(at+"seq", "numbered, but frames[0] is not: number every frame of an append or none")
		case i > 0 && frames[0].Seq > 0 && f.Seq != frames[0].Seq+int64(i):
			return bad(at+"seq", "%d does not follow %d", f.Seq, frames[i-1].Seq)
		}
	}
	return nil
}

// StreamHead is the state of a task's stream that an append reads under
// the task's lock: the last frame's Seq, the bytes stored, the lease epoch
// of the claim that appended last, and the Seq before that claim's first
// frame. Writers' numbers count from Base: the epoch, not the attempt,
// tells claims apart, since a snooze gives an attempt number back.
type StreamHead struct {
	Seq   int64
	Bytes int64
	Epoch int64
	Base  int64
}

// AppendPlan is what an append does to a stream (PlanAppend): the frames
// given that repeat stored ones — the first Replays frames, stored under
// Seq FirstReplay onwards — and the rest, stored from Seq FirstNew on;
// Head is the stream's head after them.
type AppendPlan struct {
	Replays     int
	FirstReplay int64
	FirstNew    int64
	Head        StreamHead
}

// PlanAppend decides an append of checked frames (CheckFrames) under the
// lease epoch to the stream whose head is h: which frames repeat ones the
// claim stored (their writer's numbers were used already), and the new
// head. A writer's number past the next one, or a stream that would pass
// MaxStreamBytes, is refused with a *ValidationError.
func PlanAppend(h StreamHead, epoch int64, frames []NewFrame) (AppendPlan, error) {
	if h.Epoch != epoch {
		// A new claim numbers its frames from 1 again.
		h.Epoch, h.Base = epoch, h.Seq
	}
	var p AppendPlan
	if first := frames[0].Seq; first > 0 {
		written := h.Seq - h.Base
		if first > written+1 {
			return AppendPlan{}, &ValidationError{Index: -1, Field: "frames[0].seq", Message: fmt.Sprintf(
				"%d skips ahead: this attempt stored %d frames, so the next is %d", first, written, written+1)}
		}
		p.Replays = int(min(written-first+1, int64(len(frames))))
		p.FirstReplay = h.Base + first
	}
	p.FirstNew = h.Seq + 1
	for _, f := range frames[p.Replays:] {
		h.Seq++
		h.Bytes += int64(len(f.Data))
	}
	if h.Bytes > MaxStreamBytes {
		return AppendPlan{}, &ValidationError{Index: -1, Field: "frames", TooLarge: true, Message: fmt.Sprintf(
			"the task's stream would hold %d bytes, past its limit of %d bytes", h.Bytes, MaxStreamBytes)}
	}
	p.Head = h
	return p, nil
}

// CheckReplay compares a frame given again with the frame stored under its
// number: ErrConflict when they differ.
func CheckReplay(stored Frame, f NewFrame) error {
	if stored.Kind != f.Kind || !bytes.Equal(stored.Data, f.Data) {
		return fmt.Errorf("frame %d of attempt %d was stored with other content: %w", f.Seq, stored.Attempt, ErrConflict)
	}
	return nil
}

// StreamEnd says whether a read of a task's stream ends it: the task, read
// in the same snapshot as the frames, is final and no frame is left
// unread (more is false).
func StreamEnd(state State, finalizedAt time.Time, more bool) *FrameEnd {
	if more || !state.Terminal() {
		return nil
	}
	return &FrameEnd{State: state, At: finalizedAt}
}
