package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/internal/tracing"
)

// enqueue stores one task, or an atomic batch when the body is
// {"tasks": [...]}. Nothing is written unless every task is valid.
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) {
	inputs, prefix, err := s.decodeEnqueue(w, r)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	var (
		res  []api.Enqueued
		body any
	)
	if prefix == "" {
		var e api.Enqueued
		e, err = s.ops.Enqueue(tracing.FromHeaders(r), inputs[0])
		res, body = []api.Enqueued{e}, e
	} else {
		var b api.BatchEnqueued
		b, err = s.ops.EnqueueBatch(tracing.FromHeaders(r), inputs)
		res, body = b.Tasks, b
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	// 201 when anything was created; all duplicates wrote nothing.
	status := http.StatusOK
	for _, e := range res {
		if !e.Duplicate {
			status = http.StatusCreated
		}
	}
	s.metrics.enqueued.Add(float64(len(res)))
	writeJSON(w, status, body)
}

// decodeEnqueue tells one task from a batch by the presence of "tasks",
// then decodes strictly as that shape. prefix is "tasks" for a batch.
func (s *Server) decodeEnqueue(w http.ResponseWriter, r *http.Request) ([]api.TaskInput, string, error) {
	var raw json.RawMessage
	if err := decode(w, r, s.cfg.MaxBodyBytes, &raw); err != nil {
		return nil, "", err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, "", &api.FieldError{Status: http.StatusBadRequest, Message: "expected a JSON object: one task, or {\"tasks\": [...]}"}
	}
	if _, ok := probe["tasks"]; ok {
		// Each task is decoded on its own so that errors carry its index.
		var b struct {
			Tasks []json.RawMessage `json:"tasks"`
		}
		if err := decodeBytes(raw, &b, ""); err != nil {
			return nil, "", err
		}
		if b.Tasks == nil {
			return nil, "", &api.FieldError{Status: http.StatusBadRequest, Field: "tasks", Message: "must be an array of tasks"}
		}
		if len(b.Tasks) > api.MaxBatch {
			return nil, "", &api.FieldError{Status: http.StatusRequestEntityTooLarge, Field: "tasks", Message: fmt.Sprintf("%d tasks exceeds the limit of %d per batch", len(b.Tasks), api.MaxBatch)}
		}
		tasks := make([]api.TaskInput, len(b.Tasks))
		for i, rt := range b.Tasks {
			if err := decodeBytes(rt, &tasks[i], fmt.Sprintf("tasks[%d]", i)); err != nil {
				return nil, "", err
			}
		}
		return tasks, "tasks", nil
	}
	var t api.TaskInput
	if err := decodeBytes(raw, &t, ""); err != nil {
		return nil, "", err
	}
	return []api.TaskInput{t}, "", nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Get(r.Context(), r.PathValue("id")))
}

// list pages through tasks in creation order; next_cursor, set on a full
// page, continues.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	p, err := ops.ParseListQuery(r.URL.Query())
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.List(r.Context(), p))
}

// cancel cancels a pending task at once or asks its worker to stop a
// running one; a finished task is a conflict.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Cancel(r.Context(), r.PathValue("id")))
}

// retry makes a failed or cancelled task pending again.
func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Retry(r.Context(), r.PathValue("id")))
}
