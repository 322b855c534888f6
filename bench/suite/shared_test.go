package suite

import (
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/emulator"
)

// The shared-quota figures: seconds are counted from the burst, the busy
// period of creations ends when less than a second's worth is left, and
// every decrease of the sampled rate is one cut.
func TestSharedFigures(t *testing.T) {
	const s0 = 1_700_000_000
	a := perSecond(emulator.ActionStats{PerSecond: []emulator.SecondCount{
		{Second: s0, Offered: 14, Refused: 4},
		{Second: s0 + 1, Offered: 10, Refused: 1},
		{Second: s0 + 2, Offered: 9},
		{Second: s0 + 3, Offered: 10, Refused: 1},
		{Second: s0 + 5, Offered: 6},
		{Second: s0 + 7, Offered: 3},
	}}, s0)
	if calls, refused := a.sum(2, 6); calls != 25 || refused != 1 {
		t.Fatalf("seconds 2-5: %d calls, %d refused; want 25, 1", calls, refused)
	}
	// 52 calls in all; left to make at the start of seconds 0 to 4: 52, 38,
	// 28, 19, 9.
	if k := a.busyUntil(8); k != 4 {
		t.Fatalf("busy until second %d, want 4", k)
	}
	// Counting only seconds 0 and 1: 24, then 10 left; busy to the end.
	if k := a.busyUntil(2); k != 2 {
		t.Fatalf("busy until second %d, want 2", k)
	}

	start := time.Unix(s0, 0)
	var samples []rateSample
	for i, r := range []float64{18, 18, 9, 9.2, 9.6, 10, 8.1, 8.5, 18} {
		samples = append(samples, rateSample{at: start.Add(time.Duration(i)*rateSampling + time.Millisecond), create: r})
	}
	tr := traceOf(samples, start, func(s rateSample) float64 { return s.create })
	if n := tr.cuts(); n != 2 {
		t.Fatalf("%d cuts, want 2", n)
	}
	if lo, hi, last := tr.min(0, 1), tr.max(0, 1), tr.last(); lo != 8.1 || hi != 18 || last != 18 {
		t.Fatalf("lowest %.1f, highest %.1f, last %.1f", lo, hi, last)
	}
}
