package emulator

import (
	"sync"
	"time"
)

// rateLimiter enforces an exact sliding-window limit per (SecretId, action):
// at most limit admissions in any window (t-1s, t]. A token bucket would
// allow bursts that break the "≤ budget in every 1-second window" invariant
// the product's benchmark checks, so the limiter remembers the admission
// time of each of the last limit admitted requests in a ring.
type rateLimiter struct {
	limit int // < 0: unlimited

	mu   sync.Mutex
	keys map[limitKey]*window
}

type limitKey struct{ secretID, action string }

type window struct {
	admitted []time.Time // ring of the last len(admitted) admission times
	head     int         // index of the oldest admission once the ring is full
	arrivals []time.Time // every request in the last second, admitted or not
}

func newRateLimiter(limit int) *rateLimiter {
	return &rateLimiter{limit: limit, keys: map[limitKey]*window{}}
}

// admit decides on a request arriving at now. It also returns how many
// requests (admitted or not, including this one) the key sent in (now-1s, now],
// which feeds ActionStats.PeakPerSecond.
func (l *rateLimiter) admit(secretID, action string, now time.Time) (ok bool, offered int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := limitKey{secretID, action}
	w := l.keys[k]
	if w == nil {
		w = &window{}
		if l.limit > 0 {
			w.admitted = make([]time.Time, 0, l.limit)
		}
		l.keys[k] = w
	}

	drop := 0
	for drop < len(w.arrivals) && now.Sub(w.arrivals[drop]) >= time.Second {
		drop++
	}
	w.arrivals = append(w.arrivals[drop:], now)
	offered = len(w.arrivals)

	switch {
	case l.limit < 0:
		return true, offered
	case len(w.admitted) < l.limit:
		w.admitted = append(w.admitted, now)
		return true, offered
	case now.Sub(w.admitted[w.head]) >= time.Second:
		// The limit-th most recent admission left the window: admitting now
		// keeps every (t-1s, t] at or under the limit.
		w.admitted[w.head] = now
		w.head = (w.head + 1) % l.limit
		return true, offered
	default:
		return false, offered
	}
}
