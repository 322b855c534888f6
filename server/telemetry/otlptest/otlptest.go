// Package otlptest receives OTLP traces for tests, as a collector would:
// over HTTP (protobuf or JSON, gzip or not) or over gRPC, on a loopback
// port the kernel picks. It decodes each export request with the
// protocol's own generated types (go.opentelemetry.io/proto/otlp).
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	stdjson "encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Span is one span received, with the resource it came from.
type Span struct {
	*tracepb.Span
	// Resource holds the resource's attributes as strings.
	Resource map[string]string
	// Scope is the instrumentation scope's name.
	Scope string
}

// TraceID is the span's trace id in hex, as logs and traceparent write it.
func (s Span) TraceID() string { return hex.EncodeToString(s.GetTraceId()) }

// SpanID is the span's id in hex.
func (s Span) SpanID() string { return hex.EncodeToString(s.GetSpanId()) }

// ParentID is the parent span's id in hex; empty for a root span.
func (s Span) ParentID() string { return hex.EncodeToString(s.GetParentSpanId()) }

// Attr returns the string form of the span's attribute key, or "".
func (s Span) Attr(key string) string { return attr(s.GetAttributes(), key) }

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() != key {
			continue
		}
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		default:
			return protojson.Format(kv.GetValue())
		}
	}
	return ""
}

// Receiver collects the spans exported to it.
type Receiver struct {
	// Endpoint is what OTEL_EXPORTER_OTLP_ENDPOINT should say.
	Endpoint string
	mu       sync.Mutex
	spans    []Span
	requests int
}

// NewHTTP starts a receiver of OTLP/HTTP at Endpoint + "/v1/traces",
// stopped when the test ends.
func NewHTTP(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	t.Cleanup(srv.Close)
	r.Endpoint = srv.URL
	return r
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.NotFound(w, req)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg collectorpb.ExportTraceServiceRequest
	json := req.Header.Get("Content-Type") == "application/json"
	if json {
		if b, err = hexIDsToBase64(b); err == nil {
			err = protojson.Unmarshal(b, &msg)
		}
	} else {
		err = proto.Unmarshal(b, &msg)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&msg)
	var out []byte
	if json {
		out, _ = protojson.Marshal(&collectorpb.ExportTraceServiceResponse{})
	} else {
		out, _ = proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	}
	w.Header().Set("Content-Type", req.Header.Get("Content-Type"))
	_, _ = w.Write(out)
}

// hexIDsToBase64 rewrites the ids of an OTLP/JSON message for protojson:
// OTLP/JSON writes trace and span ids in hex, where protojson expects the
// base64 of bytes fields.
func hexIDsToBase64(b []byte) ([]byte, error) {
	var v any
	if err := stdjson.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	var walk func(any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "traceId" || k == "spanId" || k == "parentSpanId") {
					raw, err := hex.DecodeString(s)
					if err != nil {
						return fmt.Errorf("%s %q is not hex: %w", k, s, err)
					}
					v[k] = base64.StdEncoding.EncodeToString(raw)
					continue
				}
				if err := walk(x); err != nil {
					return err
				}
			}
		case []any:
			for _, x := range v {
				if err := walk(x); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(v); err != nil {
		return nil, err
	}
	return stdjson.Marshal(v)
}

// NewGRPC starts a receiver of OTLP/gRPC (without TLS: its Endpoint is an
// http:// URL, which the exporters take as insecure), stopped when the test
// ends.
func NewGRPC(t testing.TB) *Receiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	r := &Receiver{Endpoint: "http://" + lis.Addr().String()}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, grpcService{r: r})
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return r
}

type grpcService struct {
	collectorpb.UnimplementedTraceServiceServer
	r *Receiver
}

func (s grpcService) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	s.r.add(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) add(msg *collectorpb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	for _, rs := range msg.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = attr(rs.GetResource().GetAttributes(), kv.GetKey())
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.spans = append(r.spans, Span{Span: sp, Resource: res, Scope: ss.GetScope().GetName()})
			}
		}
	}
}

// Spans returns the spans received so far, in their order of arrival.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Requests counts the export requests received.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Wait waits until done holds of the spans received, checking as spans
// arrive, and fails the test after timeout.
func (r *Receiver) Wait(t testing.TB, timeout time.Duration, done func([]Span) bool) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spans wanted did not arrive within %s; received %d in %d requests", timeout, len(spans), r.Requests())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Named returns the spans received with the given name.
func Named(spans []Span, name string) []Span {
	var out []Span
	for _, s := range spans {
		if s.GetName() == name {
			out = append(out, s)
		}
	}
	return out
}
