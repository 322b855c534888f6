// Package edge bounds what anyone who can reach the service's ports may
// cost it before (and regardless of) authentication: connections in total
// and per peer address, failed authentications per peer, streams a
// connection resets, and the log lines all of these refusals produce
// (one line per peer and kind per interval, never one per attempt).
package edge

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// DefaultReportInterval is how often a peer's repeated refusals of one
// kind are summed up in a log line.
const DefaultReportInterval = 10 * time.Second

// maxPeers bounds the peers tracked at once (per Reporter, Failures): past
// it, further peers share one entry, so that a spread of source addresses
// cannot grow the maps.
const maxPeers = 4096

// overflow is the entry that peers past maxPeers share.
var overflow = netip.IPv6Unspecified()

// Reporter logs refusals at the edge: a peer's first refusal of a kind at
// once, then, while they go on, one line per interval with how many there
// were. A flood costs a counter increment per attempt, not a log line.
type Reporter struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	windows map[reportKey]*window
	closed  bool
}

type reportKey struct {
	peer netip.Addr
	kind string
}

// window counts a peer's refusals of one kind since its last line.
type window struct {
	n      int
	detail string
	timer  *time.Timer
}

// NewReporter returns a Reporter logging on log (nil discards) at most one
// line per peer and kind per interval (0: DefaultReportInterval).
func NewReporter(log *slog.Logger, interval time.Duration) *Reporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = DefaultReportInterval
	}
	return &Reporter{log: log, interval: interval, windows: map[reportKey]*window{}}
}

// Note records one refusal of kind (such as "authentication failed") from
// peer; detail says why (the last one is logged).
func (r *Reporter) Note(peer netip.Addr, kind, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	k := reportKey{peer.Unmap(), kind}
	if w, ok := r.windows[k]; ok {
		w.n++
		w.detail = detail
		return
	}
	if len(r.windows) >= maxPeers {
		k.peer = overflow
		if w, ok := r.windows[k]; ok {
			w.n++
			return
		}
	}
	r.line(k, 1, detail)
	w := &window{}
	w.timer = time.AfterFunc(r.interval, func() { r.flush(k, w) })
	r.windows[k] = w
}

// flush ends a window: a line if refusals came during it, and another
// window while they go on.
func (r *Reporter) flush(k reportKey, w *window) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.windows[k] != w {
		return
	}
	if w.n == 0 {
		delete(r.windows, k)
		return
	}
	r.line(k, w.n, w.detail)
	w.n = 0
	w.timer.Reset(r.interval)
}

func (r *Reporter) line(k reportKey, n int, detail string) {
	peer := k.peer.String()
	if k.peer == overflow {
		peer = "other peers"
	}
	r.log.Warn("refused at the edge", "kind", k.kind, "peer", peer, "count", n,
		"interval", r.interval.String(), "detail", detail)
}

// Close logs what the open windows counted and stops the timers.
func (r *Reporter) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, w := range r.windows {
		w.timer.Stop()
		if w.n > 0 {
			r.line(k, w.n, w.detail)
		}
	}
	r.windows, r.closed = map[reportKey]*window{}, true
}
