// Package tracker keeps one shared observation of each export task and polls
// the cloud for it on a schedule set by the read budget, whatever the number
// of callers interested in the task.
//
// Every watch stream and every GetExportTask of a task reads the same entry;
// one scheduler goroutine decides when the cloud is asked. With K tasks
// scheduled and a budget of B reads per second, each task is polled about
// every max(MinInterval, K/B), keeping the cadence of its due times. Tasks
// that a caller waits on synchronously (a Get of a stale task, a watch of a
// task never observed) go first, unless a watched task is a whole
// MinInterval late; tasks kept only by background interest use what the
// others leave. Watchers are woken only when what they report changes.
package tracker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/time/rate"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/pace"
)

// Reader reads an export task's state from the cloud.
type Reader interface {
	ExportTasks(ctx context.Context, taskID int64) (cloud.TaskStatus, error)
}

// Options configure a Tracker. Zero values take the defaults named.
type Options struct {
	// Cloud answers the polls.
	Cloud Reader
	// Budget paces all polls (the cloud's ExportTasks quota is per account).
	// Nil means 18 per second with a burst of 1.
	Budget *rate.Limiter
	// MinInterval is the floor between two polls of one task; default 1s.
	MinInterval time.Duration
	// BackgroundInterval is the floor for tasks kept only by background
	// interest; default 10s.
	BackgroundInterval time.Duration
	// Freshness: an unwatched task observed more recently than this is
	// answered without asking the cloud; default 1s.
	Freshness time.Duration
	// Retention is how long an entry nobody is interested in stays cached
	// (terminal states are answered from it); default 10m.
	Retention time.Duration
	// PollTimeout bounds one cloud call; default 10s.
	PollTimeout time.Duration
	// MaxBackoff caps the delay after failed polls; default 30s.
	MaxBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives poll failures; nil discards.
	Logger *slog.Logger
	// Observer is told about the tracker's work (metrics, the registry);
	// nil ignores.
	Observer Observer
}

// Observer is told about the tracker's work.
type Observer interface {
	// BudgetWaited reports how long the scheduler waited for a token of the
	// read budget before a poll. It runs on the scheduler's path: it must
	// be quick.
	BudgetWaited(d time.Duration)
	// Polled reports the task's snapshot after a poll the cloud answered or
	// refused; settled is true for the task's first terminal observation
	// (FINISHED, ERROR, or an error that ends its watches). It runs on the
	// poll's goroutine, outside the tracker's lock, and may call the
	// Tracker.
	Polled(s Snapshot, settled bool)
}

type nopObserver struct{}

func (nopObserver) BudgetWaited(time.Duration) {}
func (nopObserver) Polled(Snapshot, bool)      {}

