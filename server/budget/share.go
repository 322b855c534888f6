package budget

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/limits"
)

// DefaultCallerShare is the fraction of the export budget one caller may use.
const DefaultCallerShare = 0.5

// Shares gives each caller a share of the export budget, so that one
// caller's burst of exports cannot queue the others out of the budget.
type Shares struct {
	buckets *limits.PerCaller
}

// NewShares returns shares of share (a fraction) of a budget's rate.
func NewShares(budget rate.Limit, share float64) *Shares {
	l := budget * rate.Limit(share)
	return &Shares{buckets: limits.NewPerCaller(l, max(1, int(l)))}
}

// Admit takes one export from caller's share, or says when to retry.
func (c *Shares) Admit(caller string, now time.Time) error {
	delay, ok := c.buckets.Take(caller, now)
	if ok {
		return nil
	}
	return apierror.New(cwpexportv1.ErrorReason_CALLER_SHARE_EXHAUSTED, fmt.Sprintf(
		"caller %q started exports faster than its share of the export budget (%.3g per second, bursts of %d) allows; other callers keep the rest; retry in %s",
		caller, float64(c.buckets.Limit), c.buckets.Burst, delay.Round(time.Millisecond))).RetryAfter(delay).Err()
}
