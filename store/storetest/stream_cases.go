package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Cases of store.Streams: tasks' output streams.

var streamCases = []testCase{
	{"frames append under the lease and read from offsets", testStreamAppendRead},
	{"a stale attempt's frames are refused", testStreamStaleAttempt},
	{"numbered frames are stored once", testStreamIdempotent},
	{"a follower is woken by appends and by the end", testStreamFollow},
	{"the end comes with the final state, after every frame", testStreamEnd},
	{"stream sizes are capped", testStreamCaps},
	{"frames are purged with their task and their flow", testStreamPurge},
	{"a handler's stream is followed live, from another store, to its end", testEngineStream},
}

func text(s string) store.NewFrame { return store.NewFrame{Kind: store.FrameText, Data: []byte(s)} }

func jsonFrame(s string) store.NewFrame {
	return store.NewFrame{Kind: store.FrameJSON, Data: []byte(s)}
}

// numbered gives frames the writer's numbers from, from+1, ...
func numbered(from int64, frames ...store.NewFrame) []store.NewFrame {
	out := make([]store.NewFrame, len(frames))
	for i, f := range frames {
		f.Seq = from + int64(i)
		out[i] = f
	}
	return out
}

// streaming enqueues a task into its own queue and claims it.
func (e *env) streaming(t *testing.T) *store.Task {
	t.Helper()
	queue := "s" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	e.enqueue(t, store.NewTask{Kind: "k", Queue: queue, MaxAttempts: 5})
	c := e.claim(t, "n", time.Minute, q(queue, 1))
	if len(c) != 1 {
		t.Fatal("the task was not claimed")
	}
	return c[0]
}

func (e *env) appendFrames(t *testing.T, c *store.Task, frames ...store.NewFrame) []store.Frame {
	t.Helper()
	got, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, frames)
	if err != nil {
		t.Fatalf("append frames to %s: %v", c.ID, err)
	}
	if len(got) != len(frames) {
		t.Fatalf("append of %d frames returned %d", len(frames), len(got))
	}
	return got
}

func (e *env) frames(t *testing.T, id string, after int64, limit int) ([]store.Frame, *store.FrameEnd) {
	t.Helper()
	fs, end, err := e.st.Frames(e.ctx, id, after, limit)
	if err != nil {
		t.Fatalf("frames of %s after %d: %v", id, after, err)
	}
	return fs, end
}

// frameText is a frame in short: "seq/attempt kind data".
func frameText(f store.Frame) string {
	return fmt.Sprintf("%d/%d %s %s", f.Seq, f.Attempt, f.Kind, f.Data)
}

func frameTexts(fs []store.Frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = frameText(f)
	}
	return out
}

func assertFrames(t *testing.T, what string, got []store.Frame, want ...string) {
	t.Helper()
	if g := frameTexts(got); !reflect.DeepEqual(g, want) && (len(g) > 0 || len(want) > 0) {
		t.Fatalf("%s = %q, want %q", what, g, want)
	}
}

func complete(t *testing.T, e *env, c *store.Task) {
	t.Helper()
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
}

func testStreamAppendRead(t *testing.T, e *env) {
	at := e.clock.Freeze()
	c := e.streaming(t)
	if fs, end := e.frames(t, c.ID, 0, 0); len(fs) != 0 || end != nil {
		t.Fatalf("a task that never streamed: frames %v, end %v", fs, end)
	}
	got := e.appendFrames(t, c, text("hello "), jsonFrame(`{"step":1,"of":3}`))
	assertFrames(t, "appended", got, "1/1 text hello ", `2/1 json {"step":1,"of":3}`)
	e.clock.Advance(time.Second)
	got = e.appendFrames(t, c, text("world\n"))
	assertFrames(t, "appended next", got, "3/1 text world\n")

	all, end := e.frames(t, c.ID, 0, 0)
	assertFrames(t, "all frames", all, "1/1 text hello ", `2/1 json {"step":1,"of":3}`, "3/1 text world\n")
	if end != nil {
		t.Fatalf("a running task's stream ended: %+v", end)
	}
	if !all[0].At.Equal(at) || !all[2].At.Equal(at.Add(time.Second)) {
		t.Fatalf("frame times %v, %v; want the store's clock %v, then a second later", all[0].At, all[2].At, at)
	}
	after, _ := e.frames(t, c.ID, 1, 0)
	assertFrames(t, "frames after 1", after, `2/1 json {"step":1,"of":3}`, "3/1 text world\n")
	page, end := e.frames(t, c.ID, 0, 2)
	assertFrames(t, "a page of 2", page, "1/1 text hello ", `2/1 json {"step":1,"of":3}`)
	if end != nil {
		t.Fatal("a page with frames left ended the stream")
	}
	if past, _ := e.frames(t, c.ID, 3, 0); len(past) != 0 {
		t.Fatalf("frames after the last: %v", past)
	}
	if _, _, err := e.st.Frames(e.ctx, uuid.NewString(), 0, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("frames of a missing task: %v, want ErrNotFound", err)
	}
	// Another task's stream is its own, numbered from 1.
	other := e.streaming(t)
	assertFrames(t, "another task's first frame", e.appendFrames(t, other, text("x")), "1/1 text x")
}