func (o *Options) defaults() {
	if o.Budget == nil {
		o.Budget = rate.NewLimiter(18, 1)
	}
	setDefault(&o.MinInterval, time.Second)
	setDefault(&o.BackgroundInterval, 10*time.Second)
	setDefault(&o.Freshness, time.Second)
	setDefault(&o.Retention, 10*time.Minute)
	setDefault(&o.PollTimeout, 10*time.Second)
	setDefault(&o.MaxBackoff, 30*time.Second)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Snapshot is what the service knows of a task at one moment.
type Snapshot struct {
	TaskID int64
	// State is the last state the cloud reported; empty before the first
	// observation.
	State       cloud.Status
	DownloadURL string
	// RequestID is the RequestId of the last cloud answer about the task.
	RequestID string
	// Created is when the task was created through this service or first
	// seen by it.
	Created time.Time
	// Changed is when a change of state was last observed.
	Changed time.Time
	// Observed is when the cloud last answered about the task.
	Observed time.Time
	// LastPoll is when the cloud was last asked, successfully or not.
	LastPoll time.Time
	// NextPoll is when the cloud will next be asked; zero when the task is
	// not scheduled.
	NextPoll time.Time
	// Polls counts the cloud calls made for the task.
	Polls int64
	// Failures counts the polls in a row that failed.
	Failures int
	// LastErr is the error of the last poll, if it failed.
	LastErr error
	// Err is set when the task cannot be followed (for example the cloud
	// does not know it); the task is then over for its watchers.
	Err error
	// Pending is the number of tasks sharing the poll budget.
	Pending int
}

// Terminal reports whether the snapshot ends a watch.
func (s Snapshot) Terminal() bool {
	return s.Err != nil || s.State == cloud.StatusFinished || s.State == cloud.StatusError
}

// tier orders the scheduled entries: a lower tier is polled first.
type tier int

const (
	tierUrgent     tier = iota // a caller waits for a first or fresh observation
	tierWatched                // watch streams follow the task
	tierBackground             // only background interest
	tierNone                   // not scheduled
)

type entry struct {
	snap Snapshot
	// changed is closed and replaced when what watchers are told of
	// changes (state, URL, refusal); they wait on it instead of each
	// holding a channel of their own. Polls that change nothing wake no
	// watcher: heartbeats read the poll counts when they are due.
	changed chan struct{}
	// polled is closed and replaced after every poll, for the callers
	// waiting for a fresh observation.
	polled     chan struct{}
	watchers   int
	background bool
	// urgent is set while a caller waits for an observation newer than the
	// current one.
	urgent  bool
	polling bool
	tier    tier
	due     time.Time
	index   int // in its tier's heap
	// cadence is when the last poll was due: the next is due an interval
	// after it. Zero before the first poll. asked is when it was sent.
	cadence, asked time.Time
	// idle is when the last interest left; the entry is dropped Retention
	// after it.
	idle time.Time
	// retry paces polls after failures; nil while polls succeed.
	retry *backoff.ExponentialBackOff
}

// Tracker shares task observations among callers and schedules the polls.
// Run must be running for polls to happen.
type Tracker struct {
	opts  Options
	mu    sync.Mutex
	tasks map[int64]*entry
	heaps [tierNone]entryHeap
	// wake nudges the scheduler when the schedule changed.
	wake chan struct{}
	// inflight tracks polls running; Run waits for them before returning.
	inflight sync.WaitGroup
	// polling counts the polls running.
	polling int
	// space keeps polls 1/budget apart when the budget's wait ends late.
	space pace.Spacer
}

// New returns a tracker; start its scheduler with Run.
func New(opts Options) *Tracker {
	opts.defaults()
	return &Tracker{opts: opts, tasks: map[int64]*entry{}, wake: make(chan struct{}, 1)}
}

// Created records a task the service has just created: the cloud's answer
// says it exists and is pending, so no poll is needed to know that.
func (t *Tracker) Created(id int64, requestID string) Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	e := t.entryLocked(id, now)
	if e.snap.State != cloud.StatusPending {
		defer t.changedLocked(e)
	}
	e.snap.State = cloud.StatusPending
	e.snap.Err, e.snap.LastErr, e.snap.Failures = nil, nil, 0
	e.snap.RequestID = requestID
	e.snap.Created, e.snap.Changed, e.snap.Observed = now, now, now
	return t.snapshotLocked(e)
}

// Watch registers interest in a task until the returned Watch is closed.
// While any watch is open and the task is not terminal, it is polled.
func (t *Tracker) Watch(id int64) *Watch {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	e := t.entryLocked(id, now)
	e.watchers++
	if e.snap.State == "" && e.snap.Err == nil {
		e.urgent = true
	}
	t.rescheduleLocked(e, now)
	return &Watch{t: t, e: e}
}

// Follow keeps a task polled at background priority until it is terminal or
// Unfollow is called; created is when the task was created, if known.
func (t *Tracker) Follow(id int64, created time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	e := t.entryLocked(id, now)
	if e.snap.Created.IsZero() || (!created.IsZero() && created.Before(e.snap.Created)) {
		e.snap.Created = created
	}
	e.background = true
	t.rescheduleLocked(e, now)
}

// Unfollow ends background interest in a task.
func (t *Tracker) Unfollow(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.tasks[id]; ok && e.background {
		e.background = false
		t.rescheduleLocked(e, t.opts.Now())
	}
}

