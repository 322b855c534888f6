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
//
// Each poll is a root span "poll ExportTasks" with the cloud call as its
// child; a snapshot names the poll that observed its last change
// (Snapshot.ChangeSpan), so that what reports the change can link to it.
package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// Reader reads an export task's state from the cloud.
type Reader interface {
	ExportTasks(ctx context.Context, taskID int64) (cloud.TaskStatus, error)
}

// Budget paces the polls (the cloud's ExportTasks quota is per account) and
// learns when the cloud throttles them.
type Budget interface {
	// Wait blocks until a poll may start; an error means it must not.
	Wait(ctx context.Context) error
	// Throttled reports a poll the cloud refused for its rate limit.
	Throttled()
	// Rate is the effective rate now, in polls per second.
	Rate() float64
}

// Options configure a Tracker. Zero values take the defaults named.
type Options struct {
	// Cloud answers the polls.
	Cloud Reader
	// Budget paces all polls; nil means budget.New at 18 per second.
	Budget Budget
	// MinInterval is the floor between two polls of one task; default 1s.
	MinInterval time.Duration
	// BackgroundInterval is the floor for tasks kept only by background
	// interest; default 10s.
	BackgroundInterval time.Duration
	// Freshness: an unwatched task observed more recently than this is
	// answered without asking the cloud; default 1s.
	Freshness time.Duration
	// Retention is how long an entry nobody is interested in stays cached
	// (terminal states are answered from it); default 10m. Entries never
	// observed are dropped as soon as nobody is interested.
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
	// TracerProvider makes the polls' spans; nil means the global one.
	TracerProvider trace.TracerProvider
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
		o.Budget = budget.MustNew(budget.Options{Rate: 18})
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
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
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
	// Rate is the poll budget's rate now, in polls per second.
	Rate float64
	// ChangeSpan is the span of the poll that observed the last change of
	// state, download URL or refusal; invalid when no traced poll did
	// (the change came from the creation, or tracing is off).
	ChangeSpan trace.SpanContext
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
	polled chan struct{}
	// watchers counts open watches; waiters counts callers waiting for an
	// observation newer than the current one (Get, Refresh). The task is
	// urgent only while a waiter waits, or while a watcher waits for its
	// first observation: urgency belongs to the callers, and leaves with
	// them.
	watchers, waiters int
	background        bool
	polling           bool
	tier              tier
	due               time.Time
	index             int // in its tier's heap
	// cadence is when the last poll was due: the next is due an interval
	// after it. Zero before the first poll. asked is when it was sent.
	cadence, asked time.Time
	// idle is when the last interest left; the entry is dropped Retention
	// after it.
	idle time.Time
	// retry paces polls after failures and retryAt is the earliest time of
	// the next one; both are reset by a poll the cloud answers. No change
	// of interest moves a retry earlier.
	retry   *backoff.ExponentialBackOff
	retryAt time.Time
}

// interested reports whether anyone wants the task followed or answered.
func (e *entry) interested() bool { return e.watchers > 0 || e.waiters > 0 || e.background }

// urgent reports whether a caller is waiting for an observation.
func (e *entry) urgent() bool {
	return e.waiters > 0 || (e.watchers > 0 && e.snap.State == "" && e.snap.Err == nil)
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
	tracer  trace.Tracer
}

// New returns a tracker; start its scheduler with Run.
func New(opts Options) *Tracker {
	opts.defaults()
	return &Tracker{opts: opts, tasks: map[int64]*entry{}, wake: make(chan struct{}, 1),
		tracer: opts.TracerProvider.Tracer("github.com/cwpexport/cwpexport/server/tracker")}
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
	e.snap.ChangeSpan = trace.SpanContext{}
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
	return t.await(ctx, id, false)
}

// Refresh returns the task's state after a poll made for it now, whatever
// the task's state and the freshness of its observation: a finished task's
// download URL expires, and a new one needs a new answer of the cloud. The
// poll takes its turn in the budget like any other.
func (t *Tracker) Refresh(ctx context.Context, id int64) (Snapshot, error) {
	return t.await(ctx, id, true)
}

