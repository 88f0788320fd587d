package tracing

import (
	"context"
	"encoding/json"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/weftworks/weft/store"
)

func TestStartEnqueueMetadata(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	tasks := []store.NewTask{
		{Kind: "a"},
		{Kind: "b", Metadata: json.RawMessage(`{"team":"ops"}`)},
		{Kind: "c", Metadata: json.RawMessage(`{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}`)},
		{Kind: "d", Metadata: json.RawMessage(`[1]`)},
	}
	_, end := StartEnqueue(context.Background(), tp, tasks)
	end(nil)
	for i, want := range []func(map[string]any) bool{
		func(m map[string]any) bool { return m["traceparent"] != nil },
		func(m map[string]any) bool { return m["traceparent"] != nil && m["team"] == "ops" },
		func(m map[string]any) bool {
			return m["traceparent"] == "00-11111111111111111111111111111111-2222222222222222-01"
		},
	} {
		var m map[string]any
		if err := json.Unmarshal(tasks[i].Metadata, &m); err != nil || !want(m) {
			t.Errorf("task %d metadata = %s", i, tasks[i].Metadata)
		}
	}
	if string(tasks[3].Metadata) != `[1]` {
		t.Errorf("metadata that is not an object was changed: %s", tasks[3].Metadata)
	}
	// Without a recording provider nothing is written.
	plain := []store.NewTask{{Kind: "a"}}
	_, end = StartEnqueue(context.Background(), noop.NewTracerProvider(), plain)
	end(nil)
	if plain[0].Metadata != nil {
		t.Errorf("a no-op provider wrote metadata %s", plain[0].Metadata)
	}
}

func TestSetupFromEnvironment(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name    string
		getenv  func(string) string
		wantErr bool
	}{
		{"nothing configured", env(), false},
		{"disabled", env("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), false},
		{"exporter none", env("OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), false},
		{"another exporter", env("OTEL_TRACES_EXPORTER", "zipkin"), true},
		{"grpc", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), true},
	} {
		on, stop, err := Setup(context.Background(), tc.getenv)
		if on || (err != nil) != tc.wantErr {
			t.Errorf("%s: on %v, err %v", tc.name, on, err)
		}
		_ = stop(context.Background())
	}
}