// Get returns the task's state: at once when the task is watched (its
// observation is as fresh as the budget allows), terminal, or observed within
// Freshness; otherwise after one poll. It returns the poll's error when the
// cloud refused, and on ctx's end the last transient failure, if any.
func (t *Tracker) Get(ctx context.Context, id int64) (Snapshot, error) {
	t.mu.Lock()
	now := t.opts.Now()
	e := t.entryLocked(id, now)
	if s := t.snapshotLocked(e); t.answerableLocked(e, now) {
		t.mu.Unlock()
		return s, s.Err
	}
	started := now
	e.watchers++
	e.urgent = true
	t.rescheduleLocked(e, now)
	t.mu.Unlock()
	w := &Watch{t: t, e: e}
	s, err := w.await(ctx, started)
	w.Close()
	// The answer's schedule is the one left after this Get's interest.
	t.mu.Lock()
	after := t.snapshotLocked(e)
	t.mu.Unlock()
	s.NextPoll, s.Pending = after.NextPoll, after.Pending
	return s, err
}

// await waits for an observation made after started, a refusal, or the end
// of ctx (then the last transient failure is the error, if any).
func (w *Watch) await(ctx context.Context, started time.Time) (Snapshot, error) {
	for {
		s, polled := w.afterPoll()
		switch {
		case s.Err != nil:
			return s, s.Err
		case !s.Observed.Before(started) && !s.Observed.IsZero():
			return s, nil
		}
		select {
		case <-polled:
		case <-ctx.Done():
			s, _ = w.afterPoll()
			if s.LastErr != nil {
				return s, s.LastErr
			}
			return s, ctx.Err()
		}
	}
}

func (t *Tracker) answerableLocked(e *entry, now time.Time) bool {
	s := e.snap
	switch {
	case s.Err != nil:
		return now.Sub(s.LastPoll) < t.opts.Freshness
	case s.Terminal():
		return true
	case s.State == "":
		return false
	case e.urgent:
		return false // a poll for a fresher answer is due: share it
	case e.watchers > 0:
		return true
	}
	// Background interest polls too rarely to stand for freshness.
	return now.Sub(s.Observed) < t.opts.Freshness
}

// Watch is one caller's interest in a task.
type Watch struct {
	t    *Tracker
	e    *entry
	once sync.Once
}

// Current returns the latest snapshot and a channel closed at the next
// change of the task's state, download URL or refusal.
func (w *Watch) Current() (Snapshot, <-chan struct{}) {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.snapshotLocked(w.e), w.e.changed
}

// afterPoll returns the latest snapshot and a channel closed after the next
// poll.
func (w *Watch) afterPoll() (Snapshot, <-chan struct{}) {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.snapshotLocked(w.e), w.e.polled
}

// Close ends the interest; the last one to leave stops the polling.
func (w *Watch) Close() {
	w.once.Do(func() {
		t := w.t
		t.mu.Lock()
		defer t.mu.Unlock()
		w.e.watchers--
		t.rescheduleLocked(w.e, t.opts.Now())
	})
}

// Stats is a count of the tracker's state, for metrics and tests.
type Stats struct {
	// Tasks is the number of cached entries.
	Tasks int
	// Scheduled is the number of tasks being polled.
	Scheduled int
	// Watchers is the number of open watches (and Gets waiting).
	Watchers int
}

// Stats returns current counts.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{Tasks: len(t.tasks)}
	s.Scheduled = t.scheduledLocked()
	for _, e := range t.tasks {
		s.Watchers += e.watchers
	}
	return s
}

func (t *Tracker) entryLocked(id int64, now time.Time) *entry {
	e, ok := t.tasks[id]
	if !ok {
		e = &entry{snap: Snapshot{TaskID: id, Created: now}, changed: make(chan struct{}), polled: make(chan struct{}), tier: tierNone, index: -1, idle: now}
		t.tasks[id] = e
	}
	if e.snap.Err != nil && e.watchers == 0 && now.Sub(e.snap.LastPoll) >= t.opts.Freshness {
		// A refusal is not remembered for long: the cloud may know the
		// task by now (or the credentials were fixed).
		e.snap.Err, e.snap.LastErr, e.snap.State = nil, nil, ""
	}
	return e
}

