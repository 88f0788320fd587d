package httpapi

import (
	"net/http"

	"github.com/weftworks/weft/internal/api"
)

// The operator's routes beyond single tasks: schedules, bulk actions on
// tasks, deleting and running a task now, and the worker registry. Each is
// a call of internal/ops's service, which the CLI's direct mode runs too.

func (s *Server) schedules(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Schedules(r.Context()))
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Schedule(r.Context(), r.PathValue("name")))
}

// putSchedule creates or replaces a schedule and answers it as stored.
func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) {
	var in api.ScheduleInput
	if err := decode(w, r, smallBodyBytes, &in); err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.PutSchedule(r.Context(), r.PathValue("name"), in))
}

// deleteSchedule answers the schedule as it was.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.DeleteSchedule(r.Context(), r.PathValue("name")))
}

func (s *Server) pauseSchedule(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.PauseSchedule(r.Context(), r.PathValue("name")))
}

func (s *Server) resumeSchedule(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.ResumeSchedule(r.Context(), r.PathValue("name")))
}

// triggerSchedule enqueues one task from the schedule now: 201 with its id.
func (s *Server) triggerSchedule(w http.ResponseWriter, r *http.Request) {
	t, err := s.ops.TriggerSchedule(r.Context(), r.PathValue("name"))
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.metrics.enqueued.Inc()
	writeJSON(w, http.StatusCreated, t)
}

// bulk applies an action to the tasks a filter or a list of ids selects.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request) {
	var req api.BulkRequest
	if err := decode(w, r, smallBodyBytes, &req); err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.Bulk(r.Context(), req))
}

// deleteTask deletes a finished task and answers it as it was.
func (s *Server) deleteTask(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.DeleteTask(r.Context(), r.PathValue("id")))
}

// runTask makes a pending task scheduled for later ready now.
func (s *Server) runTask(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.RunTask(r.Context(), r.PathValue("id")))
}

func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Workers(r.Context()))
}
