// Package limits bounds what one caller may take of the service: open
// streams and the rate of unary reads per caller, as gRPC interceptors
// placed after caller authentication.
package limits

import (
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/callerauth"
)

// DefaultStreamsPerCaller is the default bound on one caller's open streams.
const DefaultStreamsPerCaller = 1000

// healthPrefix: health watches are infrastructure, not a caller's load.
const healthPrefix = "/grpc.health.v1.Health/"

// Streams bounds the streams each authenticated caller (callerauth.Caller)
// has open at once. Without caller authentication there is no caller to
// bound: the service then listens on loopback only (or was told otherwise
// explicitly), and a shared bound would let one watcher-heavy program lock
// every other program out.
type Streams struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// NewStreams returns a bound of max streams per caller; max <= 0 means
// DefaultStreamsPerCaller.
func NewStreams(max int) *Streams {
	if max <= 0 {
		max = DefaultStreamsPerCaller
	}
	return &Streams{max: max, open: map[string]int{}}
}

// Interceptor is the stream server interceptor enforcing the bound.
func (s *Streams) Interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, healthPrefix) {
			return handler(srv, ss)
		}
		caller := callerauth.Caller(ss.Context())
		if caller == "" {
			return handler(srv, ss)
		}
		if !s.acquire(caller) {
			return status.Errorf(codes.ResourceExhausted,
				"caller %q already holds %d open streams, the most allowed per caller; close a stream (one watch per task is enough) and retry", caller, s.max)
		}
		defer s.release(caller)
		return handler(srv, ss)
	}
}

func (s *Streams) acquire(caller string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[caller] >= s.max {
		return false
	}
	s.open[caller]++
	return true
}

func (s *Streams) release(caller string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[caller]--; s.open[caller] <= 0 {
		delete(s.open, caller)
	}
}
