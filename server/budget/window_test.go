package budget

import (
	"slices"
	"testing"
	"time"
)

func TestSecondRingCountsWholeSecondsOldestFirst(t *testing.T) {
	var r Window
	base := time.Unix(1_800_000_000, 0)
	at := func(sec int, ms int) time.Time {
		return base.Add(time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond)
	}
	// Three calls in second 0 (one throttled), one in second 1, two in
	// second 59, one in second 60 (the second in progress at now).
	r.Add(at(0, 10), false)
	r.Add(at(0, 500), true)
	r.Add(at(0, 999), false)
	r.Add(at(1, 0), false)
	r.Add(at(59, 100), true)
	r.Add(at(59, 200), false)
	r.Add(at(60, 1), false)

	got, throttled := r.Calls(at(60, 500))
	want := make([]int32, CallWindow)
	want[0], want[1], want[59] = 3, 1, 2
	if !slices.Equal(got, want) || throttled != 2 {
		t.Fatalf("window at second 60 = %v, %d throttled; want %v, 2", got, throttled, want)
	}

	// One second later second 0 has left the window; second 60 is in it.
	got, throttled = r.Calls(at(61, 0))
	want = make([]int32, CallWindow)
	want[0], want[58], want[59] = 1, 2, 1
	if !slices.Equal(got, want) || throttled != 1 {
		t.Fatalf("window at second 61 = %v, %d throttled; want %v, 1", got, throttled, want)
	}

	// A call in second 61 reuses the slot of second 0: the old count is
	// cleared, not added to.
	r.Add(at(61, 0), false)
	got, _ = r.Calls(at(62, 0))
	if got[59] != 1 {
		t.Fatalf("second 61 counted %d calls, want 1", got[59])
	}
	// A call that started before the window and ends now is dropped
	// rather than counted in a newer second's slot.
	r.Add(at(0, 0), false)
	got, _ = r.Calls(at(62, 0))
	if got[59] != 1 {
		t.Fatalf("a stale call changed second 61 to %d calls", got[59])
	}

	// Long after, every second is empty.
	got, throttled = r.Calls(at(500, 0))
	if !slices.Equal(got, make([]int32, CallWindow)) || throttled != 0 {
		t.Fatalf("window long after = %v, %d throttled; want all zero", got, throttled)
	}
}
