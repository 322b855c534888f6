package app

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/realip"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/edge"
)

// EdgeOptions bound what anyone who can reach the ports may cost the
// service before (or regardless of) authentication; zero values take the
// defaults named. docs/security.md lists them with their flags.
type EdgeOptions struct {
	// GRPCMaxHeaderBytes bounds a gRPC call's metadata (the HTTP/2 header
	// list); default DefaultGRPCMaxHeaderBytes.
	GRPCMaxHeaderBytes int
	// GRPCMaxConns and GRPCMaxConnsPerPeer bound the gRPC port's open
	// connections, in total and per peer IP address; defaults
	// edge.DefaultMaxConns and edge.DefaultMaxConnsPerPeer.
	GRPCMaxConns        int
	GRPCMaxConnsPerPeer int
	// GRPCHandshakeTimeout bounds the time a new gRPC connection has to
	// finish its TLS handshake and send its HTTP/2 preface; default
	// DefaultGRPCHandshakeTimeout.
	GRPCHandshakeTimeout time.Duration
	// GRPCMaxConnectionIdle closes (GOAWAY) a gRPC connection that has had
	// no call for this long; default DefaultGRPCMaxConnectionIdle.
	GRPCMaxConnectionIdle time.Duration
	// GRPCResetsPerSecond and GRPCResetBurst bound the streams a gRPC
	// connection's client cancels; defaults edge.DefaultResetsPerSecond
	// and edge.DefaultResetBurst.
	GRPCResetsPerSecond float64
	GRPCResetBurst      int
	// AuthFailuresPerSecond and AuthFailureBurst bound the failed
	// authentications per peer address, on both ports; defaults
	// edge.DefaultAuthFailuresPerSecond and edge.DefaultAuthFailureBurst.
	AuthFailuresPerSecond float64
	AuthFailureBurst      int
	// DropBan is how long a peer whose gRPC connection was dropped for
	// abuse is refused new ones; default edge.DefaultDropBan.
	DropBan time.Duration
	// ReportInterval is how often a peer's repeated refusals are summed up
	// in one log line; default edge.DefaultReportInterval.
	ReportInterval time.Duration
}

// Defaults of the gRPC port's edge bounds.
const (
	DefaultGRPCMaxHeaderBytes    = 64 << 10
	DefaultGRPCHandshakeTimeout  = 10 * time.Second
	DefaultGRPCMaxConnectionIdle = 5 * time.Minute
)

// fdReserve is the descriptors kept beside both ports' connection bounds
// for everything else: the registry, the cloud, the emulator, log files.
const fdReserve = 256

// serverEdge is the edge of one Serve: the gRPC port's listener and gates,
// and the failed-authentication bound both ports share.
type serverEdge struct {
	report   *edge.Reporter
	failures *edge.Failures
	conns    *edge.Listener
	gate     *edge.GRPC
}

// newEdge bounds the gRPC listener and hooks the failed-authentication
// bound to the authenticator.
func (s *Server) newEdge(grpcLis net.Listener) *serverEdge {
	o := s.opts.Edge
	e := &serverEdge{report: edge.NewReporter(s.log, o.ReportInterval)}
	e.failures = edge.NewFailures(o.AuthFailuresPerSecond, o.AuthFailureBurst, e.report)
	e.conns = edge.Limit(grpcLis, o.GRPCMaxConns, o.GRPCMaxConnsPerPeer, e.report)
	e.gate = &edge.GRPC{Conns: e.conns, Failures: e.failures, Admits: s.auth.Admits, Report: e.report,
		ResetsPerSecond: o.GRPCResetsPerSecond, ResetBurst: o.GRPCResetBurst, DropBan: o.DropBan}
	s.auth.OnFailure(func(ctx context.Context, inProcess bool, err error) {
		var from netip.Addr
		if inProcess {
			from, _ = realip.FromContext(ctx)
		} else if p, ok := peer.FromContext(ctx); ok {
			from = edge.PeerOf(p.Addr)
		}
		e.failures.Failed(from, "gRPC "+status.Convert(err).Message())
	})
	s.checkDescriptors()
	return e
}

// grpcOptions are the public gRPC server's edge options: the metadata
// bound, the handshake timeout, and the gates (a tap
// handle before any handler runs, a stats handler counting resets).
func (e *serverEdge) grpcOptions(o EdgeOptions) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxHeaderListSize(uint32(orDefault(o.GRPCMaxHeaderBytes, DefaultGRPCMaxHeaderBytes))),
		grpc.ConnectionTimeout(orDefault(o.GRPCHandshakeTimeout, DefaultGRPCHandshakeTimeout)),
		grpc.InTapHandle(e.gate.Tap),
		grpc.StatsHandler(e.gate),
	}
}

// keepaliveIdle is the gRPC keepalive parameters with the idle bound.
func (o *Options) keepaliveIdle(p keepalive.ServerParameters) keepalive.ServerParameters {
	p.MaxConnectionIdle = orDefault(o.Edge.GRPCMaxConnectionIdle, DefaultGRPCMaxConnectionIdle)
	return p
}

func (e *serverEdge) close() { e.report.Close() }

// checkDescriptors warns when both ports' connection bounds could use up
// the process's descriptors: then accept fails ("too many open files")
// before a bound refuses anyone, and health and metrics go unanswered.
func (s *Server) checkDescriptors() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	need := uint64(s.opts.restMaxConns()) + uint64(orDefault(s.opts.Edge.GRPCMaxConns, edge.DefaultMaxConns)) + fdReserve
	if lim.Cur < need {
		s.log.Warn("the connection bounds exceed the open-file limit: lower -rest-max-conns or -grpc-max-conns, or raise the limit (ulimit -n)",
			slog.Uint64("open_file_limit", lim.Cur), slog.Uint64("needed", need))
	}
}
