package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
)

// submitFlow stores a flow and its members atomically, answering 201 with
// the flow's id and each member's task id by key. Nothing is written
// unless the whole flow is valid.
func (s *Server) submitFlow(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Name     string            `json:"name"`
		Metadata json.RawMessage   `json:"metadata"`
		Tasks    []json.RawMessage `json:"tasks"`
	}
	if err := decode(w, r, s.cfg.MaxBodyBytes, &b); err != nil {
		s.respondErr(w, r, err)
		return
	}
	tasks, err := decodeMembers(b.Tasks)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	res, err := s.ops.SubmitFlow(r.Context(), api.FlowInput{Name: b.Name, Metadata: b.Metadata, Tasks: tasks})
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.metrics.enqueued.Add(float64(len(res.Tasks)))
	writeJSON(w, http.StatusCreated, res)
}

// decodeMembers decodes each member on its own, so that errors carry its
// index (tasks[3].prio).
func decodeMembers(raw []json.RawMessage) ([]api.FlowTaskInput, error) {
	if raw == nil {
		return nil, &api.FieldError{Status: http.StatusBadRequest, Field: "tasks", Message: "must be an array of tasks"}
	}
	out := make([]api.FlowTaskInput, len(raw))
	for i, rt := range raw {
		if err := decodeBytes(rt, &out[i], fmt.Sprintf("tasks[%d]", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// getFlow answers a flow with its members, or without them given
// members=false.
func (s *Server) getFlow(w http.ResponseWriter, r *http.Request) {
	members := true
	for key, v := range r.URL.Query() {
		if key != "members" {
			s.respondErr(w, r, badField(key, "unknown query parameter %q (members)", key))
			return
		}
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			s.respondErr(w, r, badField("members", "%q is not true or false", v[0]))
			return
		}
		members = b
	}
	s.answer(w, r)(s.ops.Flow(r.Context(), r.PathValue("id"), members))
}

// listFlows pages through flows in creation order; next_cursor, set on a
// full page, continues.
func (s *Server) listFlows(w http.ResponseWriter, r *http.Request) {
	p, err := ops.ParseFlowListQuery(r.URL.Query())
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.ListFlows(r.Context(), p))
}

func (s *Server) cancelFlow(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.CancelFlow(r.Context(), r.PathValue("id")))
}

func (s *Server) retryFlow(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.RetryFlow(r.Context(), r.PathValue("id")))
}

// flowEvents streams the events of a flow's members, as events streams a
// task's; with follow=true until the flow is final.
func (s *Server) flowEvents(w http.ResponseWriter, r *http.Request) {
	s.streamEvents(w, r, s.ops.FlowEvents)
}

// addMembers adds members to the flow of a running member, under the lease
// of its claim, answering 201 with the flow's id and the new members' task
// ids by key.
func (s *Server) addMembers(w http.ResponseWriter, r *http.Request) {
	var b struct {
		LeaseToken string            `json:"lease_token"`
		Tasks      []json.RawMessage `json:"tasks"`
	}
	if err := decode(w, r, s.cfg.MaxBodyBytes, &b); err != nil {
		s.respondErr(w, r, err)
		return
	}
	id := r.PathValue("id")
	l, err := parseLeaseToken(id, b.LeaseToken)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	tasks, err := decodeMembers(b.Tasks)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	res, err := s.ops.AddMembers(r.Context(), id, l.epoch, tasks)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.metrics.enqueued.Add(float64(len(res.Tasks)))
	writeJSON(w, http.StatusCreated, res)
}