func (t *Tracker) snapshotLocked(e *entry) Snapshot {
	s := e.snap
	switch {
	case e.polling:
		s.NextPoll = t.opts.Now() // a poll is in flight
	case e.tier != tierNone:
		s.NextPoll = e.due
	}
	s.Pending = t.scheduledLocked()
	return s
}

// scheduledLocked counts the tasks sharing the budget: those waiting for
// their next poll and those being polled.
func (t *Tracker) scheduledLocked() int {
	return len(t.heaps[tierUrgent]) + len(t.heaps[tierWatched]) + len(t.heaps[tierBackground]) + t.polling
}

// rescheduleLocked puts e in the heap its interest and state call for, due
// at the earliest time the schedule allows.
func (t *Tracker) rescheduleLocked(e *entry, now time.Time) {
	want := tierNone
	switch {
	case e.snap.Terminal():
	case e.urgent:
		want = tierUrgent
	case e.watchers > 0:
		want = tierWatched
	case e.background:
		want = tierBackground
	}
	if want == tierNone && e.watchers == 0 && !e.background {
		e.idle = now
	}
	if e.polling {
		// The poll's completion reschedules; just remember the tier.
		e.tier = want
		return
	}
	due := now
	if last := latest(e.snap.LastPoll, e.snap.Observed); want != tierUrgent && e.snap.Failures == 0 && !last.IsZero() {
		// A new task's first poll also waits its share: polling it
		// earlier takes the slot from a task already waiting (measured:
		// notify latency p50 0.51 → 0.58 of the period with K = 100 and a
		// new task every second). A task never observed is polled at
		// once: it is urgent.
		iv := t.intervalLocked(e, want)
		next := last.Add(iv)
		if !e.cadence.IsZero() {
			// Keep the rhythm of the polls' due times, so that neither the
			// cloud's answer time nor the wait for the budget stretches
			// the period; but never ask twice within the floor.
			next = latest(e.cadence.Add(iv), e.asked.Add(t.floor(want)))
		}
		if next.After(due) {
			due = next
		}
	}
	if want == tierNone {
		t.unscheduleLocked(e)
		return
	}
	if e.tier == want && e.index >= 0 && !due.Before(e.due) && want != tierUrgent {
		return // already scheduled no later than needed
	}
	t.unscheduleLocked(e)
	e.tier, e.due = want, due
	t.heaps[want].push(e)
	t.nudge()
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (t *Tracker) unscheduleLocked(e *entry) {
	if e.index >= 0 && e.tier != tierNone {
		t.heaps[e.tier].remove(e)
	}
	e.tier = tierNone
}

// intervalLocked is the time between two polls of one task of tier tr:
// the floor, or the share of the budget the scheduled tasks leave it.
func (t *Tracker) intervalLocked(e *entry, tr tier) time.Duration {
	k := t.scheduledLocked()
	if e.index < 0 && !e.polling {
		k++ // e itself, about to be scheduled
	}
	share := time.Duration(float64(k) / float64(t.opts.Budget.Limit()) * float64(time.Second))
	return max(t.floor(tr), share)
}

// floor is the least time between two polls of one task of tier tr.
func (t *Tracker) floor(tr tier) time.Duration {
	if tr == tierBackground {
		return t.opts.BackgroundInterval
	}
	return t.opts.MinInterval
}

func (t *Tracker) nudge() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Run schedules polls until ctx ends, then waits for polls in flight.
func (t *Tracker) Run(ctx context.Context) {
	defer t.inflight.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		t.mu.Lock()
		e, wait := t.nextLocked(t.opts.Now())
		t.mu.Unlock()
		if e == nil {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
			case <-timer.C:
			case <-sweep.C:
				t.sweep()
			}
			continue
		}
		// Take the budget first, then pick again: the most urgent entry
		// gets the token even if it arrived during the wait.
		waitStart := time.Now()
		if err := t.opts.Budget.Wait(ctx); err != nil {
			return
		}
		if err := t.space.Wait(ctx, t.opts.Budget); err != nil {
			return
		}
		t.opts.Observer.BudgetWaited(time.Since(waitStart))
		t.mu.Lock()
		if e, _ = t.nextLocked(t.opts.Now()); e != nil {
			t.unscheduleLocked(e)
			e.tier = tierNone
			e.cadence, e.asked = e.due, t.opts.Now()
			e.polling = true
			t.polling++
			t.inflight.Add(1)
			go t.poll(ctx, e)
		}
		t.mu.Unlock()
	}
}

