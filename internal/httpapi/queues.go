package httpapi

import "net/http"

func (s *Server) queues(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Queues(r.Context()))
}

// pauseQueue and resumeQueue answer with the queue as it now is.
func (s *Server) pauseQueue(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.PauseQueue(r.Context(), r.PathValue("name")))
}

func (s *Server) resumeQueue(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.ResumeQueue(r.Context(), r.PathValue("name")))
}