func (t *Tracker) await(ctx context.Context, id int64, force bool) (Snapshot, error) {
	t.mu.Lock()
	now := t.opts.Now()
	e := t.entryLocked(id, now)
	if s := t.snapshotLocked(e); !force && t.answerableLocked(e, now) {
		t.mu.Unlock()
		return s, s.Err
	}
	if force {
		// An earlier refusal is no answer to a request for a new one.
		e.snap.Err = nil
	}
	e.waiters++
	t.rescheduleLocked(e, now)
	t.mu.Unlock()
	s, err := (&Watch{t: t, e: e}).await(ctx, now)
	// The caller's urgency leaves with it; the answer's schedule is the one
	// left after it.
	t.mu.Lock()
	e.waiters--
	t.rescheduleLocked(e, t.opts.Now())
	after := t.snapshotLocked(e)
	t.mu.Unlock()
	s.NextPoll, s.Pending, s.Rate = after.NextPoll, after.Pending, after.Rate
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
	case e.waiters > 0:
		return false // a poll for a fresher answer is due: share it
	case e.watchers > 0:
		return true
	}
	// Background interest polls too rarely to stand for freshness.
	return now.Sub(s.Observed) < t.opts.Freshness
}

// Peek returns what the tracker knows of a task, without asking the cloud
// or registering interest; a task it does not hold has an empty snapshot.
func (t *Tracker) Peek(id int64) Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.tasks[id]; ok {
		return t.snapshotLocked(e)
	}
	return Snapshot{TaskID: id, Pending: t.scheduledLocked(), Rate: t.opts.Budget.Rate()}
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
	// Watchers is the number of open watches and callers waiting for a
	// poll.
	Watchers int
}

// Stats returns current counts.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{Tasks: len(t.tasks)}
	s.Scheduled = t.scheduledLocked()
	for _, e := range t.tasks {
		s.Watchers += e.watchers + e.waiters
	}
	return s
}

func (t *Tracker) entryLocked(id int64, now time.Time) *entry {
	e, ok := t.tasks[id]
	if !ok {
		e = &entry{snap: Snapshot{TaskID: id, Created: now}, changed: make(chan struct{}), polled: make(chan struct{}), tier: tierNone, index: -1, idle: now}
		t.tasks[id] = e
	}
	if e.snap.Err != nil && e.watchers == 0 && e.waiters == 0 && now.Sub(e.snap.LastPoll) >= t.opts.Freshness {
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
	s.Rate = t.opts.Budget.Rate()
	return s
}

// scheduledLocked counts the tasks sharing the budget: those waiting for
// their next poll and those being polled.
func (t *Tracker) scheduledLocked() int {
	return len(t.heaps[tierUrgent]) + len(t.heaps[tierWatched]) + len(t.heaps[tierBackground]) + t.polling
}

// rescheduleLocked puts e in the heap its interest and state call for, due
// at the earliest time the schedule allows, or drops it when nobody is
// interested in a task never observed (there is nothing to keep).
func (t *Tracker) rescheduleLocked(e *entry, now time.Time) {
	want := tierNone
	switch {
	case e.waiters > 0:
		// A caller waits for a new answer, even of a terminal task.
		want = tierUrgent
	case e.snap.Terminal():
	case e.urgent():
		want = tierUrgent
	case e.watchers > 0:
		want = tierWatched
	case e.background:
		want = tierBackground
	}
	if !e.interested() {
		e.idle = now
	}
	if e.polling {
		// The poll's completion reschedules; just remember the tier.
		e.tier = want
		return
	}
	if want == tierNone {
		t.unscheduleLocked(e)
		if !e.interested() && e.snap.State == "" && e.snap.Err == nil {
			delete(t.tasks, e.snap.TaskID)
		}
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
			// the period.
			next = latest(next, e.cadence.Add(iv))
		}
		due = latest(due, next)
	}
	// Whatever the tier and whoever joins or leaves: never ask twice within
	// the floor, and never before a failed poll's backoff is over.
	if !e.asked.IsZero() {
		due = latest(due, e.asked.Add(t.floor(want)))
	}
	due = latest(due, e.retryAt)
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
	share := time.Duration(float64(k) / t.opts.Budget.Rate() * float64(time.Second))
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

// budgetRetry is the pause after the budget refused a poll for another
// reason than the scheduler's end (a shared budget that cannot be reached).
const budgetRetry = time.Second

// Run schedules polls until ctx ends, then waits for polls in flight. It
// stops only when ctx ends: a budget that refuses a poll is logged and
// asked again.
func (t *Tracker) Run(ctx context.Context) {
	defer t.inflight.Wait()
	housekeeping := make(chan struct{})
	go func() { defer close(housekeeping); t.housekeep(ctx) }()
	defer func() { <-housekeeping }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
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
			}
			continue
		}
		// Take the budget first, then pick again: the most urgent entry
		// gets the token even if it arrived during the wait.
		waitStart := time.Now()
		if err := t.opts.Budget.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			t.opts.Logger.Error("the read budget refused a poll; polls wait", "err", err, "retry_in", budgetRetry)
			timer.Reset(budgetRetry)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			continue
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

