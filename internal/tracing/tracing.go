// Package tracing puts Weft's tasks into OpenTelemetry traces. Each
// enqueue is a span whose context is stored in the tasks' metadata, as
// W3C trace context ("traceparent", "tracestate"); each attempt is a span
// that continues that trace on whichever process runs it — an embedded
// client, `weft serve`, or a remote worker, which receives the metadata
// in its claim — and the handler's context carries the attempt's span.
//
// Tracing is off unless a tracer provider is set: with OpenTelemetry's
// default (no-op) provider, spans are not recorded and no metadata is
// written. `weft serve` and `weft worker` set one up from the standard
// OTEL_* variables (Setup).
package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft/store"
)

// Name is the instrumentation's name: the tracer's.
const Name = "github.com/weftworks/weft"

// The metadata keys of the trace context, as W3C Trace Context names its
// headers.
const (
	TraceParent = "traceparent"
	TraceState  = "tracestate"
)

var propagator = propagation.TraceContext{}

// Provider is tp, or OpenTelemetry's global provider when tp is nil.
func Provider(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return otel.GetTracerProvider()
	}
	return tp
}

// StartEnqueue starts the span of an enqueue of tasks and, when it is
// recorded, writes its context into each task's metadata (a task whose
// metadata has a traceparent of its own keeps it). end ends the span with
// the enqueue's error.
func StartEnqueue(ctx context.Context, tp trace.TracerProvider, tasks []store.NewTask) (context.Context, func(error)) {
	attrs := []attribute.KeyValue{attribute.Int("weft.tasks", len(tasks))}
	if len(tasks) == 1 {
		attrs = append(attrs, attribute.String("weft.kind", tasks[0].Kind), attribute.String("weft.queue", queueOf(tasks[0].Queue)))
	}
	ctx, span := Provider(tp).Tracer(Name).Start(ctx, "weft.enqueue", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	end := func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	if !span.SpanContext().IsValid() {
		return ctx, end
	}
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	for i := range tasks {
		tasks[i].Metadata = withTrace(tasks[i].Metadata, carrier)
	}
	return ctx, end
}

func queueOf(q string) string {
	if q == "" {
		return store.DefaultQueue
	}
	return q
}

// withTrace adds the carrier's keys to a metadata object that lacks a
// traceparent. Metadata that is not an object is left for Prepare to
// refuse.
func withTrace(md json.RawMessage, carrier propagation.MapCarrier) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if t := bytes.TrimSpace(md); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		if err := json.Unmarshal(t, &obj); err != nil {
			return md
		}
	}
	if _, ok := obj[TraceParent]; ok {
		return md
	}
	for k, v := range carrier {
		b, _ := json.Marshal(v) // a string always encodes
		obj[k] = b
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return md
	}
	return out
}

// FromHeaders is r's context with the trace context of its traceparent
// and tracestate headers, if it has them, so that an enqueue over the
// API continues its client's trace.
func FromHeaders(r *http.Request) context.Context {
	if r.Header.Get(TraceParent) == "" {
		return r.Context()
	}
	return propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
}

// StartAttempt starts the span of an attempt of t, in the trace of its
// enqueue when its metadata carries one.
func StartAttempt(ctx context.Context, tracer trace.Tracer, t *store.Task) (context.Context, trace.Span) {
	if bytes.Contains(t.Metadata, []byte(TraceParent)) {
		var md map[string]any
		if json.Unmarshal(t.Metadata, &md) == nil {
			carrier := propagation.MapCarrier{}
			for _, k := range []string{TraceParent, TraceState} {
				if v, ok := md[k].(string); ok {
					carrier[k] = v
				}
			}
			ctx = propagator.Extract(ctx, carrier)
		}
	}
	return tracer.Start(ctx, "weft.attempt", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("weft.task.id", t.ID), attribute.String("weft.kind", t.Kind),
		attribute.String("weft.queue", t.Queue), attribute.Int("weft.attempt", t.Attempt)))
}

// EndAttempt ends an attempt's span with its outcome (complete, retry,
// snooze, fail, cancel, wait) and error.
func EndAttempt(span trace.Span, outcome string, err error) {
	span.SetAttributes(attribute.String("weft.outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Setup installs an OTLP (HTTP/protobuf) exporter as OpenTelemetry's
// global tracer provider, configured by the standard variables
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER, ...), when tracing is asked for: an endpoint is set
// or OTEL_TRACES_EXPORTER is otlp, and neither OTEL_SDK_DISABLED nor
// OTEL_TRACES_EXPORTER=none says no. It returns whether it did, and the
// function that flushes and stops the exporter.
func Setup(ctx context.Context, getenv func(string) string) (bool, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	switch {
	case strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true"), exporter == "none":
		return false, off, nil
	case exporter != "" && exporter != "otlp":
		return false, off, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: only otlp (over HTTP) is built in", exporter)
	case exporter == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "":
		return false, off, nil
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if p := getenv(v); p != "" && p != "http/protobuf" {
			return false, off, fmt.Errorf("%s=%s: only http/protobuf is built in", v, p)
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return false, off, fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	return true, tp.Shutdown, nil
}
