package weft_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/testenv"
)

type tracedArgs struct{}

func (tracedArgs) Kind() string { return "traced" }

// TestTracing: an enqueue is a span, its context is stored in the task's
// metadata, and the attempt is a span of the same trace, a child of the
// enqueue's, carried by the handler's context.
func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	_, st := testenv.SQLite(t)
	seen := make(chan trace.SpanContext, 1)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, _ *weft.Task[tracedArgs]) error {
		seen <- trace.SpanContextFromContext(ctx)
		return nil
	})
	c, err := weft.NewClient(st, &weft.Config{Workers: ws, Logger: testenv.Logger(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(context.Background()) }()
	root, parent := tp.Tracer("test").Start(ctx, "request")
	res, err := c.Enqueue(root, tracedArgs{}, &weft.EnqueueOpts{Metadata: map[string]any{"team": "ops"}})
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	var handler trace.SpanContext
	select {
	case handler = <-seen:
	case <-ctx.Done():
		t.Fatal("the task did not run")
	}
	task, err := c.Get(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]string
	if err := json.Unmarshal(task.Metadata, &md); err != nil || md["team"] != "ops" || md["traceparent"] == "" {
		t.Fatalf("metadata = %s, %v; want the team and a traceparent", task.Metadata, err)
	}
	if err := c.Stop(ctx); err != nil { // the attempt's span ends before its outcome is written
		t.Fatal(err)
	}
	spans := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = s
	}
	enq, att := spans["weft.enqueue"], spans["weft.attempt"]
	if enq.SpanContext.TraceID() != parent.SpanContext().TraceID() || enq.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("the enqueue's span is not a child of the caller's: %+v", enq)
	}
	if att.SpanContext.TraceID() != enq.SpanContext.TraceID() || att.Parent.SpanID() != enq.SpanContext.SpanID() {
		t.Fatalf("the attempt's span is not a child of the enqueue's: %+v", att)
	}
	if handler.SpanID() != att.SpanContext.SpanID() {
		t.Fatalf("the handler's context carries span %s, not the attempt's %s", handler.SpanID(), att.SpanContext.SpanID())
	}
	attrs := map[string]string{}
	for _, kv := range att.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["weft.kind"] != "traced" || attrs["weft.queue"] != "default" || attrs["weft.attempt"] != "1" || attrs["weft.outcome"] != "complete" || attrs["weft.task.id"] != res.ID {
		t.Fatalf("the attempt's attributes = %v", attrs)
	}
}
