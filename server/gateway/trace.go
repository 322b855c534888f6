package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// REST calls are server spans named "<method> <route>" ("POST
// /v1/license-detail:export", "GET /v1/export-tasks/{task_id}:watch"),
// continuing the caller's W3C trace context; the gRPC call the gateway makes
// for it is their child (the connection's stats handler propagates the
// context). The route is known only once grpc-gateway has matched the
// request, after the span began: the span's name is given when it ends.

// routeKey holds, in a request's context, the route the request matched.
type routeKey struct{}

// traced wraps h with a span per request, but for health probes and
// metrics scrapes, which would drown the calls that matter.
func traced(h http.Handler, opts Options) http.Handler {
	inner := otelhttp.NewHandler(h, "rest",
		otelhttp.WithTracerProvider(opts.TracerProvider),
		otelhttp.WithPropagators(opts.Propagator),
		// The call metrics are Prometheus's (server/metrics).
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(spanName),
		otelhttp.WithFilter(func(r *http.Request) bool {
			return r.URL.Path != "/healthz" && r.URL.Path != "/livez" && r.URL.Path != "/metrics"
		}),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, new(string))))
	})
}

// spanName names a REST span by its method and route, or by its method
// alone before the route is known (or for a request no route matched).
func spanName(_ string, r *http.Request) string {
	if route, ok := r.Context().Value(routeKey{}).(*string); ok && *route != "" {
		return r.Method + " " + *route
	}
	if r.Pattern != "" && r.Pattern != "/" {
		return r.Pattern // the root mux's, which names the method
	}
	return r.Method
}

// setRoute records the route a request matched, for its span's name and
// its http.route attribute.
func setRoute(ctx context.Context, route string) {
	if holder, ok := ctx.Value(routeKey{}).(*string); ok {
		*holder = route
		trace.SpanFromContext(ctx).SetAttributes(semconv.HTTPRoute(route))
	}
}

// routeMiddleware records the route grpc-gateway matched, as the API
// defines it ("/v1/export-tasks/{task_id}"): a name of few values, unlike
// the path.
func routeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if p, ok := runtime.HTTPPattern(r.Context()); ok {
			setRoute(r.Context(), strings.ReplaceAll(p.String(), "=*}", "}"))
		}
		next(w, r, params)
	}
}
