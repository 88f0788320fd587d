package ops

import (
	"context"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Queues lists every queue that has a task or is paused, by name, with
// its counts and how many live workers work it.
func (s *Service) Queues(ctx context.Context) (api.QueueList, error) {
	stats, err := s.b.Stats(ctx)
	if err != nil {
		return api.QueueList{}, err
	}
	workers, err := s.queueWorkers(ctx)
	if err != nil {
		return api.QueueList{}, err
	}
	out := api.QueueList{Queues: make([]api.Queue, len(stats))}
	for i, qs := range stats {
		out.Queues[i] = api.FromQueueStats(qs)
		out.Queues[i].Workers = workers[qs.Queue]
	}
	return out, nil
}

// PauseQueue stops claims from queue name on every node and returns the
// queue as it now is. A queue may be paused before it has any task.
func (s *Service) PauseQueue(ctx context.Context, name string) (api.Queue, error) {
	return s.setPaused(ctx, name, true)
}

// ResumeQueue lets claims from queue name go on and returns the queue as
// it now is.
func (s *Service) ResumeQueue(ctx context.Context, name string) (api.Queue, error) {
	return s.setPaused(ctx, name, false)
}

func (s *Service) setPaused(ctx context.Context, name string, paused bool) (api.Queue, error) {
	if !store.ValidName(name) {
		// The name is the request's path, not a field of a body: a
		// malformed request (400), as for the list's queue filter.
		return api.Queue{}, badRequest("name", "%q is not a valid queue name", name)
	}
	if err := s.b.PauseQueue(ctx, name, paused); err != nil {
		return api.Queue{}, err
	}
	list, err := s.Queues(ctx)
	if err != nil {
		return api.Queue{}, err
	}
	for _, q := range list.Queues {
		if q.Name == name {
			return q, nil
		}
	}
	// A resumed queue that holds no task is not listed.
	workers, err := s.queueWorkers(ctx)
	if err != nil {
		return api.Queue{}, err
	}
	q := api.FromQueueStats(store.QueueStats{Queue: name, Paused: paused})
	q.Workers = workers[name]
	return q, nil
}