func testStreamStaleAttempt(t *testing.T, e *env) {
	c := e.streaming(t)
	e.appendFrames(t, c, text("first attempt"))
	// The lease runs out and the task is rescued: the first attempt's
	// epoch is no longer the task's.
	e.clock.Advance(2 * time.Minute)
	if n := e.rescue(t, store.RescueParams{}); n != 1 {
		t.Fatalf("rescued %d, want 1", n)
	}
	if _, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, []store.NewFrame{text("late")}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("append by a rescued attempt: %v, want ErrLeaseLost", err)
	}
	second := e.claim(t, "m", time.Minute, q(c.Queue, 1))
	if len(second) != 1 || second[0].Attempt != 2 {
		t.Fatalf("second claim = %v", second)
	}
	if _, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, []store.NewFrame{text("late")}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("append by the first attempt while the second runs: %v, want ErrLeaseLost", err)
	}
	e.appendFrames(t, second[0], text("second attempt"))
	all, _ := e.frames(t, c.ID, 0, 0)
	assertFrames(t, "frames of both attempts", all, "1/1 text first attempt", "2/2 text second attempt")

	complete(t, e, second[0])
	if _, err := e.st.AppendFrames(e.ctx, c.ID, second[0].LeaseEpoch, []store.NewFrame{text("after the end")}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("append after the task completed: %v, want ErrLeaseLost", err)
	}
	pending := e.enqueue(t, store.NewTask{Kind: "k", Queue: "later", RunAt: e.now().Add(time.Hour)})[0].ID
	if _, err := e.st.AppendFrames(e.ctx, pending, 0, []store.NewFrame{text("x")}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("append to a pending task: %v, want ErrLeaseLost", err)
	}
	if _, err := e.st.AppendFrames(e.ctx, uuid.NewString(), 1, []store.NewFrame{text("x")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("append to a missing task: %v, want ErrNotFound", err)
	}
	if all, _ = e.frames(t, c.ID, 0, 0); len(all) != 2 {
		t.Fatalf("refused appends left frames: %q", frameTexts(all))
	}
}

func testStreamIdempotent(t *testing.T, e *env) {
	c := e.streaming(t)
	first := e.appendFrames(t, c, numbered(1, text("a"), text("b"))...)
	e.clock.Advance(time.Second)
	// The same append again, as a writer that never got the answer
	// retries it: the stored frames come back, nothing is added.
	again := e.appendFrames(t, c, numbered(1, text("a"), text("b"))...)
	if !reflect.DeepEqual(frameTexts(again), frameTexts(first)) || !again[1].At.Equal(first[1].At) {
		t.Fatalf("a retried append returned %q at %v, want the stored %q at %v", frameTexts(again), again[1].At, frameTexts(first), first[1].At)
	}
	// Overlapping: b is a replay, c is new.
	assertFrames(t, "overlapping append", e.appendFrames(t, c, numbered(2, text("b"), text("c"))...), "2/1 text b", "3/1 text c")
	assertFrames(t, "unnumbered after numbered", e.appendFrames(t, c, text("d")), "4/1 text d")
	all, _ := e.frames(t, c.ID, 0, 0)
	assertFrames(t, "stored once", all, "1/1 text a", "2/1 text b", "3/1 text c", "4/1 text d")

	if _, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, numbered(6, text("f"))); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a number that skips ahead: %v, want ErrInvalid", err)
	}
	if _, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, numbered(3, text("not c"))); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a number stored with other data: %v, want ErrConflict", err)
	}
	if _, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, numbered(3, jsonFrame(`"c"`))); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a number stored with another kind: %v, want ErrConflict", err)
	}
	if all, _ = e.frames(t, c.ID, 0, 0); len(all) != 4 {
		t.Fatalf("refused appends left frames: %q", frameTexts(all))
	}

	// A snooze gives the attempt back, so the next claim runs attempt 1
	// again; it is a new claim, and numbers its frames from 1.
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StatePending, RunAt: e.now(), Refund: true, Event: store.EventSnoozed})
	next := e.claim(t, "n", time.Minute, q(c.Queue, 1))
	if len(next) != 1 || next[0].Attempt != 1 {
		t.Fatalf("claim after a snooze = %v", next)
	}
	assertFrames(t, "the next claim's first numbered frame", e.appendFrames(t, next[0], numbered(1, text("again"))...), "5/1 text again")
}

