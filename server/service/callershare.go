package service

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ReasonCallerShareExhausted: the caller started exports faster than its
// share of the export budget.
const ReasonCallerShareExhausted = "CALLER_SHARE_EXHAUSTED"

// DefaultCallerShare is the fraction of the export budget one caller may use.
const DefaultCallerShare = 0.5

// callerShares gives each caller a rate limiter of its own, a share of the
// export budget, so that one caller's burst of exports cannot queue the
// others out of the budget.
type callerShares struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

func newCallerShares(budget rate.Limit, share float64) *callerShares {
	l := budget * rate.Limit(share)
	return &callerShares{limit: l, burst: max(1, int(l)), m: map[string]*rate.Limiter{}}
}

// admit takes one export from caller's share, or says when to retry.
func (c *callerShares) admit(caller string, now time.Time) error {
	c.mu.Lock()
	lim, ok := c.m[caller]
	if !ok {
		lim = rate.NewLimiter(c.limit, c.burst)
		c.m[caller] = lim
	}
	c.mu.Unlock()
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if r.OK() && delay <= 0 {
		return nil
	}
	r.CancelAt(now)
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"caller %q started exports faster than its share of the export budget (%.3g per second, bursts of %d) allows; other callers keep the rest; retry in %s",
		caller, float64(c.limit), c.burst, delay.Round(time.Millisecond)))
	if ws, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonCallerShareExhausted, Domain: Domain, Metadata: map[string]string{metadataRetryAfterMillis: fmt.Sprint(delay.Milliseconds())}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)},
	); err == nil {
		st = ws
	}
	return st.Err()
}
