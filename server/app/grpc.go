package app

import (
	"fmt"
	"net/netip"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/realip"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/calllog"
)

// grpcServer returns a gRPC server of the service with its interceptors:
// metrics and the call log outermost, then the answer to undecodable
// strings, panic recovery, caller authentication and the per-caller
// limits. inProcess makes the server the REST gateway's: it trusts the
// client address and certificate identity the gateway forwards.
func (s *Server) grpcServer(hs *health.Server, inProcess bool, opts ...grpc.ServerOption) *grpc.Server {
	authUnary := s.auth.Unary(inProcess)
	calls := calllog.Logger{Log: s.log, Audit: s.opts.AuditLogger, Transport: calllog.GRPC}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if inProcess {
		calls.Transport = calllog.REST
		// The gateway appends the HTTP client's address to
		// x-forwarded-for; realip takes that last entry, from this
		// server's one peer only.
		trusted := realip.WithTrustedPeers([]netip.Prefix{inProcessPrefix})
		headers := realip.WithHeaders([]string{realip.XForwardedFor})
		unary = append(unary, realip.UnaryServerInterceptorOpts(trusted, headers))
		stream = append(stream, realip.StreamServerInterceptorOpts(trusted, headers))
	}
	unary = append(unary,
		s.metrics.GRPC().UnaryServerInterceptor(),
		calls.Unary(),
		s.codec.Unary(),
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(s.recovered)),
		authUnary,
		s.reads.Interceptor(),
	)
	stream = append(stream,
		s.metrics.GRPC().StreamServerInterceptor(),
		calls.Stream(),
		s.streamGate(inProcess),
	)
	if h := s.serverStatsHandler(); h != nil {
		opts = append(opts, grpc.StatsHandler(h))
	}
	opts = append(opts,
		grpc.MaxRecvMsgSize(s.opts.MaxRequestBytes),
		grpc.ForceServerCodecV2(s.codec),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)
	gs := grpc.NewServer(opts...)
	cwpexportv1.RegisterLicenseExportServiceServer(gs, s.service)
	grpc_health_v1.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s.metrics.GRPC().InitializeMetrics(gs)
	return gs
}

// streamGate is what the server checks of every stream, in one interceptor
// rather than one each: panics are answered Internal, the caller
// authenticated, its open streams bounded, its request's text checked. An
// idle watch stream's goroutine holds every interceptor's frame as long as
// it is open: with three more of them its stack doubles to 16 KiB, for
// each of tens of thousands of watchers.
func (s *Server) streamGate(inProcess bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = s.recovered(p)
			}
		}()
		ctx, err := s.auth.Stream(ss.Context(), info.FullMethod, inProcess)
		if err != nil {
			return err
		}
		release, err := s.streams.Open(ctx, info.FullMethod)
		if err != nil {
			return err
		}
		defer release()
		w := middleware.WrapServerStream(s.codec.Checked(ss))
		w.WrappedContext = ctx
		return handler(srv, w)
	}
}

func (s *Server) recovered(p any) error {
	s.log.Error("panic in handler", "panic", s.redact(fmt.Sprint(p)))
	return apierror.Error(cwpexportv1.ErrorReason_INTERNAL, "internal error")
}
