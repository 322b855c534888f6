package budget

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestCallsAreSpaced: however many callers arrive at once, consecutive
// starts are at least 1/rate apart.
func TestCallsAreSpaced(t *testing.T) {
	const perSecond, calls = 200, 20
	b := MustNew(Options{Rate: perSecond})
	var wg sync.WaitGroup
	start := time.Now()
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// A lower bound: a slow machine only spaces the calls further.
	if took, least := time.Since(start), (calls-1)*time.Second/perSecond; took < least {
		t.Fatalf("%d calls started within %v; spaced by 1/%d s they need %v", calls, took, perSecond, least)
	}
}

// TestWaitersHonourTheirDeadlines: a caller queued behind a long wait gives
// up when its own deadline passes, not when the one ahead of it is done.
func TestWaitersHonourTheirDeadlines(t *testing.T) {
	b := MustNew(Options{Rate: 0.5}) // one call every 2 s
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	go func() {
		if err := b.Wait(context.Background()); err != nil {
			t.Error(err)
		}
		order <- "patient"
	}()
	time.Sleep(20 * time.Millisecond) // the patient caller is waiting
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := b.Wait(ctx)
	order <- "hasty"
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a caller whose deadline passed got %v", err)
	}
	if first := <-order; first != "hasty" {
		t.Fatalf("the caller with a 50ms deadline returned only after the one waiting 2s")
	}
	<-order
}

// TestAdmitRefusesWhatCannotStartInTime: a caller that could not start
// before its latest time learns at once how long the wait would be, and its
// refusal does not use the budget.
func TestAdmitRefusesWhatCannotStartInTime(t *testing.T) {
	b := MustNew(Options{Rate: 1})
	if _, err := b.Admit(context.Background(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Admit(context.Background(), time.Now().Add(100*time.Millisecond))
	var late *LateError
	if !errors.As(err, &late) || late.Delay < 500*time.Millisecond {
		t.Fatalf("admit with 100ms to spare at 1/s: %v, want a LateError of about 1s", err)
	}
	// The refused call took no token: the next one waits one interval, not two.
	waited, err := b.Admit(context.Background(), time.Now().Add(1500*time.Millisecond))
	if err != nil {
		t.Fatalf("the next call within 1.5s was refused: %v (waited %v)", err, waited)
	}
}

// TestThrottlesLowerTheRateAndItRecovers: a refusal cuts the rate below
// what the cloud admitted in the last second, refusals of calls already
// under way do not cut it again, and the rate grows back to the configured
// one.
func TestThrottlesLowerTheRateAndItRecovers(t *testing.T) {
	const configured = 50.0
	b := MustNew(Options{Rate: configured, Recovery: 200 * time.Millisecond, Hold: time.Hour})
	for range 10 {
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	b.Throttled()
	cut := b.Rate()
	// 10 starts in the last second, 1 refused: 9 admitted, cut to 0.9 × 9.
	if cut > 9 || cut < 5 {
		t.Fatalf("after a refusal with 9 calls admitted in the last second the rate is %.2f/s, want about 8.1/s", cut)
	}
	b.Throttled()
	if again := b.Rate(); again < cut {
		t.Fatalf("a second refusal within the hold cut the rate again: %.2f -> %.2f", cut, again)
	}
	if b.Throttles() != 2 {
		t.Fatalf("throttles = %d, want 2", b.Throttles())
	}
	prev := cut
	deadline := time.Now().Add(20 * time.Second)
	for b.Rate() < configured {
		if time.Now().After(deadline) {
			t.Fatalf("the rate did not recover within 20s: %.2f/s", b.Rate())
		}
		time.Sleep(20 * time.Millisecond)
		r := b.Rate()
		if r < prev {
			t.Fatalf("the recovering rate went down: %.2f -> %.2f", prev, r)
		}
		prev = r
	}
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRateNeverFallsBelowTheFloor: refusals with nothing admitted leave the
// floor, and the rate still recovers from it.
func TestRateNeverFallsBelowTheFloor(t *testing.T) {
	b := MustNew(Options{Rate: 20, Min: 2, Recovery: 100 * time.Millisecond, Hold: time.Nanosecond})
	for range 5 {
		b.Throttled()
		time.Sleep(time.Millisecond)
	}
	if r := b.Rate(); r < 2 {
		t.Fatalf("rate %.2f/s under the floor of 2/s", r)
	}
	time.Sleep(600 * time.Millisecond)
	if r := b.Rate(); r <= 2 {
		t.Fatalf("rate stuck at the floor: %.2f/s", r)
	}
}

func TestNewRejectsBadRates(t *testing.T) {
	for _, r := range []float64{0, -1} {
		if _, err := New(Options{Rate: r}); err == nil {
			t.Errorf("New(rate %v) succeeded", r)
		}
	}
}

// TestQueuedCallsFollowTheRateNow: the spacing of calls already waiting
// follows the rate as it is when they are due to start, not as it was when
// they joined the queue: after a cut has recovered, they start at the
// configured pace again.
func TestQueuedCallsFollowTheRateNow(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Unix(1_000_000, 0)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	b := MustNew(Options{Rate: 20, Recovery: time.Second, Now: clock})
	b.Throttled() // nothing admitted in the last second: down to the floor
	if r := b.Rate(); r > 3 {
		t.Fatalf("after a cut the rate is %.2f/s", r)
	}
	// A call starts at the cut rate.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Again(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Ten recovery periods later the rate is back at 20/s: a call 60 ms
	// after the previous one (more than 1/20 s) starts at once.
	advance(10 * time.Second)
	if r := b.Rate(); r != 20 {
		t.Fatalf("the rate did not recover: %.2f/s", r)
	}
	if _, err := b.Again(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	advance(60 * time.Millisecond)
	quick, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Again(quick, time.Time{}); err != nil {
		t.Fatalf("a call 60 ms after the previous one at 20/s waited: %v", err)
	}
}

// TestAgainKeepsItsPlace: a call the cloud refused is made again after the
// spacing alone, not behind the turns other callers took meanwhile.
func TestAgainKeepsItsPlace(t *testing.T) {
	b := MustNew(Options{Rate: 20})
	// Twenty callers take their turns for the next second.
	for range 20 {
		r := b.lim.Reserve()
		defer r.Cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.Again(ctx, time.Now().Add(300*time.Millisecond))
	if err != nil {
		t.Fatalf("a refused call waited behind the queue: %v", err)
	}
	_, err = b.Admit(ctx, time.Now().Add(300*time.Millisecond))
	var late *LateError
	if !errors.As(err, &late) {
		t.Fatalf("a new call jumped the queue: %v", err)
	}
}
