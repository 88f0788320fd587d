package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// outcomes records many remote attempts' outcomes with one store write, so
// that a worker pays one request, and the store one transaction, for a
// whole batch of finished tasks.
//
// The body is refused whole only when it is not a list of outcomes at all
// (malformed JSON, a wrong top-level shape, an empty list or more than
// api.MaxOutcomes). Each entry is then decoded and checked on its own, and
// one that is malformed or refused is answered with its own error, its
// field a path such as outcomes[3].retry_in, while the others are
// recorded. A failure of the store itself (the database is down) fails
// the whole request, and then nothing was recorded.
func (s *Server) outcomes(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Outcomes []json.RawMessage `json:"outcomes"`
	}
	if err := decode(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		s.respondErr(w, r, err)
		return
	}
	switch n := len(req.Outcomes); {
	case n == 0:
		s.respondErr(w, r, &api.FieldError{Status: http.StatusUnprocessableEntity, Field: "outcomes", Message: "must list at least one outcome"})
		return
	case n > api.MaxOutcomes:
		s.respondErr(w, r, &api.FieldError{Status: http.StatusRequestEntityTooLarge, Field: "outcomes", Message: fmt.Sprintf("%d outcomes exceeds the limit of %d per request", n, api.MaxOutcomes)})
		return
	}
	ctx := r.Context()
	now := time.Now().Truncate(time.Microsecond)
	out := api.OutcomesResponse{Outcomes: make([]api.OutcomeResult, len(req.Outcomes))}
	batch := make([]store.Outcome, 0, len(req.Outcomes))
	tasks := make([]*store.Task, 0, len(req.Outcomes))
	at := make([]int, 0, len(req.Outcomes)) // the entry each of batch answers
	first := make(map[string]int, len(req.Outcomes))
	for i, raw := range req.Outcomes {
		id, l, v, err := readOutcome(raw)
		out.Outcomes[i].ID = id
		if j, dup := first[id]; err == nil && dup {
			// Two outcomes of one task would race in one write; the
			// first one stands.
			err = badField("id", "task %s already has an outcome in this request, at outcomes[%d]", id, j)
		}
		var (
			o store.Outcome
			t *store.Task
		)
		if err == nil {
			o, t, err = s.decide(ctx, id, l, v, now)
		}
		if err != nil {
			if !refusedAlone(err) {
				s.respondErr(w, r, err)
				return
			}
			out.Outcomes[i].Error = entryError(i, err)
			continue
		}
		first[id] = i
		batch = append(batch, o)
		tasks = append(tasks, t)
		at = append(at, i)
	}
	if len(batch) > 0 {
		res, err := s.st.Finish(ctx, batch)
		if err != nil {
			s.respondErr(w, r, err)
			return
		}
		for k, i := range at {
			if res[k].Err != nil {
				out.Outcomes[i].Error = entryError(i, res[k].Err)
				continue
			}
			if s.cfg.LogOutcomes {
				engine.LogOutcome(s.log, tasks[k], batch[k], res[k], time.Time{}, now)
			}
			rec := recorded(batch[k], res[k])
			out.Outcomes[i].State, out.Outcomes[i].RunAt = rec.State, rec.RunAt
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// readOutcome decodes and checks one entry of a batch report as complete
// and fail check their bodies; its errors name fields within the entry.
func readOutcome(raw json.RawMessage) (string, lease, engine.Verdict, error) {
	var in api.OutcomeInput
	if err := decodeBytes(raw, &in, ""); err != nil {
		// The decoder reads on past a wrong field, so the id is known
		// unless it is the wrong one.
		return in.ID, lease{}, engine.Verdict{}, err
	}
	if in.ID == "" {
		return "", lease{}, engine.Verdict{}, badField("id", "must not be empty: give the id of the claimed task")
	}
	l, err := parseLeaseToken(in.ID, in.LeaseToken)
	if err != nil {
		return in.ID, l, engine.Verdict{}, err
	}
	if in.Error == nil {
		for _, opt := range []struct {
			name string
			set  bool
		}{{"permanent", in.Permanent}, {"cancel", in.Cancel}, {"retry_in", in.RetryIn != ""}, {"snooze", in.Snooze != ""}, {"rate_limited", in.RateLimited}} {
			if opt.set {
				return in.ID, l, engine.Verdict{}, badField(opt.name, "is an option of a failure: give error too, or leave it out to complete the task")
			}
		}
		v, err := completeVerdict(in.Result)
		return in.ID, l, v, err
	}
	if len(in.Result) > 0 && !bytes.Equal(in.Result, []byte("null")) {
		return in.ID, l, engine.Verdict{}, badField("result", "a failure has no result: give result to complete the task, or error to fail it")
	}
	v, err := failVerdict(api.FailRequest{Error: *in.Error, Permanent: in.Permanent, Cancel: in.Cancel, RetryIn: in.RetryIn, Snooze: in.Snooze, RateLimited: in.RateLimited})
	return in.ID, l, v, err
}

// refusedAlone reports whether err refuses one entry of a batch report
// rather than the whole request: the entry is invalid, its lease is lost or
// its task does not exist. Anything else (the database failing) would
// fail every entry alike.
func refusedAlone(err error) bool {
	var fe *api.FieldError
	return errors.As(err, &fe) || errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound)
}

// entryError is the error of the entry at index i, with the code and
// message the single endpoints answer, its field a path from the request's
// root (a task that does not exist names its id).
func entryError(i int, err error) *api.ErrorBody {
	b := ops.ProblemOf(err).Body
	if errors.Is(err, store.ErrNotFound) {
		b.Field = "id"
	}
	prefix := fmt.Sprintf("outcomes[%d]", i)
	if b.Field == "" {
		b.Field = prefix
	} else {
		b.Field = prefix + "." + b.Field
	}
	return &b
}
