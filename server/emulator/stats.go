package emulator

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Stats is a snapshot of the emulator's counters. Its JSON encoding is what
// GET /_emulator/stats returns, so other processes can decode it into Stats.
type Stats struct {
	// Actions holds the counters of each known action, keyed by action name.
	// Both actions are always present.
	Actions map[string]ActionStats
	// Unattributed counts requests that named no known action (missing or
	// unknown X-TC-Action).
	Unattributed ActionStats
	// Downloads counts successful download responses (GET and HEAD).
	Downloads int64
	// ExpiredDownloads counts downloads refused with 403 because the URL
	// had expired or was not signed (Options.DownloadTTL).
	ExpiredDownloads int64
}

// ActionStats holds the counters of one action.
type ActionStats struct {
	// Requests is every request that reached the API endpoint for the action,
	// whatever its outcome.
	Requests int64
	// Errors counts requests answered with each error code. Requests minus
	// the sum of Errors is the number of successful answers. Besides the
	// cloud's codes it counts answers lost or broken on the way: ClientGone
	// (the client hung up before the answer was written; the action may
	// have run), Aborted (the emulator stopped during an injected delay),
	// Reset, HTTP and Corrupted (injected faults).
	Errors map[string]int64
	// TasksCreated counts tasks created (ExportLicenseDetail only).
	TasksCreated int64
	// PeakPerSecond is the largest number of authenticated requests, admitted
	// or rejected, that one SecretId sent to the action within any window
	// (t-1s, t] of the emulator clock.
	PeakPerSecond int64
	// PeakAt is the emulator-clock arrival time of the request that first
	// brought a window to PeakPerSecond: when the peak happened.
	PeakAt time.Time
	// Polls counts successful ExportTasks lookups per TaskId (ExportTasks
	// only), when the action runs: an answer lost or corrupted on the way
	// still counts.
	Polls map[int64]int64
	// PerSecond counts the authenticated requests of all SecretIds in each
	// whole second of the emulator clock, oldest first, over the last
	// SeriesSeconds seconds; seconds without requests are left out. It
	// shows how a client's rate moved over time, which totals cannot.
	PerSecond []SecondCount
	// PollTimes holds, per TaskId, the emulator-clock arrival times of the
	// last PollTimesKept lookups that Polls counts, oldest first
	// (ExportTasks only): the gaps between a task's polls, whoever sent
	// them.
	PollTimes map[int64][]time.Time
}

// SecondCount is the traffic of one action in one second.
type SecondCount struct {
	// Second is the second's start, in Unix seconds of the emulator clock.
	Second int64
	// Offered is every request the rate limiter saw in the second,
	// admitted or not.
	Offered int64
	// Refused is those answered RequestLimitExceeded.
	Refused int64
}

// SeriesSeconds is how many seconds ActionStats.PerSecond spans at most.
const SeriesSeconds = 600

// PollTimesKept is how many poll times ActionStats.PollTimes keeps per
// task: enough for a benchmark's minutes, bounded for a long run.
const PollTimesKept = 64

// TaskPolls is how many times ExportTasks successfully answered about task id.
func (s Stats) TaskPolls(id int64) int64 {
	return s.Actions[actionExportTasks].Polls[id]
}

// statsRecorder is the mutable, locked side of Stats.
type statsRecorder struct {
	mu               sync.Mutex
	actions          map[string]*ActionStats
	unattributed     ActionStats
	downloads        int64
	expiredDownloads int64
}

func newStatsRecorder() *statsRecorder {
	s := &statsRecorder{actions: map[string]*ActionStats{}}
	for name := range actions {
		s.actions[name] = &ActionStats{Errors: map[string]int64{}, Polls: map[int64]int64{}, PollTimes: map[int64][]time.Time{}}
	}
	s.unattributed.Errors = map[string]int64{}
	s.unattributed.Polls = map[int64]int64{}
	s.unattributed.PollTimes = map[int64][]time.Time{}
	return s
}

// bucket returns the counters for action; callers hold s.mu. Unknown names
// share one bucket so arbitrary X-TC-Action values cannot grow the map.
func (s *statsRecorder) bucket(action string) *ActionStats {
	if a, ok := s.actions[action]; ok {
		return a
	}
	return &s.unattributed
}

// request counts one answered API request; code is "" on success.
func (s *statsRecorder) request(action, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.bucket(action)
	a.Requests++
	if code != "" {
		a.Errors[code]++
	}
}

// undelivered recounts a request counted with code as ClientGone: its
// answer could not be written.
func (s *statsRecorder) undelivered(action, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.bucket(action)
	if code != "" {
		a.Errors[code]--
		if a.Errors[code] == 0 {
			delete(a.Errors, code)
		}
	}
	a.Errors[codeClientGone]++
}

// offered records a request the rate limiter decided on at `at`: n is how
// many its SecretId sent in the second up to it, admitted what the limiter
// said.
func (s *statsRecorder) offered(action string, at time.Time, n int, admitted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.bucket(action)
	if int64(n) > a.PeakPerSecond {
		a.PeakPerSecond, a.PeakAt = int64(n), at
	}
	c := a.second(at.Unix())
	if c == nil {
		return
	}
	c.Offered++
	if !admitted {
		c.Refused++
	}
}

// second returns the count of second sec, added in order if missing, or nil
// when sec is older than the series keeps. Requests are decided on in
// nearly the order they arrive, so the search starts from the newest.
func (a *ActionStats) second(sec int64) *SecondCount {
	i := len(a.PerSecond)
	for i > 0 && a.PerSecond[i-1].Second > sec {
		i--
	}
	if i > 0 && a.PerSecond[i-1].Second == sec {
		return &a.PerSecond[i-1]
	}
	newest := sec
	if n := len(a.PerSecond); n > 0 {
		newest = max(newest, a.PerSecond[n-1].Second)
	}
	if sec <= newest-SeriesSeconds {
		return nil
	}
	a.PerSecond = slices.Insert(a.PerSecond, i, SecondCount{Second: sec})
	drop := 0
	for drop < len(a.PerSecond) && a.PerSecond[drop].Second <= newest-SeriesSeconds {
		drop++
	}
	if drop > 0 {
		a.PerSecond = slices.Delete(a.PerSecond, 0, drop)
		i -= drop
	}
	return &a.PerSecond[i]
}

func (s *statsRecorder) taskCreated() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions[actionExportLicenseDetail].TasksCreated++
}

func (s *statsRecorder) polled(id int64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[actionExportTasks]
	a.Polls[id]++
	times := a.PollTimes[id]
	if len(times) == PollTimesKept {
		times = append(times[:0], times[1:]...)
	}
	a.PollTimes[id] = append(times, at)
}

func (s *statsRecorder) downloaded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.downloads++
}

func (s *statsRecorder) expired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expiredDownloads++
}

func (s *statsRecorder) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{Actions: map[string]ActionStats{}, Downloads: s.downloads, ExpiredDownloads: s.expiredDownloads}
	for name, a := range s.actions {
		out.Actions[name] = a.clone()
	}
	out.Unattributed = s.unattributed.clone()
	return out
}

func (a *ActionStats) clone() ActionStats {
	c := *a
	c.Errors = maps.Clone(a.Errors)
	c.Polls = maps.Clone(a.Polls)
	c.PerSecond = slices.Clone(a.PerSecond)
	c.PollTimes = make(map[int64][]time.Time, len(a.PollTimes))
	for id, times := range a.PollTimes {
		c.PollTimes[id] = slices.Clone(times)
	}
	return c
}

// Stats returns a snapshot of the counters.
func (e *Emulator) Stats() Stats {
	return e.stats.snapshot()
}
