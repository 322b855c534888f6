package budget

import (
	"sync"
	"time"
)

// CallWindow is how many whole seconds of cloud calls a Window reports.
const CallWindow = 60

// ringSlots holds the window plus the second in progress, so that counting
// the current second never overwrites the oldest one still reported.
const ringSlots = CallWindow + 1

// Window counts one action's cloud calls, and the throttled ones, per
// wall-clock second over the last ringSlots seconds (the per-second view
// of the budget that GetBudgetStatus reports). The zero Window is ready. Prometheus counters
// give totals; a person looking at the budget wants the recent per-second
// shape, which a scrape interval would smooth away.
type Window struct {
	mu        sync.Mutex
	second    [ringSlots]int64 // the Unix second each slot counts
	calls     [ringSlots]int32
	throttled [ringSlots]int32
}

// Add counts a call that started at t.
func (r *Window) Add(t time.Time, throttled bool) {
	s := t.Unix()
	i := slot(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.second[i] > s:
		return // a call that outlasted the window: its second is gone
	case r.second[i] < s:
		r.second[i], r.calls[i], r.throttled[i] = s, 0, 0
	}
	r.calls[i]++
	if throttled {
		r.throttled[i]++
	}
}

// Calls returns the calls of each of the CallWindow whole seconds before
// now's second, oldest first, and the throttled calls among them.
func (r *Window) Calls(now time.Time) (perSecond []int32, throttled int32) {
	end := now.Unix()
	perSecond = make([]int32, CallWindow)
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range CallWindow {
		s := end - CallWindow + int64(k)
		if i := slot(s); r.second[i] == s {
			perSecond[k] = r.calls[i]
			throttled += r.throttled[i]
		}
	}
	return perSecond, throttled
}

func slot(s int64) int {
	i := int(s % ringSlots)
	if i < 0 {
		i += ringSlots
	}
	return i
}
