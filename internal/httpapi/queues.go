package httpapi

import (
	"net/http"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

func (s *Server) queues(w http.ResponseWriter, r *http.Request) {
	stats, err := s.st.Stats(r.Context())
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	out := api.QueueList{Queues: make([]api.Queue, len(stats))}
	for i, qs := range stats {
		out.Queues[i] = api.FromQueueStats(qs)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) pauseQueue(w http.ResponseWriter, r *http.Request)  { s.setPaused(w, r, true) }
func (s *Server) resumeQueue(w http.ResponseWriter, r *http.Request) { s.setPaused(w, r, false) }

// setPaused pauses or resumes a queue on every node and answers with the
// queue as it now is.
func (s *Server) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	name := r.PathValue("name")
	if !store.ValidName(name) {
		s.respondErr(w, r, badField("name", "%q is not a valid queue name", name))
		return
	}
	if err := s.st.PauseQueue(r.Context(), name, paused); err != nil {
		s.respondErr(w, r, err)
		return
	}
	stats, err := s.st.Stats(r.Context())
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	out := api.FromQueueStats(store.QueueStats{Queue: name, Paused: paused})
	for _, qs := range stats {
		if qs.Queue == name {
			out = api.FromQueueStats(qs)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
