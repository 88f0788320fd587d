package ops

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Bounds of stream reads and result waits.
const (
	// DefaultFramePage is the frames of a page read without a limit, and
	// of each read of a followed stream; MaxFramePage bounds a page.
	DefaultFramePage = 100
	MaxFramePage     = 1000
	// MaxResultWait bounds how long a request waits for a task's result.
	MaxResultWait = 5 * time.Minute
)

// Frames reads one page of task id's output stream: at most limit frames
// (0 means DefaultFramePage) after the cursor after, and its end when the
// task is final and the page holds its last frames.
func (s *Service) Frames(ctx context.Context, id string, after int64, limit int) (api.FramePage, error) {
	if after < 0 {
		return api.FramePage{}, &api.FieldError{Status: http.StatusBadRequest, Field: "after", Message: fmt.Sprintf("%d is not a frame sequence number (0 or more)", after)}
	}
	if limit == 0 {
		limit = DefaultFramePage
	}
	if limit < 1 || limit > MaxFramePage {
		return api.FramePage{}, &api.FieldError{Status: http.StatusBadRequest, Field: "limit", Message: fmt.Sprintf("%d is out of range (1-%d)", limit, MaxFramePage)}
	}
	frames, end, err := s.b.Frames(ctx, id, after, limit)
	if err != nil {
		return api.FramePage{}, err
	}
	return api.FramePage{Frames: framesOf(frames), End: api.FromFrameEnd(end)}, nil
}

// FrameStream is a task's output stream from a cursor on, as
// Service.FollowFrames opened it, to read live until it ends.
type FrameStream struct {
	s     *Service
	id    string
	after int64
	// ended is set when the stream had ended, with nothing after the
	// cursor, when it was opened.
	ended bool
}

// FollowFrames opens task id's output stream after the cursor after. It
// reads the stream once, so that an unknown task is store.ErrNotFound
// here, before anything is streamed.
func (s *Service) FollowFrames(ctx context.Context, id string, after int64) (*FrameStream, error) {
	if after < 0 {
		return nil, &api.FieldError{Status: http.StatusBadRequest, Field: "after", Message: fmt.Sprintf("%d is not a frame sequence number (0 or more)", after)}
	}
	frames, end, err := s.b.Frames(ctx, id, after, 1)
	if err != nil {
		return nil, err
	}
	return &FrameStream{s: s, id: id, after: after, ended: len(frames) == 0 && end != nil}, nil
}

// Ended reports whether the stream can yield nothing but its end: the task
// was final when the stream was opened, and no frame follows the cursor.
// Server-Sent Events answer such a request with 204, which tells an
// EventSource to stop reconnecting.
func (fs *FrameStream) Ended() bool { return fs.ended }

// Pages yields the frames in the pages they are read in, oldest first,
// and ends with the stream's end (a Frame of Kind api.FrameEnd) once the
// task is final and every frame was yielded. While nothing is new, it
// waits for the store's signal (an append, the final transition) or the
// service's StreamPoll, and yields an empty page each time it found
// nothing, so that a caller holding a connection open can tell the stream
// is idle. It stops without an error, and without an end, when the
// service's Done closes; a failure, the end of ctx included, is the last
// element.
func (fs *FrameStream) Pages(ctx context.Context) iter.Seq2[[]api.Frame, error] {
	return func(yield func([]api.Frame, error) bool) {
		// Subscribing before the first read: an append committed after
		// a read signals the wait that follows it.
		signal, stop := fs.s.b.WatchFrames(fs.id)
		defer stop()
		after := fs.after
		var poll *time.Timer
		waited := false
		for {
			frames, end, err := fs.s.b.Frames(ctx, fs.id, after, DefaultFramePage)
			if err != nil {
				yield(nil, fs.failed(ctx, err))
				return
			}
			if len(frames) > 0 || end != nil || waited {
				page := framesOf(frames)
				if end != nil {
					page = append(page, *api.FromFrameEnd(end))
				}
				if !yield(page, nil) || end != nil {
					return
				}
				waited = false
			}
			if len(frames) > 0 {
				after = frames[len(frames)-1].Seq
			}
			if len(frames) == DefaultFramePage {
				continue
			}
			if poll == nil {
				poll = time.NewTimer(fs.s.streamPoll)
				defer poll.Stop()
			} else {
				poll.Reset(fs.s.streamPoll)
			}
			select {
			case <-ctx.Done():
				yield(nil, fs.failed(ctx, ctx.Err()))
				return
			case <-fs.s.done:
				return
			case <-signal:
				poll.Stop()
			case <-poll.C:
			}
			waited = true
		}
	}
}

// All yields the frames one by one, as Pages reads them, the end last; a
// failure is the last element.
func (fs *FrameStream) All(ctx context.Context) iter.Seq2[api.Frame, error] {
	return func(yield func(api.Frame, error) bool) {
		for page, err := range fs.Pages(ctx) {
			if err != nil {
				yield(api.Frame{}, err)
				return
			}
			for _, f := range page {
				if !yield(f, nil) {
					return
				}
			}
		}
	}
}

// failed names the stream in err, and prefers the context's cause once it
// has ended.
func (fs *FrameStream) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return fmt.Errorf("stream of %s: %w", fs.id, err)
}

// Result reads task id's outcome, waiting up to wait (at most
// MaxResultWait) for it to be final: it returns as soon as the task is
// final, or with the task as it stands once wait has passed (Final false),
// or at once when the service's Done closes. The final transition signals
// the wait through the store (store.Streams.WatchFrames), and a read every
// StreamPoll is the safety net.
func (s *Service) Result(ctx context.Context, id string, wait time.Duration) (api.TaskResult, error) {
	if wait < 0 || wait > MaxResultWait {
		return api.TaskResult{}, &api.FieldError{Status: http.StatusBadRequest, Field: "wait", Message: fmt.Sprintf("%s is out of range (0s to %s)", wait, MaxResultWait)}
	}
	signal, stop := s.b.WatchFrames(id)
	defer stop()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTimer(s.streamPoll)
	defer poll.Stop()
	for {
		t, err := s.b.Get(ctx, id)
		if err != nil {
			return api.TaskResult{}, err
		}
		if t.State.Terminal() || wait == 0 {
			return api.FromTaskResult(t), nil
		}
		poll.Reset(s.streamPoll)
		select {
		case <-ctx.Done():
			return api.TaskResult{}, context.Cause(ctx)
		case <-s.done:
			wait = 0
		case <-deadline.C:
			wait = 0
		case <-signal:
		case <-poll.C:
		}
	}
}

// framesOf is the store's frames as the API reports them.
func framesOf(frames []store.Frame) []api.Frame {
	out := make([]api.Frame, len(frames))
	for i, f := range frames {
		out[i] = api.FromFrame(f)
	}
	return out
}
