// Package pace spaces the calls to a cloud action that a rate.Limiter
// budgets.
//
// A token bucket grants on its schedule even when a wait ended late (a busy
// machine wakes timers late), so the call after a late one can start right
// behind it and a 1-second window can hold more calls than the rate. The
// cloud counts calls per window, so each call is also held until 1/rate
// after the previous one started.
package pace

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Spacer holds calls apart by at least the limiter's interval. Its zero
// value is ready; it is safe for concurrent use.
type Spacer struct {
	mu   sync.Mutex
	last time.Time
}

// Wait blocks until 1/lim.Limit() after the previous call's start, or until
// ctx ends, and records now as this call's start.
func (s *Spacer) Wait(ctx context.Context, lim *rate.Limiter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := lim.Limit(); l > 0 && l != rate.Inf {
		gap := time.Duration(float64(time.Second) / float64(l))
		if d := gap - time.Since(s.last); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	s.last = time.Now()
	return nil
}
