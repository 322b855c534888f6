// Package gateway serves the REST API: grpc-gateway translating JSON over
// HTTP to the gRPC server (as its client, so streams and interceptors work
// as for any caller) with Server-Sent Events on the watch endpoints for
// clients that ask for them, plus /healthz, /openapi.json and, when configured,
// /metrics and the browser page at /.
package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/gen/openapi"
)

// DefaultMaxBodyBytes bounds a REST request body.
const DefaultMaxBodyBytes = 1 << 20

// Options configure the REST handler.
type Options struct {
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// UI, when set, is served at GET / and under GET /ui/.
	UI http.Handler
}

// New returns the REST handler, calling the gRPC server over conn.
func New(ctx context.Context, conn *grpc.ClientConn, opts Options) (http.Handler, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	marshaler := strictJSON{&runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
		// Unknown fields are a caller's mistake worth a 400, not
		// something to drop silently.
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithHealthzEndpoint(grpc_health_v1.NewHealthClient(conn)),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithErrorHandler(errorWithRetryAfter),
	)
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
	sse := events{mux: mux, marshaler: marshaler, client: client}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, opts.MaxBodyBytes)
		if err := validPath(r); err != nil {
			runtime.DefaultHTTPErrorHandler(r.Context(), mux, marshaler, w, r, err)
			return
		}
		// The watch endpoints answer Server-Sent Events to clients that ask
		// for them, and newline-delimited JSON to every other.
		if sse.serve(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
	if opts.Metrics == nil && opts.UI == nil {
		return api, nil
	}
	root := http.NewServeMux()
	root.Handle("/", api)
	if opts.Metrics != nil {
		root.Handle("GET /metrics", opts.Metrics)
	}
	if opts.UI != nil {
		root.Handle("GET /{$}", opts.UI)
		root.Handle("GET /ui/", opts.UI)
	}
	return root, nil
}

// errorWithRetryAfter answers an error as grpc-gateway does, adding a
// Retry-After header (whole seconds, rounded up) when the status carries a
// google.rpc.RetryInfo, so that HTTP clients and proxies can honour it.
func errorWithRetryAfter(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			secs := (ri.GetRetryDelay().AsDuration() + time.Second - 1) / time.Second
			w.Header().Set("Retry-After", strconv.Itoa(max(int(secs), 1)))
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}
