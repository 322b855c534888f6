package emulator

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestRateLimitWithSDK(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	c := sdkClient(s, testID, testKey)
	t0 := clock.Now()
	create := func() string {
		return errCode(t, sdkCall(t, c, APIVersion, "ExportLicenseDetail", nil, nil))
	}

	for i := range DefaultRateLimit {
		if code := create(); code != "" {
			t.Fatalf("request %d: %s", i+1, code)
		}
	}
	if code := create(); code != codeRequestLimitExceeded {
		t.Fatalf("request 21: code %q, want %s", code, codeRequestLimitExceeded)
	}
	// The budget is per action and per SecretId.
	if code := errCode(t, sdkCall(t, c, APIVersion, "ExportTasks", map[string]any{"TaskId": "1"}, nil)); code != "" {
		t.Fatalf("ExportTasks shares the budget: %s", code)
	}
	if code := errCode(t, sdkCall(t, sdkClient(s, otherID, otherKey), APIVersion, "ExportLicenseDetail", nil, nil)); code != "" {
		t.Fatalf("other SecretId shares the budget: %s", code)
	}
	// The window slides: 999ms later the 20 admissions are still inside it.
	clock.Advance(999 * time.Millisecond)
	if code := create(); code != codeRequestLimitExceeded {
		t.Fatalf("after 999ms: code %q", code)
	}
	clock.Advance(time.Millisecond)
	if code := create(); code != "" {
		t.Fatalf("after 1s: code %q", code)
	}

	st := s.Stats().Actions["ExportLicenseDetail"]
	want := ActionStats{Requests: 24, TasksCreated: 22, PeakPerSecond: 22}
	if st.Requests != want.Requests || st.TasksCreated != want.TasksCreated || st.PeakPerSecond != want.PeakPerSecond ||
		st.Errors[codeRequestLimitExceeded] != 2 || len(st.Errors) != 1 {
		t.Fatalf("stats %+v, want %+v with 2 RequestLimitExceeded", st, want)
	}
	// The 22nd request of the window came 999ms after the first 21.
	if at := t0.Add(999 * time.Millisecond); !st.PeakAt.Equal(at) {
		t.Errorf("PeakAt %v, want %v", st.PeakAt, at)
	}
}

func TestRateLimitUnlimited(t *testing.T) {
	s := startServer(t, Options{Now: newFakeClock().Now, RateLimit: -1})
	c := sdkClient(s, testID, testKey)
	for i := range 50 {
		if err := sdkCall(t, c, APIVersion, "ExportTasks", map[string]any{"TaskId": "7"}, nil); errCode(t, err) != codeResourceNotFound {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	if p := s.Stats().Actions["ExportTasks"].PeakPerSecond; p != 50 {
		t.Fatalf("PeakPerSecond %d, want 50", p)
	}
}

// The limiter must be exact in both directions: never more than limit
// admissions in any (t-1s, t], and never a rejection while fewer are in it.
func TestSlidingWindowExact(t *testing.T) {
	const limit = 5
	l := newRateLimiter(limit)
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	var admitted, all []time.Time
	// Times only grow, so scan back until one leaves the window.
	inWindow := func(ts []time.Time, at time.Time) int {
		n := 0
		for i := len(ts) - 1; i >= 0 && at.Sub(ts[i]) < time.Second; i-- {
			n++
		}
		return n
	}
	for range 5000 {
		// Bursts of simultaneous requests and gaps around the 1s boundary.
		switch rng.IntN(4) {
		case 0:
		case 1:
			now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
		case 2:
			now = now.Add(time.Second - time.Duration(rng.IntN(3))*time.Millisecond)
		default:
			now = now.Add(time.Duration(rng.IntN(400)) * time.Millisecond)
		}
		before := inWindow(admitted, now)
		ok, offered := l.admit("id", "a", now)
		all = append(all, now)
		if ok != (before < limit) {
			t.Fatalf("at %v: admitted=%v with %d admissions in the window", now.Sub(t0), ok, before)
		}
		if ok {
			admitted = append(admitted, now)
		}
		if want := inWindow(all, now); offered != want {
			t.Fatalf("at %v: offered %d, want %d", now.Sub(t0), offered, want)
		}
	}
	if len(admitted) < 1000 {
		t.Fatalf("only %d admissions: the test did not exercise the limiter", len(admitted))
	}
}
