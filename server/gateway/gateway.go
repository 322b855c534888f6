// Package gateway serves the REST API: grpc-gateway translating JSON over
// HTTP to the gRPC server (as its client, so streams and interceptors work
// as for any caller) with Server-Sent Events on the watch endpoints for
// clients that ask for them, plus /healthz (readiness), /livez (liveness),
// /openapi.json and, when configured,
// /metrics and the browser page at /.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/gen/openapi"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// DefaultMaxBodyBytes bounds a REST request body.
const DefaultMaxBodyBytes = 1 << 20

// Authenticator authenticates REST calls before their bodies are read, and
// tells the in-process gRPC server what it cannot see for itself.
type Authenticator interface {
	// CheckHTTP returns an Unauthenticated status, or nil.
	CheckHTTP(r *http.Request) error
	// ForwardHTTP returns metadata to add to the gRPC call.
	ForwardHTTP(ctx context.Context, r *http.Request) metadata.MD
}

// FailureBound bounds what failed authentications cost per peer address.
type FailureBound interface {
	// Exhausted reports whether peer has failed too often: its requests
	// without valid credentials are then refused (Refuse), not answered
	// 401.
	Exhausted(peer netip.Addr) bool
	// Refuse returns the status (with a RetryInfo) refusing such a
	// request; drop asks for the connection to be closed.
	Refuse(peer netip.Addr) (err error, drop bool)
	// Failed records a failed authentication of peer.
	Failed(peer netip.Addr, detail string)
}

// Options configure the REST handler.
type Options struct {
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BodyTimeout bounds the time to receive a request body; 0 means
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Auth, when set, refuses unauthenticated /v1/ calls before their
	// bodies are read.
	Auth Authenticator
	// Failures, when set, bounds the failed authentications of each peer
	// address, and reports them in aggregate (they get no call line each).
	Failures FailureBound
	// CheckHost refuses requests whose Host, or Origin when sent, is not a
	// loopback name or one of AllowedHosts (not /healthz, which probes
	// call by address).
	CheckHost    bool
	AllowedHosts []string
	// Logger, when set, logs the requests the gateway refuses itself.
	Logger *slog.Logger
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// UI, when set, is served at GET / and under GET /ui/.
	UI http.Handler
	// TracerProvider, when set, makes a span per request (see trace.go),
	// continuing the trace context Propagator reads from the request.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
}