func testStreamFollow(t *testing.T, e *env) {
	c := e.streaming(t)
	ch, stop := e.st.WatchFrames(c.ID)
	defer stop()
	other, stopOther := e.st.WatchFrames(uuid.NewString())
	defer stopOther()
	drain(ch)
	go func() {
		_, _ = e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, []store.NewFrame{text("live")})
	}()
	expectWake(t, ch, "an append")
	eventually(t, wakeWithin, "the frame a wakeup announced is readable", func() bool {
		fs, _ := e.frames(t, c.ID, 0, 0)
		return len(fs) == 1
	})
	select {
	case <-other:
		t.Fatal("a follower of another task was woken by the append")
	default:
	}

	// A follower through another store on the same database — another
	// process, another node — is woken by appends too.
	second := e.open(t)
	far, stopFar := second.WatchFrames(c.ID)
	defer stopFar()
	drain(far)
	e.appendFrames(t, c, text("far"))
	expectWake(t, far, "an append through another store")

	// The final transition wakes the followers of the store that made
	// it, and the stream reads as ended.
	drain(ch)
	complete(t, e, c)
	expectWake(t, ch, "the task's completion")
	fs, end := e.frames(t, c.ID, 0, 0)
	if len(fs) != 2 || end == nil || end.State != store.StateCompleted {
		t.Fatalf("after completion: %d frames, end %+v; want 2 and completed", len(fs), end)
	}

	// Cancelling a pending task, and rescuing a running one into a
	// final state, end their streams too.
	pending := e.enqueue(t, store.NewTask{Kind: "k", Queue: "never", RunAt: e.now().Add(time.Hour)})[0].ID
	pch, stopP := e.st.WatchFrames(pending)
	defer stopP()
	if _, err := e.st.Cancel(e.ctx, pending); err != nil {
		t.Fatal(err)
	}
	expectWake(t, pch, "the task's cancellation")
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "once", MaxAttempts: 1})
	last := e.claim(t, "n", time.Minute, q("once", 1))[0]
	rch, stopR := e.st.WatchFrames(last.ID)
	defer stopR()
	e.clock.Advance(2 * time.Minute)
	e.rescue(t, store.RescueParams{})
	expectWake(t, rch, "a rescue that failed the task")
	if _, end := e.frames(t, last.ID, 0, 0); end == nil || end.State != store.StateFailed {
		t.Fatalf("end after a rescue with no attempt left: %+v", end)
	}
}

