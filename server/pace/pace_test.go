package pace

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestSpacerHoldsCallsApart: however late the callers arrive and however
// many at once, consecutive starts are at least 1/rate apart.
func TestSpacerHoldsCallsApart(t *testing.T) {
	const perSecond, calls = 200, 20
	lim := rate.NewLimiter(perSecond, 1)
	var (
		s  Spacer
		wg sync.WaitGroup
	)
	start := time.Now()
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Wait(context.Background(), lim); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// A lower bound: a slow machine only spaces the calls further.
	if took, least := time.Since(start), (calls-1)*time.Second/perSecond; took < least {
		t.Fatalf("%d calls started within %v; spaced by 1/%d s they need %v", calls, took, perSecond, least)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx, lim); err == nil {
		t.Fatal("Wait right after a call ignored its canceled context")
	}
}