// New returns the REST handler, calling the gRPC server over conn.
func New(ctx context.Context, conn *grpc.ClientConn, opts Options) (http.Handler, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	marshaler := strictJSON{&runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
		// Unknown fields are a caller's mistake worth a 400, not
		// something to drop silently.
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
	muxOpts := []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithHealthzEndpoint(grpc_health_v1.NewHealthClient(conn)),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithErrorHandler(errorWithRetryAfter),
		runtime.WithStreamErrorHandler(streamErrorWithRetryAfter),
	}
	if opts.Auth != nil {
		muxOpts = append(muxOpts, runtime.WithMetadata(opts.Auth.ForwardHTTP))
	}
	if opts.TracerProvider != nil {
		muxOpts = append(muxOpts, runtime.WithMiddlewares(routeMiddleware))
	}
	mux := runtime.NewServeMux(muxOpts...)
	if err := cwpexportv1.RegisterLicenseExportServiceHandler(ctx, mux, conn); err != nil {
		return nil, fmt.Errorf("register REST handlers: %w", err)
	}
	client := cwpexportv1.NewLicenseExportServiceClient(conn)
	if err := mux.HandlePath(http.MethodGet, downloadPattern, serveDownload(mux, client)); err != nil {
		return nil, fmt.Errorf("register the download route: %w", err)
	}
	if err := mux.HandlePath(http.MethodGet, "/openapi.json", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.JSON)
	}); err != nil {
		return nil, fmt.Errorf("register /openapi.json: %w", err)
	}
	g := guard{opts: opts, mux: mux, m: marshaler}
	sse := events{mux: mux, marshaler: marshaler, client: client}
	api := g.api(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, w = withRetryAfter(r, w)
		if err := validPath(r); err != nil {
			errorWithRetryAfter(r.Context(), mux, marshaler, w, r, err)
			return
		}
		// The watch endpoints answer Server-Sent Events to clients that ask
		// for them, and newline-delimited JSON to every other.
		if sse.serve(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	root := http.NewServeMux()
	root.Handle("/", apiHeaders(api))
	// Liveness: the process serves HTTP. Readiness (/healthz) also needs
	// what the service depends on, such as a fleet's database.
	root.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	if opts.Metrics != nil {
		root.Handle("GET /metrics", opts.Metrics)
	}
	if opts.UI != nil {
		root.Handle("GET /{$}", opts.UI)
		root.Handle("GET /ui/", opts.UI)
	}
	return g.outer(root), nil
}

// outer applies the Host checks and, when configured, the request's span:
// outermost, so that refused requests are traced too.
func (g guard) outer(h http.Handler) http.Handler {
	h = g.host(h)
	if g.opts.TracerProvider != nil {
		if g.opts.Propagator == nil {
			g.opts.Propagator = propagation.TraceContext{}
		}
		h = traced(h, g.opts)
	}
	return h
}

// errorWithRetryAfter answers an error as grpc-gateway does, with the
// details of bad input for what grpc-gateway could not decode
// (decodingError), and a Retry-After header (whole seconds, rounded up)
// when the status carries a google.rpc.RetryInfo, so that HTTP clients and
// proxies can honour it.
func errorWithRetryAfter(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	err = withErrorInfo(decodingError(err))
	st := status.Convert(err)
	if hs := (*runtime.HTTPStatusError)(nil); errors.As(err, &hs) {
		st = status.Convert(hs.Err)
	}
	if secs, ok := retryAfter(st); ok {
		w.Header().Set("Retry-After", secs)
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// streamErrorWithRetryAfter converts a stream's error as grpc-gateway does.
// A stream refused before its first message is answered with the status's
// HTTP code by grpc-gateway itself, which sets no header of ours: the delay
// of a RetryInfo is left in the request's context for the response writer
// (withRetryAfter) to put in a Retry-After header.
func streamErrorWithRetryAfter(ctx context.Context, err error) *status.Status {
	st := runtime.DefaultStreamErrorHandler(ctx, err)
	if secs, ok := retryAfter(st); ok {
		if h, ok := ctx.Value(retryAfterKey{}).(*retryAfterHolder); ok {
			h.secs.Store(&secs)
		}
	}
	return st
}

// retryAfter is the Retry-After value for a status with a RetryInfo.
func retryAfter(st *status.Status) (string, bool) {
	d, ok := apierror.RetryDelay(st.Err())
	if !ok {
		return "", false
	}
	return strconv.Itoa(max(int((d+time.Second-1)/time.Second), 1)), true
}

type retryAfterKey struct{}

// retryAfterHolder carries a stream error's retry delay from the stream
// error handler to the response writer.
type retryAfterHolder struct{ secs atomic.Pointer[string] }

// retryAfterWriter sets Retry-After from its holder when the header is
// written.
type retryAfterWriter struct {
	http.ResponseWriter
	h *retryAfterHolder
}

func (w retryAfterWriter) WriteHeader(code int) {
	if secs := w.h.secs.Load(); secs != nil && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", *secs)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController (flushes of streams) the writer.
func (w retryAfterWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush flushes streamed messages; grpc-gateway asserts http.Flusher.
func (w retryAfterWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func withRetryAfter(r *http.Request, w http.ResponseWriter) (*http.Request, http.ResponseWriter) {
	h := &retryAfterHolder{}
	return r.WithContext(context.WithValue(r.Context(), retryAfterKey{}, h)), retryAfterWriter{w, h}
}
