package edge

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Defaults of the gRPC port's stream-reset bound and of how long a peer
// whose connection was dropped is refused new ones.
const (
	DefaultResetsPerSecond = 10.0
	DefaultResetBurst      = 200
	DefaultDropBan         = 5 * time.Second
)

// GRPC gates the streams of a gRPC port whose connections come from Conns:
// it is the server's tap handle (grpc.InTapHandle), which runs when a
// stream's headers arrive, before any handler, span or log line, and a
// stats handler (grpc.StatsHandler) that counts the streams each
// connection's client cancels. grpc-go already runs at most
// MaxConcurrentStreams handlers per connection; GRPC also bounds the rate
// of resets: a connection cancelling more than ResetsPerSecond streams
// (ResetBurst at once) is closed and its peer refused for DropBan.
type GRPC struct {
	Conns    *Listener
	Failures *Failures
	// Admits reports whether a call's credentials are valid, without
	// other effect (callerauth.Authenticator.Admits).
	Admits func(ctx context.Context) bool
	Report *Reporter
	// ResetsPerSecond and ResetBurst bound the streams a connection's
	// client cancels; 0 takes the defaults.
	ResetsPerSecond float64
	ResetBurst      int
	// DropBan is how long a dropped peer's new connections are refused;
	// 0 takes DefaultDropBan.
	DropBan time.Duration
}

type connKey struct{}

// connState is what GRPC knows of one connection.
type connState struct {
	remote  string
	resets  *rate.Limiter
	dropped atomic.Bool
}

// healthPrefix: health checks pass every gate, for probes.
const healthPrefix = "/grpc.health.v1.Health/"

// Tap refuses the streams of a connection being dropped, and those without
// valid credentials of a peer over its failed-authentication budget
// (dropping its connection when it ignores the refusals).
func (g *GRPC) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	c, _ := ctx.Value(connKey{}).(*connState)
	if c != nil && c.dropped.Load() {
		return ctx, status.Error(codes.Unavailable, "the connection is closing: reconnect")
	}
	if strings.HasPrefix(info.FullMethodName, healthPrefix) || g.Failures == nil {
		return ctx, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ctx, nil
	}
	from := PeerOf(p.Addr)
	if !g.Failures.Exhausted(from) || (g.Admits != nil && g.Admits(ctx)) {
		return ctx, nil
	}
	err, drop := g.Failures.Refuse(from)
	if drop && c != nil {
		g.drop(c, "failed authentications")
	}
	return ctx, err
}

func (g *GRPC) drop(c *connState, why string) {
	if !c.dropped.CompareAndSwap(false, true) || g.Conns == nil {
		return
	}
	ban := g.DropBan
	if ban <= 0 {
		ban = DefaultDropBan
	}
	// Closed from another goroutine: the caller may be the transport's
	// reader, which the close waits for.
	go g.Conns.Drop(c.remote, ban)
	if g.Report != nil {
		if ap, err := netip.ParseAddrPort(c.remote); err == nil {
			g.Report.Note(ap.Addr(), "connection dropped", why)
		}
	}
}

// TagConn gives each connection its reset budget.
func (g *GRPC) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	perSec, burst := g.ResetsPerSecond, g.ResetBurst
	if perSec <= 0 {
		perSec = DefaultResetsPerSecond
	}
	if burst <= 0 {
		burst = DefaultResetBurst
	}
	remote := ""
	if info.RemoteAddr != nil {
		remote = info.RemoteAddr.String()
	}
	return context.WithValue(ctx, connKey{}, &connState{remote: remote, resets: rate.NewLimiter(rate.Limit(perSec), burst)})
}

// HandleConn does nothing: connections are counted by the Listener.
func (g *GRPC) HandleConn(context.Context, stats.ConnStats) {}

// TagRPC does nothing.
func (g *GRPC) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// HandleRPC counts a stream that ended cancelled by its client against
// its connection's budget, and drops the connection past it.
func (g *GRPC) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || end.Error == nil {
		return
	}
	if status.Code(end.Error) != codes.Canceled && !errors.Is(end.Error, context.Canceled) {
		return
	}
	if c, ok := ctx.Value(connKey{}).(*connState); ok && !c.resets.Allow() {
		g.drop(c, "too many streams cancelled by the client (rapid reset)")
	}
}
