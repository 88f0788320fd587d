package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// List bounds.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// enqueue stores one task, or an atomic batch when the body is
// {"tasks": [...]}. Nothing is written unless every task is valid.
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) {
	inputs, prefix, err := s.decodeEnqueue(w, r)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	tasks, err := api.ToNewTasks(inputs, prefix)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	res, err := s.st.Enqueue(r.Context(), tasks)
	if err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			err = &api.FieldError{Status: http.StatusUnprocessableEntity, Field: api.FieldOf(ve, prefix), Message: ve.Message}
		}
		s.respondErr(w, r, err)
		return
	}
	status := http.StatusOK
	out := make([]api.Enqueued, len(res))
	for i, e := range res {
		out[i] = api.Enqueued{ID: e.ID, Duplicate: e.Duplicate}
		if !e.Duplicate {
			status = http.StatusCreated
		}
	}
	s.metrics.enqueued.Add(float64(len(res)))
	if prefix == "" {
		writeJSON(w, status, out[0])
		return
	}
	writeJSON(w, status, api.BatchEnqueued{Tasks: out})
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
	t, err := s.st.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.FromTask(t))
}

// list pages through tasks in creation order; next_cursor, set on a full
// page, continues.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	p, err := listParams(r)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	tasks, err := s.st.List(r.Context(), p)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	out := api.TaskList{Tasks: make([]api.Task, len(tasks))}
	for i, t := range tasks {
		out.Tasks[i] = api.FromTask(t)
	}
	// A full page may have a successor; the last page can then be empty.
	if len(tasks) == p.Limit {
		out.NextCursor = tasks[len(tasks)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func listParams(r *http.Request) (store.ListParams, error) {
	q := r.URL.Query()
	bad := func(field, format string, args ...any) error {
		return &api.FieldError{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	for key := range q {
		switch key {
		case "queue", "kind", "state", "limit", "cursor":
		default:
			return store.ListParams{}, bad(key, "unknown query parameter %q (queue, kind, state, limit, cursor)", key)
		}
	}
	p := store.ListParams{Queue: q.Get("queue"), Kind: q.Get("kind"), After: q.Get("cursor"), Limit: defaultListLimit}
	if p.Queue != "" && !store.ValidName(p.Queue) {
		return p, bad("queue", "%q is not a valid queue name", p.Queue)
	}
	if p.Kind != "" && !store.ValidName(p.Kind) {
		return p, bad("kind", "%q is not a valid kind name", p.Kind)
	}
	if len(p.After) > 64 {
		return p, bad("cursor", "not a cursor from a previous page")
	}
	if v := q.Get("state"); v != "" {
		for _, name := range strings.Split(v, ",") {
			st := store.State(strings.TrimSpace(name))
			if !st.Valid() {
				return p, bad("state", "%q is not a state (pending, running, completed, failed, cancelled)", name)
			}
			p.States = append(p.States, st)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return p, bad("limit", "%q is not a number from 1 to %d", v, maxListLimit)
		}
		p.Limit = n
	}
	return p, nil
}

// cancel cancels a pending task at once or asks its worker to stop a
// running one; a finished task is a conflict.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	t, err := s.cfg.Client.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		if errors.Is(err, store.ErrAlreadyFinished) && t != nil {
			err = fmt.Errorf("%w: task %s is already %s", store.ErrConflict, t.ID, t.State)
		}
		s.respondErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.FromTask(t))
}

// retry makes a failed or cancelled task pending again.
func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	t, err := s.st.Retry(r.Context(), r.PathValue("id"))
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.FromTask(t))
}