// nextLocked returns the entry to poll now, or how long to wait for one.
func (t *Tracker) nextLocked(now time.Time) (*entry, time.Duration) {
	// Callers waiting go first, but not forever: a watched task a whole
	// floor interval late takes its turn, so that a stream of Gets of
	// unwatched tasks cannot starve the watch streams.
	if h := t.heaps[tierWatched]; len(h) > 0 && now.Sub(h[0].due) >= t.opts.MinInterval && len(t.heaps[tierUrgent]) > 0 {
		return h[0], 0
	}
	wait := time.Hour
	for i := range t.heaps {
		h := t.heaps[i]
		if len(h) == 0 {
			continue
		}
		if d := h[0].due.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		return h[0], 0
	}
	return nil, wait
}

func (t *Tracker) poll(ctx context.Context, e *entry) {
	defer t.inflight.Done()
	id := e.snap.TaskID
	pctx, cancel := context.WithTimeout(ctx, t.opts.PollTimeout)
	st, err := t.opts.Cloud.ExportTasks(pctx, id)
	cancel()

	var (
		observed *Snapshot
		settled  bool
	)
	defer func() {
		// Deferred before the unlock, so it runs after it.
		if observed != nil {
			t.opts.Observer.Polled(*observed, settled)
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	e.polling = false
	t.polling--
	s := &e.snap
	wasTerminal := s.Terminal()
	s.Polls++
	s.LastPoll = now
	state, url, refused := s.State, s.DownloadURL, s.Err != nil
	switch {
	case err == nil:
		if st.Status != s.State {
			s.Changed = now
		}
		s.State, s.DownloadURL, s.RequestID = st.Status, st.DownloadURL, st.RequestID
		s.Observed = now
		s.Failures, s.LastErr, e.retry = 0, nil, nil
		e.urgent = false
	case ctx.Err() != nil:
		// Shutting down: leave the entry as it was.
	case cloud.Transient(err):
		s.Failures++
		s.LastErr = err
		if cloud.KindOf(err) == cloud.KindThrottled {
			// Others use the account's quota too: give up one slot of the
			// budget, so that every poll, not only this task's, slows down.
			t.opts.Budget.ReserveN(now, 1)
		}
		t.opts.Logger.Warn("poll failed; retrying", "task_id", id, "failures", s.Failures, "err", err)
	default:
		s.Err = err
		s.LastErr = err
		if rid := requestID(err); rid != "" {
			s.RequestID = rid
		}
		e.urgent = false
	}
	settled = !wasTerminal && s.Terminal()
	t.rescheduleLocked(e, now)
	if s.Failures > 0 && e.index >= 0 {
		// Back off with jitter, rather than at the budget's pace, so that
		// tasks failing together do not retry together.
		if e.retry == nil {
			e.retry = &backoff.ExponentialBackOff{InitialInterval: t.opts.MinInterval, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: t.opts.MaxBackoff}
			e.retry.Reset()
		}
		e.due = now.Add(e.retry.NextBackOff())
		t.heaps[e.tier].fix(e)
	}
	close(e.polled)
	e.polled = make(chan struct{})
	if s.State != state || s.DownloadURL != url || (s.Err != nil) != refused {
		t.changedLocked(e)
	}
	if err == nil || s.Err != nil {
		snap := t.snapshotLocked(e)
		observed = &snap
	}
}

// changedLocked wakes the watchers of e.
func (t *Tracker) changedLocked(e *entry) {
	close(e.changed)
	e.changed = make(chan struct{})
}

func requestID(err error) string {
	if e, ok := err.(*cloud.Error); ok {
		return e.RequestID
	}
	return ""
}

// sweep drops entries nobody has been interested in for Retention.
func (t *Tracker) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := t.opts.Now().Add(-t.opts.Retention)
	for id, e := range t.tasks {
		if e.watchers == 0 && !e.background && !e.polling && e.tier == tierNone && e.idle.Before(cutoff) {
			delete(t.tasks, id)
		}
	}
}
