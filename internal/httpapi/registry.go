package httpapi

import (
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftworks/weft/store"
)

// workerTouchEvery bounds how often a remote worker's claims are written
// to the registry: a worker that claims in a tight loop costs one small
// write every few seconds, not one per claim.
const workerTouchEvery = 5 * time.Second

// registry records the remote workers whose claims this server serves,
// writing each at most once per workerTouchEvery unless what it serves
// changed.
type registry struct {
	st  store.Coordinator
	log *slog.Logger

	mu   sync.Mutex
	seen map[string]lastTouch
}

// lastTouch is what the registry last wrote of a worker, and when.
type lastTouch struct {
	at     time.Time
	serves string
}

func newRegistry(st store.Coordinator, log *slog.Logger) *registry {
	return &registry{st: st, log: log, seen: map[string]lastTouch{}}
}

// touch records a claim of req's worker from r. A failed write is logged,
// not answered: the registry is for people, and the claim goes on.
func (g *registry) touch(r *http.Request, req store.ClaimRequest) {
	w := store.RemoteWorker{ID: req.Owner, Host: clientHost(r), Kinds: slices.Sorted(slices.Values(req.Kinds)), Labels: req.Labels}
	for _, q := range req.Queues {
		w.Queues = append(w.Queues, q.Queue)
	}
	labels := make([]string, 0, len(w.Labels))
	for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
		labels = append(labels, k+"="+w.Labels[k])
	}
	serves := strings.Join(w.Queues, ",") + "|" + strings.Join(w.Kinds, ",") + "|" + w.Host + "|" + strings.Join(labels, "\x00")
	now := time.Now()
	g.mu.Lock()
	if last, ok := g.seen[w.ID]; ok && last.serves == serves && now.Sub(last.at) < workerTouchEvery {
		g.mu.Unlock()
		return
	}
	g.seen[w.ID] = lastTouch{at: now, serves: serves}
	// The store forgets silent workers; so does the map.
	for id, rec := range g.seen {
		if now.Sub(rec.at) > store.ForgetWorkersAfter {
			delete(g.seen, id)
		}
	}
	g.mu.Unlock()
	if err := g.st.TouchWorker(r.Context(), w); err != nil {
		g.log.Warn("weft: recording a remote worker", "worker", w.ID, "err", err)
		g.mu.Lock()
		delete(g.seen, w.ID) // written again at its next claim
		g.mu.Unlock()
	}
}

// clientHost is the host part of the request's remote address.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
