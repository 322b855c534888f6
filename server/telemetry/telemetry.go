// Package telemetry sets up the service's OpenTelemetry traces from the
// standard OTEL_* environment variables, and puts the trace and span ids of
// a call into its log lines.
//
// Tracing is off unless the environment asks for it: OTEL_TRACES_EXPORTER
// names an exporter, or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Off, no exporter runs and the service
// installs no instrumentation. On, spans are batched to each exporter named
// (OTLP over HTTP or gRPC, or the console), which the exporters configure
// from the remaining OTEL_EXPORTER_OTLP_* variables themselves (headers,
// timeout, compression, certificates); the resource comes from
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, the sampler from
// OTEL_TRACES_SAMPLER, the batching from OTEL_BSP_*.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	logs "github.com/cwpexport/cwpexport/server/internal/logger"
)

// ServiceName is the resource's service.name unless OTEL_SERVICE_NAME (or
// OTEL_RESOURCE_ATTRIBUTES) names another.
const ServiceName = "cwpexportd"

// The environment variables read here; the exporters and the SDK read the
// others.
const (
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envExporter       = "OTEL_TRACES_EXPORTER"
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// Tracing is the service's tracing: a TracerProvider when the environment
// turns tracing on, and what must run at exit.
type Tracing struct {
	// Provider makes the service's spans; nil when tracing is off.
	Provider trace.TracerProvider
	// Exporters names the exporters in use ("otlp (http/protobuf)",
	// "console"), for the start-up log line.
	Exporters []string
	sdk       *sdktrace.TracerProvider
}

// Shutdown flushes the spans not yet exported and stops the exporters; it
// waits at most until ctx ends. It does nothing when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.sdk == nil {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush the traces: %w", err)
	}
	return nil
}

// FromEnv sets up tracing as the OTEL_* environment variables say. Export
// failures at run time are logged on logger (nil discards them). An
// environment that names an exporter or protocol this service does not
// have is an error: a typo must not silently turn traces off.
func FromEnv(ctx context.Context, logger *slog.Logger) (*Tracing, error) {
	names, err := exporterNames()
	if err != nil || len(names) == 0 {
		return &Tracing{}, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(ServiceName)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// A partly invalid OTEL_RESOURCE_ATTRIBUTES still gives a resource
	// (the valid pairs); the rest is worth a warning, not a refusal.
	resErr := err
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	t := &Tracing{}
	for _, name := range names {
		exp, label, err := newExporter(ctx, name)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		t.Exporters = append(t.Exporters, label)
	}
	logger = logs.OrDiscard(logger)
	if resErr != nil {
		logger.Warn("OTEL_RESOURCE_ATTRIBUTES: some attributes were ignored", "err", resErr)
	}
	// The SDK reports failed exports through the global handler; without
	// one they would go to the standard logger, outside the service's logs.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("traces could not be exported", "err", err)
	}))
	t.sdk = sdktrace.NewTracerProvider(opts...)
	t.Provider = t.sdk
	return t, nil
}

// exporterNames lists the exporters the environment asks for; none means
// tracing is off. OTEL_TRACES_EXPORTER defaults to "otlp" in the
// specification, but here only when an OTLP endpoint is set: a service that
// nobody configured sends nothing anywhere.
func exporterNames() ([]string, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envSDKDisabled)), "true") {
		return nil, nil
	}
	list := strings.TrimSpace(os.Getenv(envExporter))
	if list == "" {
		if os.Getenv(envEndpoint) == "" && os.Getenv(envTracesEndpoint) == "" {
			return nil, nil
		}
		list = "otlp"
	}
	var names []string
	for _, n := range strings.Split(list, ",") {
		switch n = strings.ToLower(strings.TrimSpace(n)); n {
		case "none":
			return nil, nil
		case "otlp", "console":
			names = append(names, n)
		default:
			return nil, fmt.Errorf("%s: unknown exporter %q (this service has otlp, console and none)", envExporter, n)
		}
	}
	return names, nil
}

// newExporter makes the exporter name stands for; the OTLP exporters read
// their endpoint, headers, timeout, compression and certificates from the
// environment themselves.
func newExporter(ctx context.Context, name string) (sdktrace.SpanExporter, string, error) {
	if name == "console" {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stderr))
		if err != nil {
			return nil, "", fmt.Errorf("the console trace exporter: %w", err)
		}
		return exp, "console", nil
	}
	env := envTracesProtocol
	protocol := os.Getenv(env)
	if protocol == "" {
		env = envProtocol
		protocol = os.Getenv(env)
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol = strings.TrimSpace(protocol); protocol {
	case "", "http/protobuf", "http/json":
		if protocol == "" {
			protocol = "http/protobuf" // the specification's default
		}
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, "", fmt.Errorf("%s: unknown protocol %q (grpc, http/protobuf or http/json)", env, protocol)
	}
	if err != nil {
		return nil, "", fmt.Errorf("the OTLP trace exporter (%s): %w", protocol, err)
	}
	return exp, "otlp (" + protocol + ")", nil
}

// Propagator reads and writes the W3C trace context (traceparent,
// tracestate) and baggage: what callers send over HTTP headers and gRPC
// metadata, and what the REST gateway passes on to the gRPC server.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
