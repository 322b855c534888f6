package edge

import (
	"net/netip"
	"sync"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"golang.org/x/time/rate"
)

// Defaults of the failed-authentication bound.
const (
	DefaultAuthFailuresPerSecond = 1.0
	DefaultAuthFailureBurst      = 20
)

// Failures bounds what failed authentications cost, per peer address: a
// token bucket of failures (rate per second, burst). While a peer's bucket
// is empty, its calls without valid credentials are refused at the edge,
// ResourceExhausted with a RetryInfo, before any handler, span or log line
// (valid credentials still pass: callers sharing an address with an
// attacker keep being served); a peer that goes on regardless is told to
// drop its connection. Every failure and refusal is reported (one line per
// peer per interval), never logged one by one.
type Failures struct {
	limit  rate.Limit
	burst  int
	report *Reporter

	mu    sync.Mutex
	peers map[netip.Addr]*failing
}

type failing struct {
	lim *rate.Limiter
	// refused counts the calls refused since the peer last failed
	// within its budget.
	refused int
}

// NewFailures returns a bound of perSecond failed authentications per
// peer, burst at once (0: the defaults), reporting on report.
func NewFailures(perSecond float64, burst int, report *Reporter) *Failures {
	if perSecond <= 0 {
		perSecond = DefaultAuthFailuresPerSecond
	}
	if burst <= 0 {
		burst = DefaultAuthFailureBurst
	}
	if report == nil {
		report = NewReporter(nil, 0)
	}
	return &Failures{limit: rate.Limit(perSecond), burst: burst, report: report, peers: map[netip.Addr]*failing{}}
}

// Exhausted reports whether peer has used up its budget of failures:
// then a call whose credentials are not valid is refused (Refuse) rather
// than checked, answered and logged as a failure.
func (f *Failures) Exhausted(peer netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.entry(peer.Unmap())
	return p != nil && p.lim.Tokens() < 1
}

// Refuse returns the ResourceExhausted status (with a RetryInfo) refusing
// a call of a peer that has used up its budget; drop is true when the
// peer has ignored as many refusals as its burst, and its connection
// should be closed.
func (f *Failures) Refuse(peer netip.Addr) (err error, drop bool) {
	peer = peer.Unmap()
	now := time.Now()
	delay := time.Duration(float64(time.Second) / float64(f.limit))
	f.mu.Lock()
	if p := f.entry(peer); p != nil {
		p.refused++
		drop = p.refused > f.burst
		delay = time.Duration((1 - p.lim.TokensAt(now)) / float64(f.limit) * float64(time.Second))
	}
	f.mu.Unlock()
	f.report.Note(peer, "authentication attempt refused: too many failures", "")
	return apierror.New(cwpexportv1.ErrorReason_TOO_MANY_AUTHENTICATION_FAILURES, "too many failed authentications from this address: retry later with valid credentials").
		RetryAfter(max(delay, time.Millisecond)).Err(), drop
}

// entry returns peer's entry, or that of the peers past maxPeers, or nil.
func (f *Failures) entry(peer netip.Addr) *failing {
	if p, ok := f.peers[peer]; ok {
		return p
	}
	if len(f.peers) >= maxPeers {
		return f.peers[overflow]
	}
	return nil
}

// Failed records a failed authentication of peer; detail says what failed
// (never the credentials).
func (f *Failures) Failed(peer netip.Addr, detail string) {
	peer = peer.Unmap()
	f.mu.Lock()
	p, ok := f.peers[peer]
	if !ok {
		if len(f.peers) >= maxPeers {
			f.sweep()
		}
		key := peer
		if len(f.peers) >= maxPeers {
			key = overflow
		}
		if p, ok = f.peers[key]; !ok {
			p = &failing{lim: rate.NewLimiter(f.limit, f.burst)}
			f.peers[key] = p
		}
	}
	p.lim.Allow()
	p.refused = 0
	f.mu.Unlock()
	f.report.Note(peer, "authentication failed", detail)
}

// sweep forgets the peers whose buckets are full again.
func (f *Failures) sweep() {
	now := time.Now()
	for a, p := range f.peers {
		if p.lim.TokensAt(now) >= float64(f.burst) {
			delete(f.peers, a)
		}
	}
}
