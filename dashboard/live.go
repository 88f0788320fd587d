package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/weftworks/weft/store"
)

// Live updates: a page opens an EventSource on Base+"/live" and reloads
// its changing part when told. The stream follows the feed of every
// task's events from its end, reading again on the store's wakeups and
// every Poll (starts and outcomes wake nobody), and sends one "change"
// message per read that found events, with the ids of the tasks they
// concern (at most maxLiveIDs; "more" says there were others).

// maxLiveIDs bounds the task ids of one change message.
const maxLiveIDs = 100

// liveChange is the data of a change message.
type liveChange struct {
	Tasks []string `json:"tasks"`
	More  bool     `json:"more"`
}

// keepAlive is how often an idle stream sends a comment, so that proxies
// keep it open.
const keepAlive = 15 * time.Second

func (d *Dashboard) live(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	wake, stop := d.st.Subscribe()
	defer stop()
	start, err := d.st.EventsAfter(ctx, store.EventFilter{After: -1})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	cursor := start.Next
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n: live\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	lastSent := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.cfg.Done:
			return
		case <-wake:
		case <-tick.C:
		}
		page, err := d.st.EventsAfter(ctx, store.EventFilter{After: cursor, Limit: 1000})
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("dashboard: live stream: reading events", "err", err)
			}
			continue
		}
		cursor = page.Next
		if len(page.Events) == 0 {
			if time.Since(lastSent) >= keepAlive {
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return
				}
				_ = rc.Flush()
				lastSent = time.Now()
			}
			continue
		}
		var ch liveChange
		seen := map[string]bool{}
		for _, ev := range page.Events {
			if seen[ev.TaskID] {
				continue
			}
			seen[ev.TaskID] = true
			if len(ch.Tasks) == maxLiveIDs {
				ch.More = true
				break
			}
			ch.Tasks = append(ch.Tasks, ev.TaskID)
		}
		b, _ := json.Marshal(ch) // strings only
		if _, err := fmt.Fprintf(w, "event: change\ndata: %s\n\n", b); err != nil {
			return
		}
		_ = rc.Flush()
		lastSent = time.Now()
	}
}
