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
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
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

// respondErr answers err with the status its kind calls for. Anything not
// recognised is a 500, logged with the request; its text is not shown,
// since it may carry database details.
func (s *Server) respondErr(w http.ResponseWriter, r *http.Request, err error) {
	var (
		fe *api.FieldError
		ve *store.ValidationError
		mb *http.MaxBytesError
	)
	switch {
	case errors.As(err, &fe):
		writeError(w, r, fe.Status, api.CodeForStatus(fe.Status), fe.Field, fe.Message)
	case errors.As(err, &mb):
		writeError(w, r, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "", fmt.Sprintf("request body exceeds %d bytes", mb.Limit))
	case errors.As(err, &ve):
		writeError(w, r, http.StatusUnprocessableEntity, api.CodeInvalid, ve.Field, ve.Message)
	case errors.Is(err, store.ErrNotFound):
		writeError(w, r, http.StatusNotFound, api.CodeNotFound, "", err.Error())
	case errors.Is(err, store.ErrLeaseLost):
		writeError(w, r, http.StatusConflict, api.CodeLeaseLost, "lease_token", "the lease is no longer held: the task was rescued, cancelled or finished; stop working on it")
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrAlreadyFinished):
		writeError(w, r, http.StatusConflict, api.CodeConflict, "", err.Error())
	case errors.Is(err, store.ErrStorageFull), errors.Is(err, store.ErrReadOnly):
		// Not the request's fault, and nothing was written: retry later.
		w.Header().Set("Retry-After", "30")
		writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "", err.Error())
	case errors.Is(err, store.ErrClosed):
		writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "", "the server is shutting down")
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "", "request cancelled")
	default:
		s.log.Error("weft: api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, r, http.StatusInternalServerError, api.CodeInternal, "", "internal error; the server log has the details")
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
