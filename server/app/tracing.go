package app

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/stats"

	"github.com/cwpexport/cwpexport/server/telemetry"
)

// The service's spans, when Options.TracerProvider is set:
//
//	POST /v1/license-detail:export                 REST (gateway), server
//	└ cwpexport.v1.LicenseExportService/ExportLicenseDetail   in-process gRPC, client
//	  └ cwpexport.v1.LicenseExportService/ExportLicenseDetail gRPC, server
//	    ├ budget ExportLicenseDetail                 the wait for the export budget
//	    └ cwp ExportLicenseDetail                    the cloud call: task id, RequestId, outcome, retries
//	poll ExportTasks                                 a poll, a trace of its own
//	└ cwp ExportTasks
//
// A gRPC caller's call starts at the gRPC server span. Watches link to the
// polls that observed what they report. Health checks are not traced.

// tracerProvider is the provider of the service's own spans: a no-op one
// when tracing is off, so that packages never fall back on a global.
func (s *Server) tracerProvider() trace.TracerProvider {
	if s.opts.TracerProvider == nil {
		return tracenoop.NewTracerProvider()
	}
	return s.opts.TracerProvider
}

// otelgrpcOptions configure both ends of the gRPC instrumentation.
func (s *Server) otelgrpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(s.opts.TracerProvider),
		otelgrpc.WithPropagators(telemetry.Propagator()),
		// The call metrics are Prometheus's (server/metrics).
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	}
}

// serverStatsHandler makes a span per gRPC call, continuing the trace
// context of the caller's metadata; nil when tracing is off.
func (s *Server) serverStatsHandler() stats.Handler {
	if s.opts.TracerProvider == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(s.otelgrpcOptions()...)
}

// clientStatsHandler makes a span per call the REST gateway makes and
// passes its trace context on in metadata; nil when tracing is off.
func (s *Server) clientStatsHandler() stats.Handler {
	if s.opts.TracerProvider == nil {
		return nil
	}
	return otelgrpc.NewClientHandler(s.otelgrpcOptions()...)
}
