package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/internal/remote"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// Handlers of a remote worker write their frames through the server, in
// order, each attempt's numbered from 1.
func TestStreamOverServer(t *testing.T) {
	st, _ := runRemote(t, 30, 10, func(ctx context.Context, x *engine.Execution) engine.Verdict {
		for _, f := range []store.NewFrame{
			{Kind: store.FrameText, Data: []byte("task " + string(x.Task.Args))},
			{Kind: store.FrameJSON, Data: []byte(`{"n":` + string(x.Task.Args) + `}`)},
		} {
			if _, err := x.AppendFrames(ctx, []store.NewFrame{f}); err != nil {
				return engine.Verdict{Action: engine.Fail, Err: err}
			}
		}
		return engine.Verdict{Action: engine.Complete}
	})
	tasks, err := st.List(context.Background(), store.ListParams{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		frames, end, err := st.Frames(context.Background(), task.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%d:%s %d:%s", frames[0].Seq, frames[0].Data, frames[1].Seq, frames[1].Data)
		want := fmt.Sprintf("1:task %s 2:{\"n\":%s}", task.Args, task.Args)
		if len(frames) != 2 || got != want || end == nil || end.State != store.StateCompleted {
			t.Fatalf("stream of task %s = %q (%d frames), end %+v; want %q and completed", task.Args, got, len(frames), end, want)
		}
	}
}

// loseAnswers passes requests to a real server, but answers the stream
// requests numbered in lose with a 502 after the server handled them: the
// answer was lost, not the write.
type loseAnswers struct {
	next  http.Handler
	n     atomic.Int64
	lose  map[int64]bool
	alone bool // lose without passing the request on: nothing was written
}

func (l *loseAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/stream") {
		l.next.ServeHTTP(w, r)
		return
	}
	if !l.lose[l.n.Add(1)] {
		l.next.ServeHTTP(w, r)
		return
	}
	if !l.alone {
		l.next.ServeHTTP(httptest.NewRecorder(), r)
	}
	http.Error(w, "bad gateway", http.StatusBadGateway)
}

// A request whose answer was lost is sent again ahead of the next frames,
// under the same numbers: stored once whether the server had it or not. A
// refused one is dropped.
func TestStreamResendsUnanswered(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(fmt.Sprintf("server stored it: %v", stored), func(t *testing.T) {
			_, st := testenv.SQLite(t)
			srv, err := httpapi.New(httpapi.Config{Client: testenv.Client(t, st), Logger: testenv.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			proxy := &loseAnswers{next: srv, lose: map[int64]bool{2: true}, alone: !stored}
			hs := httptest.NewServer(proxy)
			t.Cleanup(hs.Close)
			ctx := context.Background()
			res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k"}})
			if err != nil {
				t.Fatal(err)
			}
			src := remote.New(remote.Config{Client: apiclient.New(hs.URL, "", hs.Client()), Wait: time.Second, Logger: testenv.Logger()})
			claimed, err := src.Claim(ctx, store.ClaimRequest{Owner: "w", Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: 1}}, LeaseTTL: time.Minute})
			if err != nil || len(claimed) != 1 {
				t.Fatalf("claim = %v, %v", claimed, err)
			}
			id, epoch := res[0].ID, claimed[0].LeaseEpoch
			text := func(s string) []store.NewFrame { return []store.NewFrame{{Kind: store.FrameText, Data: []byte(s)}} }

			if _, err := src.AppendFrames(ctx, id, epoch, text("a")); err != nil {
				t.Fatal(err)
			}
			if _, err := src.AppendFrames(ctx, id, epoch, text("b")); err == nil {
				t.Fatal("an append whose answer was lost succeeded")
			}
			got, err := src.AppendFrames(ctx, id, epoch, text("c"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Seq != 3 || string(got[0].Data) != "c" {
				t.Fatalf("the append after a lost answer returned %+v, want frame 3, c", got)
			}
			// A bad frame is refused before it is numbered.
			if _, err := src.AppendFrames(ctx, id, epoch, []store.NewFrame{{Kind: "xml", Data: []byte("<d/>")}}); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("a bad frame: %v, want ErrInvalid", err)
			}
			n := int64(4)
			if !stored {
				// The server's refusal (the stream is full) stored
				// nothing: its numbers are used again. (Once: 15 MiB
				// through the API is slow under the race detector.)
				mib := store.NewFrame{Kind: store.FrameText, Data: []byte(strings.Repeat("m", store.MaxFrameBytes))}
				full := make([]store.NewFrame, store.MaxStreamBytes/store.MaxFrameBytes-1)
				for i := range full {
					full[i] = mib
				}
				if _, err := src.AppendFrames(ctx, id, epoch, full); err != nil {
					t.Fatal(err)
				}
				if _, err := src.AppendFrames(ctx, id, epoch, []store.NewFrame{mib}); !errors.Is(err, apiclient.ErrTooLarge) {
					t.Fatalf("an append past the stream's cap: %v, want the server's 413", err)
				}
				n += int64(len(full))
			}
			if got, err = src.AppendFrames(ctx, id, epoch, text("e")); err != nil || got[0].Seq != n {
				t.Fatalf("the append after a refusal = %+v, %v; want frame %d", got, err, n)
			}
			frames, _, err := st.Frames(ctx, id, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for _, f := range frames {
				if len(f.Data) < 10 {
					all = append(all, fmt.Sprintf("%d:%s", f.Seq, f.Data))
				}
			}
			if want := fmt.Sprintf("1:a 2:b 3:c %d:e", n); strings.Join(all, " ") != want || len(frames) != int(n) {
				t.Fatalf("stored stream = %v (%d frames), want %s: each frame once, in order", all, len(frames), want)
			}
			// Another claim's lease is not this one's.
			if _, err := src.AppendFrames(ctx, id, epoch+1, text("x")); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("an append under an epoch the source never handed out: %v", err)
			}
		})
	}
}
