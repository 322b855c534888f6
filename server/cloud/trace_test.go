package cloud_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/cloud"
)

func tracedClient(t *testing.T, addr string, tries int) (*cloud.Client, *tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c := cloud.New(cloud.Config{
		Credential: common.NewCredential(testID, testKey), Endpoint: addr, Scheme: "HTTP", Timeout: 5 * time.Second,
		RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, RetryMaxTries: tries, TracerProvider: tp,
	})
	return c, rec, tp.Tracer("test")
}

func attrs(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// Each cloud call is a client span under the caller's, with the task id,
// the cloud's RequestId and the outcome: Success, or the cloud's code.
func TestCallSpans(t *testing.T) {
	emu := newEmulator(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, emu, lis)
	c, rec, tracer := tracedClient(t, lis.Addr().String(), 3)
	ctx, parent := tracer.Start(context.Background(), "request")
	created, err := c.ExportLicenseDetail(ctx, cloud.ExportParams{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.ExportTasks(ctx, created.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	_, missing := c.ExportTasks(ctx, created.TaskID+1000)
	if cloud.KindOf(missing) != cloud.KindNotFound {
		t.Fatalf("unknown task: %v", missing)
	}
	parent.End()

	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 3 calls and the request", len(spans))
	}
	want := []struct {
		name, outcome, requestID, status string
		taskID                           int64
		code                             otelcodes.Code
	}{
		{"cwp ExportLicenseDetail", cloud.OutcomeSuccess, created.RequestID, "", created.TaskID, otelcodes.Unset},
		{"cwp ExportTasks", cloud.OutcomeSuccess, st.RequestID, string(st.Status), created.TaskID, otelcodes.Unset},
		{"cwp ExportTasks", "ResourceNotFound", missing.(*cloud.Error).RequestID, "", created.TaskID + 1000, otelcodes.Error},
	}
	for i, w := range want {
		s, a := spans[i], attrs(spans[i])
		if s.Name() != w.name || s.SpanKind() != trace.SpanKindClient || s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %d: %q kind %v under %s, want %q, a client span under the request", i, s.Name(), s.SpanKind(), s.Parent().SpanID(), w.name)
		}
		if a[cloud.AttrOutcome].AsString() != w.outcome || a[cloud.AttrTaskID].AsInt64() != w.taskID || s.Status().Code != w.code {
			t.Errorf("span %d: outcome %q task %d status %v, want %q %d %v", i, a[cloud.AttrOutcome].AsString(), a[cloud.AttrTaskID].AsInt64(), s.Status().Code, w.outcome, w.taskID, w.code)
		}
		if rid := a[cloud.AttrRequestID].AsString(); rid == "" || rid != w.requestID {
			t.Errorf("span %d: RequestId %q, want the cloud's %q", i, rid, w.requestID)
		}
		if a[cloud.AttrTaskStatus].AsString() != w.status {
			t.Errorf("span %d: task status %q, want %q", i, a[cloud.AttrTaskStatus].AsString(), w.status)
		}
		if n := len(s.Events()); n != 0 {
			t.Errorf("span %d: %d events for a call made once", i, n)
		}
	}
}

// A request that never reached the cloud is retried: one event per retry,
// and the outcome of the last attempt, without a RequestId.
func TestRetriesAreEvents(t *testing.T) {
	c, rec, _ := tracedClient(t, freeAddr(t), 3)
	_, err := c.ExportTasks(context.Background(), 7)
	if !cloud.NotSent(err) {
		t.Fatalf("error %v, want a refused connection", err)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s, a := spans[0], attrs(spans[0])
	if a[cloud.AttrOutcome].AsString() != cloud.CodeNetwork || s.Status().Code != otelcodes.Error {
		t.Errorf("outcome %q status %v", a[cloud.AttrOutcome].AsString(), s.Status())
	}
	if _, ok := a[cloud.AttrRequestID]; ok {
		t.Errorf("a RequestId for a call the cloud never answered: %v", a[cloud.AttrRequestID])
	}
	events := s.Events()
	if len(events) != 2 {
		t.Fatalf("%d events, want 2 retries after 3 tries", len(events))
	}
	for i, e := range events {
		ea := map[string]attribute.Value{}
		for _, kv := range e.Attributes {
			ea[string(kv.Key)] = kv.Value
		}
		if e.Name != cloud.EventRetry || ea["cwpexport.retry.attempt"].AsInt64() != int64(i+1) || ea["exception.message"].AsString() == "" {
			t.Errorf("event %d: %q %v", i, e.Name, e.Attributes)
		}
	}
}
