package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// Waits over HTTP: a remote worker creates waitpoints and suspends its
// task under the lease token, as it completes or fails it; anyone with a
// waitpoint's token signals it (POST /v1/signals), and callers with API
// access signal a task's waitpoint by name and list them. The signal and
// list routes are internal/ops's Waits, which the CLI's direct mode runs
// too.

// createWaitpoint creates a waitpoint for a claimed task, or answers the
// one of that name it already has (200 rather than 201).
func (s *Server) createWaitpoint(w http.ResponseWriter, r *http.Request) {
	var req api.WaitpointRequest
	id, l, ok := s.decodeLeased(w, r, &req, &req.LeaseToken)
	if !ok {
		return
	}
	now := time.Now()
	nw := store.NewWaitpoint{Name: req.Name, Allow: req.Allow}
	if req.ExpiresIn != "" {
		d, err := durationField("expires_in", req.ExpiresIn, 0, time.Second, store.MaxWaitTimeout)
		if err != nil {
			s.respondErr(w, r, err)
			return
		}
		nw.ExpiresAt = now.Add(d).Truncate(time.Second)
	}
	if err := store.CheckWaitpoint(nw, now); err != nil {
		s.respondErr(w, r, err)
		return
	}
	ctx := r.Context()
	// The one of that name, if the task has it, is answered 200; the lease
	// is checked by the write all the same.
	before, err := s.st.Waitpoints(ctx, id)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	wp, err := s.st.CreateWaitpoint(ctx, id, l.epoch, nw)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	tok, err := s.cfg.Client.WaitpointToken(ctx, wp)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	status := http.StatusCreated
	if slices.ContainsFunc(before, func(b store.Waitpoint) bool { return b.ID == wp.ID }) {
		status = http.StatusOK
	}
	writeJSON(w, status, api.FromWaitpoint(wp, tok))
}

// wait suspends a claimed task on its waitpoints, through the decision
// rules and the write of every other outcome. The wait is checked against
// the task's waitpoints first, so that a mistake is a 422 naming the field
// rather than a task failed for an invalid wait.
func (s *Server) wait(w http.ResponseWriter, r *http.Request) {
	var req api.WaitRequest
	id, l, ok := s.decodeLeased(w, r, &req, &req.LeaseToken)
	if !ok {
		return
	}
	timeout, err := durationField("timeout", req.Timeout, 0, 0, store.MaxWaitTimeout)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	spec := &store.WaitSpec{Waitpoints: req.Waitpoints, Mode: store.WaitMode(req.Mode), Count: req.Count,
		Timeout: timeout, OnTimeout: store.OnTimeout(req.OnTimeout)}
	ctx := r.Context()
	v := engine.Verdict{Action: engine.Wait, Wait: spec, Err: fmt.Errorf("waiting on %s", strings.Join(req.Waitpoints, ", "))}
	now := time.Now().Truncate(time.Microsecond)
	o, t, err := s.decide(ctx, id, l, v, now)
	if err == nil {
		err = s.checkWait(ctx, id, spec)
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	res, err := s.st.Finish(ctx, []store.Outcome{o})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	if s.cfg.LogOutcomes {
		engine.LogOutcome(s.log, t, o, res[0], time.Time{}, now)
	}
	writeJSON(w, http.StatusOK, api.Outcome{ID: id, State: string(res[0].State)})
}

// checkWait validates a wait against the task's waitpoints as the store
// will, filling in its defaults; its errors name fields of the request.
func (s *Server) checkWait(ctx context.Context, id string, spec *store.WaitSpec) error {
	wps, err := s.st.Waitpoints(ctx, id)
	if err != nil {
		return err
	}
	open := map[string]bool{}
	for _, wp := range wps {
		open[wp.Name] = wp.State == store.WaitpointOpen
		if i := slices.Index(spec.Waitpoints, wp.Name); i >= 0 && wp.State != store.WaitpointOpen {
			return &api.FieldError{Status: http.StatusUnprocessableEntity, Field: fmt.Sprintf("waitpoints[%d]", i),
				Message: fmt.Sprintf("waitpoint %q was resolved by %s: a new wait needs a new waitpoint", wp.Name, wp.Resolution)}
		}
	}
	err = spec.Check(open)
	if ve := (*store.ValidationError)(nil); errors.As(err, &ve) {
		// The store names the fields of a handler's wait; here they are
		// the request's own.
		return &api.FieldError{Status: http.StatusUnprocessableEntity, Field: strings.TrimPrefix(ve.Field, "wait."), Message: ve.Message}
	}
	return err
}

// claimedSignals adds, to each claimed task that has waitpoints, its
// waitpoints with their signals (without tokens).
func (s *Server) claimedSignals(ctx context.Context, tasks []api.ClaimedTask) error {
	if len(tasks) == 0 {
		return nil
	}
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.ID
	}
	// One read for the whole claim: most tasks have no waitpoint.
	all, err := s.st.WaitpointsOf(ctx, ids)
	if err != nil {
		return err
	}
	for i := range tasks {
		for _, wp := range all[tasks[i].ID] {
			tasks[i].Signals = append(tasks[i].Signals, api.FromWaitpoint(wp, ""))
		}
	}
	return nil
}

func (s *Server) signal(w http.ResponseWriter, r *http.Request) {
	var req api.SignalRequest
	if err := decode(w, r, smallBodyBytes, &req); err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.waits.Signal(r.Context(), req))
}

func (s *Server) signalTask(w http.ResponseWriter, r *http.Request) {
	var req api.TaskSignalRequest
	if err := decode(w, r, smallBodyBytes, &req); err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.waits.SignalTask(r.Context(), r.PathValue("id"), req))
}

func (s *Server) waitpoints(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.waits.Waitpoints(r.Context(), r.PathValue("id")))
}
