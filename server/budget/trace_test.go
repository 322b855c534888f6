package budget

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func attrOf(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// A wait on behalf of a traced call is a child span named after the
// action, with the time waited; a wait refused for the caller's deadline
// says so; a wait outside any span makes none.
func TestWaitSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	b := MustNew(Options{Rate: 5, Action: "ExportLicenseDetail", TracerProvider: tp})

	// Outside a span: the scheduler's waits, which belong to no call.
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans for a wait outside any span", n)
	}

	ctx, call := tp.Tracer("test").Start(context.Background(), "call")
	waited, err := b.Admit(ctx, time.Time{}) // 1/5 s after the first
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Admit(ctx, time.Now()) // cannot start at once
	var late *LateError
	if !errors.As(err, &late) {
		t.Fatalf("admit with no time to wait: %v", err)
	}
	call.End()

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want the call and its two waits", len(spans))
	}
	for i, s := range spans[:2] {
		if s.Name() != "budget ExportLicenseDetail" || s.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Errorf("span %d: %q under %s, want budget ExportLicenseDetail under the call", i, s.Name(), s.Parent().SpanID())
		}
		if v, _ := attrOf(s, AttrAction); v.AsString() != "ExportLicenseDetail" {
			t.Errorf("span %d: action %q", i, v.AsString())
		}
	}
	// The wait's attribute is what Admit returned.
	if v, ok := attrOf(spans[0], AttrWaitedMillis); !ok || v.AsFloat64() != float64(waited.Microseconds())/1000 {
		t.Errorf("waited %v, attribute %v", waited, v.AsFloat64())
	}
	if spans[0].Status().Code != otelcodes.Unset {
		t.Errorf("admitted wait has status %v", spans[0].Status())
	}
	if v, ok := attrOf(spans[1], AttrLateMillis); !ok || v.AsFloat64() <= 0 || spans[1].Status().Code != otelcodes.Error {
		t.Errorf("refused wait: would wait %v, status %v; want a delay and an error status", v.AsFloat64(), spans[1].Status())
	}
}
