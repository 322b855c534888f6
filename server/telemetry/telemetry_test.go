package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/telemetry"
	"github.com/cwpexport/cwpexport/server/telemetry/otlptest"
)

// otelEnv clears every variable FromEnv or the exporters read, then sets
// those given, for this test only.
func otelEnv(t *testing.T, kv ...string) {
	t.Helper()
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_TRACES_SAMPLER", "OTEL_BSP_SCHEDULE_DELAY",
	} {
		t.Setenv(k, "")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

// Without any OTEL_* variable, or when they say so, tracing is off: no
// provider, nothing to flush.
func TestOffUnlessConfigured(t *testing.T) {
	for _, env := range [][]string{
		nil,
		{"OTEL_SERVICE_NAME", "x", "OTEL_RESOURCE_ATTRIBUTES", "a=b"},
		{"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"},
		{"OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "otlp"},
	} {
		otelEnv(t, env...)
		tr, err := telemetry.FromEnv(context.Background(), nil)
		if err != nil || tr.Provider != nil {
			t.Errorf("%v: provider %v, error %v; want off", env, tr.Provider, err)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%v: shutdown: %v", env, err)
		}
	}
}

// A name the service does not know is refused at start-up rather than
// ignored: a typo must not silently lose the traces.
func TestUnknownExporterOrProtocolRefused(t *testing.T) {
	for _, c := range []struct{ env []string }{
		{[]string{"OTEL_TRACES_EXPORTER", "zipkin"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp,jaegr"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "udp"}},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc-web"}},
	} {
		otelEnv(t, c.env...)
		if tr, err := telemetry.FromEnv(context.Background(), nil); err == nil {
			_ = tr.Shutdown(context.Background())
			t.Errorf("%v: accepted", c.env)
		} else if !strings.Contains(err.Error(), "OTEL_") {
			t.Errorf("%v: error %q does not name the variable", c.env, err)
		}
	}
}

// Spans reach a collector over each OTLP protocol, with the resource the
// environment names; Shutdown flushes what the batcher still holds.
func TestExportsOverOTLP(t *testing.T) {
	for _, c := range []struct {
		protocol string
		receiver func(testing.TB) *otlptest.Receiver
	}{
		{"", otlptest.NewHTTP}, // http/protobuf, the default
		{"http/protobuf", otlptest.NewHTTP},
		{"http/json", otlptest.NewHTTP},
		{"grpc", otlptest.NewGRPC},
	} {
		t.Run("protocol="+c.protocol, func(t *testing.T) {
			rcv := c.receiver(t)
			otelEnv(t,
				"OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint,
				"OTEL_EXPORTER_OTLP_PROTOCOL", c.protocol,
				"OTEL_SERVICE_NAME", "cwpexportd-test",
				"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test",
				// Nothing leaves before Shutdown: it must flush.
				"OTEL_BSP_SCHEDULE_DELAY", "600000",
			)
			tr, err := telemetry.FromEnv(context.Background(), nil)
			if err != nil || tr.Provider == nil {
				t.Fatalf("provider %v, error %v", tr, err)
			}
			_, span := tr.Provider.Tracer("test").Start(context.Background(), "one export")
			want := span.SpanContext()
			span.End()
			if n := rcv.Requests(); n != 0 {
				t.Fatalf("%d export requests before Shutdown", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			spans := rcv.Spans()
			if len(spans) != 1 {
				t.Fatalf("received %d spans, want 1", len(spans))
			}
			got := spans[0]
			if got.GetName() != "one export" || got.TraceID() != want.TraceID().String() || got.SpanID() != want.SpanID().String() {
				t.Errorf("received %q %s/%s, want %q %s/%s", got.GetName(), got.TraceID(), got.SpanID(), "one export", want.TraceID(), want.SpanID())
			}
			if got.Resource["service.name"] != "cwpexportd-test" || got.Resource["deployment.environment.name"] != "test" {
				t.Errorf("resource %v, want the service name and attributes of the environment", got.Resource)
			}
		})
	}
}

// The service name defaults to cwpexportd; an endpoint alone turns OTLP on.
func TestDefaultServiceName(t *testing.T) {
	rcv := otlptest.NewHTTP(t)
	otelEnv(t, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.Endpoint+"/v1/traces")
	tr, err := telemetry.FromEnv(context.Background(), nil)
	if err != nil || tr.Provider == nil {
		t.Fatalf("provider %v, error %v", tr, err)
	}
	if len(tr.Exporters) != 1 || tr.Exporters[0] != "otlp (http/protobuf)" {
		t.Errorf("exporters %q", tr.Exporters)
	}
	_, span := tr.Provider.Tracer("test").Start(context.Background(), "x")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if spans := rcv.Spans(); len(spans) != 1 || spans[0].Resource["service.name"] != telemetry.ServiceName {
		t.Errorf("spans %v", spans)
	}
}

// Log lines written within a span carry its trace and span ids; others,
// and lines of handlers derived with attributes, are as before.
func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	defer span.End()

	log.InfoContext(ctx, "inside")
	log.Info("outside")
	log.InfoContext(context.Background(), "no span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var recs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, m)
	}
	sc := span.SpanContext()
	if recs[0]["trace_id"] != sc.TraceID().String() || recs[0]["span_id"] != sc.SpanID().String() || recs[0]["component"] != "test" {
		t.Errorf("line within the span: %v, want trace_id %s span_id %s", recs[0], sc.TraceID(), sc.SpanID())
	}
	for _, r := range recs[1:] {
		if _, ok := r["trace_id"]; ok {
			t.Errorf("line outside any span carries a trace id: %v", r)
		}
	}
	if telemetry.LogHandler(log.Handler()) != log.Handler() {
		t.Error("wrapping twice adds the ids twice")
	}
}

// The propagator reads a caller's W3C traceparent.
func TestPropagatorReadsTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := telemetry.Propagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsRemote() {
		t.Errorf("extracted %v", sc)
	}
}
