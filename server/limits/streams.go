// Package limits bounds what one caller may take of the service: open
// streams (Streams.Open, from the server's stream interceptor) and the rate
// of unary reads (an interceptor), per caller, after authentication.
package limits

import (
	"context"
	"fmt"
	"strings"
	"sync"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
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

// Open counts a stream of ctx's caller to fullMethod, or refuses it with
// ResourceExhausted when the caller holds the most allowed; release ends
// it. Health watches and unauthenticated callers are not counted.
func (s *Streams) Open(ctx context.Context, fullMethod string) (release func(), err error) {
	caller := callerauth.Caller(ctx)
	if strings.HasPrefix(fullMethod, healthPrefix) || caller == "" {
		return func() {}, nil
	}
	if !s.acquire(caller) {
		return nil, apierror.Error(cwpexportv1.ErrorReason_CALLER_STREAM_LIMIT_EXCEEDED, fmt.Sprintf(
			"caller %q already holds %d open streams, the most allowed per caller; close a stream (one watch per task is enough) and retry", caller, s.max))
	}
	return func() { s.release(caller) }, nil
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
