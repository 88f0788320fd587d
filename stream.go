package weft

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

// Output streams. A running task writes frames — text, or JSON values —
// with Task.StreamText and Task.Stream; anyone reads them from an offset
// (Client.StreamFrames) or follows them live until the task is final
// (Client.FollowStream), whether they started reading before or after the
// frames were written. Frames are numbered per task from 1 over all its
// attempts, carry the attempt that wrote them, and are purged with their
// task. A task's stream holds at most 16 MiB (store.MaxStreamBytes), one
// frame at most 1 MiB (store.MaxFrameBytes).

type (
	// Frame is one frame of a task's output stream.
	Frame = store.Frame
	// FrameEnd marks the end of a task's stream: the task's final state,
	// read together with its last frames.
	FrameEnd = store.FrameEnd
	// FrameKind says how a frame's data reads.
	FrameKind = store.FrameKind
)

// The frame kinds.
const (
	// FrameText frames hold UTF-8 text, as Task.StreamText writes it.
	FrameText = store.FrameText
	// FrameJSON frames hold one JSON value, as Task.Stream writes it.
	FrameJSON = store.FrameJSON
)

// Stream appends v, encoded as JSON, to the task's output stream, and
// returns once it is stored: followers see it at once. It fails with
// ErrLeaseLost once this attempt no longer holds the task, and with
// ErrInvalid (ErrTooLarge) past the stream's bounds.
func (t *Task[T]) Stream(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("weft: encode stream frame: %w", err)
	}
	return t.appendFrame(ctx, store.NewFrame{Kind: store.FrameJSON, Data: b})
}

// StreamText appends s, which must be UTF-8, to the task's output stream
// as a text frame, as Stream does.
func (t *Task[T]) StreamText(ctx context.Context, s string) error {
	return t.appendFrame(ctx, store.NewFrame{Kind: store.FrameText, Data: []byte(s)})
}

func (t *Task[T]) appendFrame(ctx context.Context, f store.NewFrame) error {
	if _, err := t.exec.AppendFrames(ctx, []store.NewFrame{f}); err != nil {
		return fmt.Errorf("weft: stream of task %s: %w", t.ID, err)
	}
	return nil
}

// StreamFrames reads at most limit frames (1 to 1,000; other values mean
// 1,000) of task id's output stream after the frame numbered after (0 for
// the first). end is set when the task is final and these are its last
// frames. ErrNotFound when there is no such task.
func (c *Client) StreamFrames(ctx context.Context, id string, after int64, limit int) ([]Frame, *FrameEnd, error) {
	return c.st.Frames(ctx, id, after, limit)
}

// followPoll is how often FollowStream reads again when the store did not
// signal: a safety net, since appends and final transitions signal.
const followPoll = time.Second

// followPage is how many frames FollowStream reads at a time.
const followPage = 100

// FollowStream calls fn with each frame of task id's output stream after
// the frame numbered after (0 for all), in order, as they are written,
// until the stream ends: the task is final and fn has had every frame.
// It then returns the end. An error of fn stops it and is returned; so
// does the end of ctx, with ctx's cause. ErrNotFound when there is no such
// task (or it was purged while followed).
func (c *Client) FollowStream(ctx context.Context, id string, after int64, fn func(Frame) error) (*FrameEnd, error) {
	// Subscribing before the first read: a frame stored after a read
	// signals the wait that follows it.
	signal, stop := c.st.WatchFrames(id)
	defer stop()
	poll := time.NewTimer(followPoll)
	defer poll.Stop()
	for {
		frames, end, err := c.st.Frames(ctx, id, after, followPage)
		if err != nil {
			return nil, fmt.Errorf("weft: follow stream of %s: %w", id, err)
		}
		for _, f := range frames {
			if err := fn(f); err != nil {
				return nil, err
			}
			after = f.Seq
		}
		switch {
		case end != nil:
			return end, nil
		case len(frames) == followPage:
			continue
		}
		poll.Reset(followPoll)
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-signal:
		case <-poll.C:
		}
	}
}
