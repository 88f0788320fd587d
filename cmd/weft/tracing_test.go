package main_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/weftproc"
)

// TestServeExportsTraces: with OTEL_EXPORTER_OTLP_ENDPOINT set, weft
// serve sends its spans — the API's enqueue and the built-in worker's
// attempt — to the OTLP endpoint over HTTP.
func TestServeExportsTraces(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []byte
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			bodies = append(bodies, b...)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	srv := weftproc.StartServer(t, weftBin, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_SERVICE_NAME=weft-test"},
		"--database", filepath.Join(t.TempDir(), "weft.db"))
	if !strings.Contains(srv.Log(), `"tracing":true`) {
		t.Fatalf("the server does not say it traces:\n%s", srv.Log())
	}
	srv.Must(t, "", "enqueue", "http", "--args", `{"url":"`+hook.URL+`"}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := bytes.Contains(bodies, []byte("weft.enqueue")) && bytes.Contains(bodies, []byte("weft.attempt")) && bytes.Contains(bodies, []byte("weft-test"))
		mu.Unlock()
		if got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no weft.enqueue and weft.attempt spans of service weft-test reached the collector")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