func testStreamEnd(t *testing.T, e *env) {
	at := e.clock.Freeze()
	c := e.streaming(t)
	e.appendFrames(t, c, text("1"), text("2"), text("3"))
	complete(t, e, c)
	page, end := e.frames(t, c.ID, 0, 2)
	if len(page) != 2 || end != nil {
		t.Fatalf("first page of a finished stream: %d frames, end %+v; want 2 and no end yet", len(page), end)
	}
	rest, end := e.frames(t, c.ID, 2, 2)
	assertFrames(t, "the last page", rest, "3/1 text 3")
	if end == nil || end.State != store.StateCompleted || !end.At.Equal(at) {
		t.Fatalf("end = %+v, want completed at %v", end, at)
	}
	if none, end := e.frames(t, c.ID, 3, 0); len(none) != 0 || end == nil {
		t.Fatalf("read past the last frame of an ended stream: %d frames, end %+v", len(none), end)
	}

	// A task cancelled before it ran has an empty, ended stream.
	pending := e.enqueue(t, store.NewTask{Kind: "k", Queue: "never"})[0].ID
	if _, err := e.st.Cancel(e.ctx, pending); err != nil {
		t.Fatal(err)
	}
	if fs, end := e.frames(t, pending, 0, 0); len(fs) != 0 || end == nil || end.State != store.StateCancelled {
		t.Fatalf("a cancelled task's stream: %d frames, end %+v", len(fs), end)
	}
	// An operator's retry reopens it: the next attempt's frames follow.
	if _, err := e.st.Retry(e.ctx, pending); err != nil {
		t.Fatal(err)
	}
	if _, end := e.frames(t, pending, 0, 0); end != nil {
		t.Fatalf("a retried task's stream is still ended: %+v", end)
	}
	again := e.claim(t, "n", time.Minute, q("never", 1))[0]
	assertFrames(t, "the retried attempt's frame", e.appendFrames(t, again, text("back")), "1/1 text back")
}

func testStreamCaps(t *testing.T, e *env) {
	c := e.streaming(t)
	for _, tc := range []struct {
		name     string
		frames   []store.NewFrame
		tooLarge bool
	}{
		{"no frames", nil, false},
		{"an unknown kind", []store.NewFrame{{Kind: "xml", Data: []byte("<a/>")}}, false},
		{"text that is not UTF-8", []store.NewFrame{{Kind: store.FrameText, Data: []byte{0xff, 0xfe}}}, false},
		{"JSON that is not JSON", []store.NewFrame{jsonFrame(`{"a":`)}, false},
		{"a negative number", []store.NewFrame{{Kind: store.FrameText, Data: []byte("x"), Seq: -1}}, false},
		{"numbers given to some frames only", []store.NewFrame{text("a"), {Kind: store.FrameText, Data: []byte("b"), Seq: 2}}, false},
		{"numbers that do not follow", []store.NewFrame{{Kind: store.FrameText, Data: []byte("a"), Seq: 1}, {Kind: store.FrameText, Data: []byte("b"), Seq: 3}}, false},
		{"a frame over 1 MiB", []store.NewFrame{{Kind: store.FrameText, Data: bytes.Repeat([]byte("x"), store.MaxFrameBytes+1)}}, true},
		{"too many frames", make([]store.NewFrame, store.MaxFramesPerAppend+1), true},
	} {
		_, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, tc.frames)
		if !errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrTooLarge) != tc.tooLarge {
			t.Fatalf("%s: %v; want ErrInvalid (too large: %v)", tc.name, err, tc.tooLarge)
		}
	}
	// A stream holds up to MaxStreamBytes, over any number of appends.
	mib := bytes.Repeat([]byte("y"), store.MaxFrameBytes)
	full := store.NewFrame{Kind: store.FrameText, Data: mib}
	for range store.MaxStreamBytes / store.MaxFrameBytes / 4 {
		e.appendFrames(t, c, full, full, full, full)
	}
	_, err := e.st.AppendFrames(e.ctx, c.ID, c.LeaseEpoch, []store.NewFrame{text("!")})
	var ve *store.ValidationError
	if !errors.Is(err, store.ErrTooLarge) || !errors.As(err, &ve) || ve.Field != "frames" {
		t.Fatalf("one byte past the stream's cap: %v; want a ValidationError on frames, too large", err)
	}
	fs, _ := e.frames(t, c.ID, 0, 0)
	if len(fs) != store.MaxStreamBytes/store.MaxFrameBytes {
		t.Fatalf("%d frames stored, want %d", len(fs), store.MaxStreamBytes/store.MaxFrameBytes)
	}
	// A replay of a stored frame adds nothing, so it is answered at the
	// cap too. (The frames above were numbered by the store: this claim's
	// first is 1.)
	got := e.appendFrames(t, c, numbered(1, full)...)
	if got[0].Seq != 1 || !bytes.Equal(got[0].Data, mib) {
		t.Fatalf("a replay at the cap returned frame %d", got[0].Seq)
	}
}

