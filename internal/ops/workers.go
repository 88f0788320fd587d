package ops

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// LiveWithin is how recently a worker must have been seen to count as
// live, unless it holds a task: a node beats every third of its lease TTL
// (10s by default), and an idle remote worker's long poll returns within
// a minute, so two minutes of silence means it is gone.
const LiveWithin = 2 * time.Minute

// Workers lists the registry: nodes, then remote workers, each by id.
func (s *Service) Workers(ctx context.Context) (api.WorkerList, error) {
	ws, err := s.workers(ctx)
	if err != nil {
		return api.WorkerList{}, err
	}
	if ws == nil {
		ws = []api.Worker{}
	}
	return api.WorkerList{Workers: ws}, nil
}

func (s *Service) workers(ctx context.Context) ([]api.Worker, error) {
	nodes, err := s.b.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	remote, err := s.b.RemoteWorkers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	live := func(seen time.Time, running int) bool { return running > 0 || now.Sub(seen) <= LiveWithin }
	out := make([]api.Worker, 0, len(nodes)+len(remote))
	for _, n := range nodes {
		out = append(out, api.Worker{
			ID: n.ID, Type: api.WorkerNode, Host: n.Host, PID: n.PID, Queues: n.Queues, Kinds: n.Kinds, Labels: n.Labels, Running: n.Running,
			Live: live(n.HeartbeatAt, n.Running), StartedAt: n.StartedAt.UTC(), LastSeenAt: n.HeartbeatAt.UTC(),
		})
	}
	for _, w := range remote {
		out = append(out, api.Worker{
			ID: w.ID, Type: api.WorkerRemote, Host: w.Host, Queues: w.Queues, Kinds: w.Kinds, Labels: w.Labels, Running: w.Running,
			Live: live(w.LastSeenAt, w.Running), StartedAt: w.FirstSeenAt.UTC(), LastSeenAt: w.LastSeenAt.UTC(),
		})
	}
	return out, nil
}

// liveWorkers is the live part of the registry.
func (s *Service) liveWorkers(ctx context.Context) ([]api.Worker, error) {
	ws, err := s.workers(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ws, func(w api.Worker) bool { return !w.Live }), nil
}

// serves reports whether w runs kind (every kind, when it names none).
func serves(w api.Worker, kind string) bool {
	return len(w.Kinds) == 0 || slices.Contains(w.Kinds, kind)
}

// Explain says why the pending task t will not run until something
// changes, as a hint for people, and as the blocked reason when it has
// one: the one a claim set aside with it (a limit, a rate, with the key's
// slots in use and cap), else its queue being paused, else no live worker
// having the labels it requires.
func (s *Service) Explain(ctx context.Context, t *store.Task) (string, *api.BlockedReason, error) {
	stats, err := s.b.Stats(ctx)
	if err != nil {
		return "", nil, err
	}
	paused := false
	for _, qs := range stats {
		if qs.Queue == t.Queue && qs.Paused {
			paused = true
		}
	}
	live, err := s.liveWorkers(ctx)
	if err != nil {
		return "", nil, err
	}
	blocked := api.FromBlocked(t.Blocked)
	switch {
	case blocked != nil:
		if err := s.limitCounts(ctx, blocked); err != nil {
			return "", nil, err
		}
	case paused:
		blocked = &api.BlockedReason{Reason: store.BlockedQueuePaused}
	case len(t.Requires) > 0 && !slices.ContainsFunc(live, func(w api.Worker) bool { return satisfies(w, t.Requires) }):
		blocked = &api.BlockedReason{Reason: store.BlockedNoMatchingWorker}
	}
	return hint(t, paused, live), blocked, nil
}

// satisfies reports whether w's labels satisfy every one of rs.
func satisfies(w api.Worker, rs []store.Requirement) bool {
	for _, r := range rs {
		if !r.Satisfied(w.Labels) {
			return false
		}
	}
	return true
}

// hint says why the pending task t will not run until something changes:
// its queue is paused, no live worker works its queue, none of those that
// do runs its kind, or none of those has the labels it requires. "" when
// a live worker will take it.
func hint(t *store.Task, paused bool, live []api.Worker) string {
	if paused {
		return fmt.Sprintf("queue %s is paused: no worker takes its tasks until it is resumed (weft queues resume %s)", t.Queue, t.Queue)
	}
	if len(live) == 0 {
		return fmt.Sprintf("no live worker: start one that works queue %s and runs kind %s (weft serve runs the http kind; weft worker or your own program runs the others)", t.Queue, t.Kind)
	}
	var onQueue, runsKind []api.Worker
	others := map[string]bool{}
	for _, w := range live {
		if slices.Contains(w.Queues, t.Queue) {
			onQueue = append(onQueue, w)
		}
		for _, q := range w.Queues {
			others[q] = true
		}
	}
	if len(onQueue) == 0 {
		return fmt.Sprintf("no live worker works queue %s (live workers work %s)", t.Queue, strings.Join(slices.Sorted(maps.Keys(others)), ", "))
	}
	kinds := map[string]bool{}
	for _, w := range onQueue {
		if serves(w, t.Kind) {
			runsKind = append(runsKind, w)
		}
		for _, k := range w.Kinds {
			kinds[k] = true
		}
	}
	if len(runsKind) == 0 {
		return fmt.Sprintf("no live worker on queue %s runs kind %s (they run %s)", t.Queue, t.Kind, strings.Join(slices.Sorted(maps.Keys(kinds)), ", "))
	}
	if len(t.Requires) > 0 && !slices.ContainsFunc(runsKind, func(w api.Worker) bool { return satisfies(w, t.Requires) }) {
		return fmt.Sprintf("no live worker on queue %s that runs kind %s has the labels it requires (%s): give a worker them (weft worker --label, weft.Config.Labels)", t.Queue, t.Kind, api.RequirementsText(api.FromRequirements(t.Requires)))
	}
	return ""
}

// queueWorkers counts, per queue, the live workers that work it.
func (s *Service) queueWorkers(ctx context.Context) (map[string]int, error) {
	live, err := s.liveWorkers(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, w := range live {
		for _, q := range w.Queues {
			out[q]++
		}
	}
	return out, nil
}
