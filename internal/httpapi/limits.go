package httpapi

import (
	"net/http"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
)

// The routes of limits and fairness: each a call of internal/ops's
// service, which the CLI's direct mode runs too.

func (s *Server) limits(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Limits(r.Context()))
}

// getLimit answers a limit with its totals and a page of its keys
// (?cursor=, ?limit=).
func (s *Server) getLimit(w http.ResponseWriter, r *http.Request) {
	page, err := ops.ParseKeyPage(r.URL.Query())
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.Limit(r.Context(), r.PathValue("name"), page))
}

// putLimit creates or replaces a limit and answers it as stored.
func (s *Server) putLimit(w http.ResponseWriter, r *http.Request) {
	var in api.LimitInput
	if err := decode(w, r, smallBodyBytes, &in); err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.SetLimit(r.Context(), r.PathValue("name"), in))
}

// deleteLimit answers the limit as it was.
func (s *Server) deleteLimit(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.DeleteLimit(r.Context(), r.PathValue("name")))
}

func (s *Server) fairness(w http.ResponseWriter, r *http.Request) {
	s.answer(w, r)(s.ops.Fairness(r.Context(), r.PathValue("name")))
}

// putFairness sets the weights of the keys the body names and answers
// the queue's weights as they now are.
func (s *Server) putFairness(w http.ResponseWriter, r *http.Request) {
	var in api.FairnessInput
	if err := decode(w, r, smallBodyBytes, &in); err != nil {
		s.respondErr(w, r, err)
		return
	}
	s.answer(w, r)(s.ops.SetFairness(r.Context(), r.PathValue("name"), in))
}