func testStreamPurge(t *testing.T, e *env) {
	purgeAll := func() {
		t.Helper()
		cut := map[store.State]time.Time{store.StateCompleted: e.now(), store.StateFailed: e.now(), store.StateCancelled: e.now(), store.StateSkipped: e.now()}
		for p := (store.PurgeParams{Before: cut}); ; {
			r, err := e.st.Purge(e.ctx, p)
			if err != nil {
				t.Fatalf("purge: %v", err)
			}
			if r.Done {
				return
			}
			p.After = r.Next
		}
	}
	// A plain task and a flow member stream, finish, and are purged.
	plainID := uuid.NewString()
	e.enqueue(t, store.NewTask{ID: plainID, Kind: "k", Queue: "plain"})
	plain := e.claim(t, "n", time.Minute, q("plain", 1))[0]
	e.appendFrames(t, plain, text("plain 1"), text("plain 2"))
	complete(t, e, plain)

	memberID := uuid.NewString()
	m := member("streamer")
	m.Task.ID = memberID
	fl := e.submit(t, m)
	mc := e.claim(t, "n", time.Minute, q("streamer", 1))[0]
	e.appendFrames(t, mc, text("member 1"))
	complete(t, e, mc)

	e.clock.Advance(time.Hour)
	purgeAll()
	for _, id := range []string{plainID, memberID} {
		if _, _, err := e.st.Frames(e.ctx, id, 0, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("frames of purged task %s: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := e.st.Flow(e.ctx, fl.ID); !errors.Is(err, store.ErrFlowNotFound) {
		t.Fatalf("the finished flow was not purged: %v", err)
	}
	// Nothing of the old streams is left: a task enqueued again under
	// the same id starts an empty stream, numbered from 1.
	for _, id := range []string{plainID, memberID} {
		e.enqueue(t, store.NewTask{ID: id, Kind: "k", Queue: "again"})
		again := e.claim(t, "n", time.Minute, q("again", 1))[0]
		if fs, _ := e.frames(t, id, 0, 0); len(fs) != 0 {
			t.Fatalf("frames of purged task %s came back: %q", id, frameTexts(fs))
		}
		assertFrames(t, "the first frame under a reused id", e.appendFrames(t, again, text("new")), "1/1 text new")
	}
}

type streamArgs struct{}

func (streamArgs) Kind() string { return "st.stream" }

func testEngineStream(t *testing.T, e *env) {
	next := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[streamArgs]) error {
		if err := task.StreamText(ctx, "working"); err != nil {
			return err
		}
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
		return task.Stream(ctx, map[string]int{"done": 1})
	})
	c := startClient(t, e, nil, ws, weft.Config{})
	res, err := c.Enqueue(e.ctx, streamArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The reader is another client on another store: another process.
	reader, err := weft.NewClient(e.open(t), &weft.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan weft.Frame, 4)
	ended := make(chan error, 1)
	go func() {
		end, err := reader.FollowStream(e.ctx, res.ID, 0, func(f weft.Frame) error {
			got <- f
			return nil
		})
		if err == nil && (end == nil || end.State != weft.StateCompleted) {
			err = fmt.Errorf("end = %+v, want completed", end)
		}
		ended <- err
	}()
	receive := func() weft.Frame {
		t.Helper()
		select {
		case f := <-got:
			return f
		case <-time.After(wakeWithin):
			t.Fatalf("no frame within %s", wakeWithin)
		}
		return weft.Frame{}
	}
	// The first frame arrives while the handler still runs.
	if f := receive(); f.Seq != 1 || f.Kind != weft.FrameText || string(f.Data) != "working" || f.Attempt != 1 {
		t.Fatalf("first frame = %+v", f)
	}
	close(next)
	if f := receive(); f.Seq != 2 || f.Kind != weft.FrameJSON || string(f.Data) != `{"done":1}` {
		t.Fatalf("second frame = %+v", f)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wakeWithin):
		t.Fatalf("the follower did not end within %s of the task's completion", wakeWithin)
	}
	frames, end, err := c.StreamFrames(e.ctx, res.ID, 0, 0)
	if err != nil || len(frames) != 2 || end == nil {
		t.Fatalf("stream after the end: %d frames, end %+v, %v", len(frames), end, err)
	}
}
