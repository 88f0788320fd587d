package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, _ *http.Request, status int, code, field, msg string) {
	writeJSON(w, status, api.Error{Error: api.ErrorBody{Code: code, Message: msg, Field: field}})
}

// respondErr answers err as ops.ProblemOf says. An error the API does not
// explain is logged with the request, since its answer says only that it
// happened.
func (s *Server) respondErr(w http.ResponseWriter, r *http.Request, err error) {
	p := ops.ProblemOf(err)
	if p.Internal && r.Context().Err() != nil {
		// The client went away, and the store failed for that reason in
		// its own words; nobody reads the answer.
		p = ops.ProblemOf(r.Context().Err())
	}
	if p.Internal {
		s.log.Error("weft: api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(p.RetryAfter/time.Second)))
	}
	writeError(w, r, p.Status, p.Body.Code, p.Body.Field, p.Body.Message)
}

// answer returns what writes the result of a service call: v as JSON
// with 200, or err as respondErr does. It takes the call's two results
// as they come, s.answer(w, r)(s.ops.Get(ctx, id)).
func (s *Server) answer(w http.ResponseWriter, r *http.Request) func(v any, err error) {
	return func(v any, err error) {
		if err != nil {
			s.respondErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// decode reads one JSON value from the body into v, strictly: the
// content type must allow JSON (see jsonContentType), unknown fields and trailing data
// are refused, and the body is bounded by limit.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !jsonContentType(ct) {
		return &api.FieldError{Status: http.StatusUnsupportedMediaType, Message: fmt.Sprintf("Content-Type %q is not application/json", ct)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return &api.FieldError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", mb.Limit)}
		}
		return &api.FieldError{Status: http.StatusBadRequest, Message: "reading the request body: " + err.Error()}
	}
	return decodeBytes(body, v, "")
}

// jsonContentType reports whether a body of type ct is read as JSON. The
// body is always parsed as JSON; besides JSON types, text/plain and
// curl's default for -d (application/x-www-form-urlencoded) are accepted so
// that a quick curl without -H works, while form uploads and other formats
// are refused.
func jsonContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch {
	case mt == "application/json", strings.HasSuffix(mt, "+json"), mt == "text/plain", mt == "application/x-www-form-urlencoded":
		return true
	}
	return false
}

// decodeBytes is decode's strict JSON half; prefix is the JSON path of
// the value ("tasks[3]"), so that errors name the field in full.
func decodeBytes(body []byte, v any, prefix string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &api.FieldError{Status: http.StatusBadRequest, Field: prefix, Message: "the request body is empty; a JSON object is expected"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, prefix)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &api.FieldError{Status: http.StatusBadRequest, Field: prefix, Message: "unexpected data after the JSON value"}
	}
	return nil
}

// jsonError says where a JSON document went wrong, in JSON terms.
func jsonError(err error, prefix string) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		tpe *time.ParseError
	)
	join := func(field string) string {
		switch {
		case prefix == "":
			return field
		case field == "":
			return prefix
		}
		return prefix + "." + field
	}
	switch {
	case errors.As(err, &syn):
		return &api.FieldError{Status: http.StatusBadRequest, Field: prefix, Message: fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)}
	case errors.As(err, &typ):
		return &api.FieldError{Status: http.StatusBadRequest, Field: join(typ.Field), Message: fmt.Sprintf("expected %s, got %s", jsonType(typ.Type), typ.Value)}
	case errors.As(err, &tpe):
		// Only run_at is a time in request bodies.
		return &api.FieldError{Status: http.StatusBadRequest, Field: join("run_at"), Message: fmt.Sprintf("%q is not an RFC 3339 time (for example 2030-01-02T15:04:05Z)", strings.Trim(tpe.Value, `"`))}
	case strings.Contains(err.Error(), "Time.UnmarshalJSON"):
		return &api.FieldError{Status: http.StatusBadRequest, Field: join("run_at"), Message: "expected an RFC 3339 time as a string (for example \"2030-01-02T15:04:05Z\")"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &api.FieldError{Status: http.StatusBadRequest, Field: prefix, Message: "malformed JSON: the body ends in the middle of a value"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &api.FieldError{Status: http.StatusBadRequest, Field: join(name), Message: fmt.Sprintf("unknown field %q", name)}
	default:
		return &api.FieldError{Status: http.StatusBadRequest, Field: prefix, Message: "malformed JSON: " + err.Error()}
	}
}

// jsonType names a Go type the way a JSON client thinks of it.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "an object"
}
