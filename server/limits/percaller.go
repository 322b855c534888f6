package limits

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// maxCallers bounds the callers whose buckets are kept; the least recently
// seen is forgotten first (and starts again with a full burst).
const maxCallers = 10_000

// PerCaller gives each caller a token bucket of its own
// (golang.org/x/time/rate), so that one caller's burst cannot take what
// the others are owed.
type PerCaller struct {
	// Limit and Burst are each caller's rate and bucket size.
	Limit rate.Limit
	Burst int
	mu    sync.Mutex
	byWho *simplelru.LRU[string, *rate.Limiter]
}

// NewPerCaller returns buckets of limit per second and burst tokens.
func NewPerCaller(limit rate.Limit, burst int) *PerCaller {
	lru, _ := simplelru.NewLRU[string, *rate.Limiter](maxCallers, nil)
	return &PerCaller{Limit: limit, Burst: burst, byWho: lru}
}

// Take takes a token from caller's bucket at now; when there is none it
// takes nothing and says how long until there is.
func (p *PerCaller) Take(caller string, now time.Time) (time.Duration, bool) {
	p.mu.Lock()
	lim, ok := p.byWho.Get(caller)
	if !ok {
		lim = rate.NewLimiter(p.Limit, p.Burst)
		p.byWho.Add(caller, lim)
	}
	p.mu.Unlock()
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if r.OK() && delay <= 0 {
		return 0, true
	}
	r.CancelAt(now)
	return delay, false
}