// housekeep sweeps idle entries on its own schedule, so that a backlog of
// polls never delays it, until ctx ends.
func (t *Tracker) housekeep(ctx context.Context) {
	tick := time.NewTicker(min(time.Minute, t.opts.Retention/2))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.sweep()
		}
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
	// A poll serves whoever follows the task, not one request: it is a
	// trace of its own, which the watches that report it link to.
	sctx, span := t.tracer.Start(ctx, "poll "+cloud.ActionExportTasks, trace.WithNewRoot(), trace.WithAttributes(
		attribute.Int64(cloud.AttrTaskID, id),
		// From when it was due to when it was sent: the wait for the read
		// budget and for the other tasks' turns.
		attribute.Float64("cwpexport.poll.late_ms", float64(e.asked.Sub(e.cadence).Microseconds())/1000),
	))
	pctx, cancel := context.WithTimeout(sctx, t.opts.PollTimeout)
	st, err := t.opts.Cloud.ExportTasks(pctx, id)
	if err != nil && ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		// The poll's own timeout, not the caller's: the cloud is slow, a
		// transient fault like any other.
		err = &cloud.Error{Action: cloud.ActionExportTasks, Code: cloud.CodeTimeout,
			Message: fmt.Sprintf("the cloud did not answer within %s", t.opts.PollTimeout)}
	}
	cancel()

	var (
		observed *Snapshot
		settled  bool
	)
	defer func() {
		// Deferred before the unlock, so it runs after it.
		span.End()
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
		s.Failures, s.LastErr, e.retry, e.retryAt = 0, nil, nil, time.Time{}
	case ctx.Err() != nil:
		// Shutting down: leave the entry as it was.
	case cloud.Transient(err):
		s.Failures++
		s.LastErr = err
		if cloud.KindOf(err) == cloud.KindThrottled {
			// Others use the account's quota too: every poll, not only
			// this task's, slows down.
			t.opts.Budget.Throttled()
		}
		// Back off with jitter, so that tasks failing together do not
		// retry together; the first retry comes 1 to 2 floors later.
		if e.retry == nil {
			e.retry = &backoff.ExponentialBackOff{InitialInterval: t.opts.MinInterval * 3 / 2, RandomizationFactor: 1.0 / 3, Multiplier: 2, MaxInterval: t.opts.MaxBackoff}
			e.retry.Reset()
		}
		e.retryAt = now.Add(e.retry.NextBackOff())
		t.opts.Logger.WarnContext(sctx, "poll failed; retrying", "task_id", id, "failures", s.Failures, "err", err)
	default:
		s.Err = err
		s.LastErr = err
		if rid := requestID(err); rid != "" {
			s.RequestID = rid
		}
	}
	settled = !wasTerminal && s.Terminal()
	t.rescheduleLocked(e, now)
	close(e.polled)
	e.polled = make(chan struct{})
	changed := s.State != state || s.DownloadURL != url || (s.Err != nil) != refused
	if changed {
		s.ChangeSpan = span.SpanContext()
		t.changedLocked(e)
	}
	span.SetAttributes(
		attribute.Int64("cwpexport.poll.number", s.Polls),
		attribute.Bool("cwpexport.poll.changed", changed),
		attribute.Int("cwpexport.poll.failures", s.Failures),
	)
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

// sweep drops entries nobody has been interested in for Retention, and
// refusals nobody has asked about within Freshness.
func (t *Tracker) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	cutoff := now.Add(-t.opts.Retention)
	for id, e := range t.tasks {
		if e.interested() || e.polling || e.tier != tierNone {
			continue
		}
		if e.idle.Before(cutoff) || (e.snap.Err != nil && now.Sub(e.snap.LastPoll) >= t.opts.Freshness) {
			delete(t.tasks, id)
		}
	}
}
