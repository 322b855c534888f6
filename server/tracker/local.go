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

// Pacing is how a scheduler paces the polls of a task. Zero values take
// the defaults named.
type Pacing struct {
	// MinInterval is the floor between two polls of one task; default 1s.
	MinInterval time.Duration
	// BackgroundInterval is the floor for tasks kept only by background
	// interest; default 10s.
	BackgroundInterval time.Duration
	// PollTimeout bounds one cloud call; default 10s.
	PollTimeout time.Duration
	// MaxBackoff caps the delay after failed polls; default 5s, so that a
	// cloud that recovers is noticed within seconds (the budget still
	// paces every poll, retries included).
	MaxBackoff time.Duration
}

// WithDefaults returns p with the defaults in place of its zero values.
func (p Pacing) WithDefaults() Pacing {
	setDefault(&p.MinInterval, time.Second)
	setDefault(&p.BackgroundInterval, 10*time.Second)
	setDefault(&p.PollTimeout, 10*time.Second)
	setDefault(&p.MaxBackoff, 5*time.Second)
	return p
}

// Floor is the least time between two polls of a task of tier t.
func (p Pacing) Floor(t Tier) time.Duration {
	if t == TierBackground {
		return p.BackgroundInterval
	}
	return p.MinInterval
}

// Backoff is the delay before the retry after n polls of a task failed in
// a row: from 1.5 floors, doubling, capped at MaxBackoff, jittered by a
// third (so that tasks failing together do not retry together, and the
// first retry comes 1 to 2 floors later).
func (p Pacing) Backoff(n int) time.Duration {
	b := backoff.ExponentialBackOff{InitialInterval: p.MinInterval * 3 / 2, RandomizationFactor: 1.0 / 3, Multiplier: 2, MaxInterval: p.MaxBackoff}
	b.Reset()
	d := b.NextBackOff()
	for range n - 1 {
		d = b.NextBackOff()
	}
	return d
}

// LocalOptions configure a Local scheduler. Zero values take the defaults
// named.
type LocalOptions struct {
	// Cloud answers the polls.
	Cloud Reader
	// Budget paces all polls; nil means a budget.Local at budget.DefaultRate.
	Budget Budget
	// Pacing paces each task's polls.
	Pacing
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives poll failures; nil discards.
	Logger *slog.Logger
	// BudgetWaited, when set, is told how long each poll waited for the
	// budget. It runs on the scheduler's path: it must be quick.
	BudgetWaited func(time.Duration)
	// TracerProvider makes the polls' spans; nil means the global one.
	TracerProvider trace.TracerProvider
}

func (o *LocalOptions) defaults() {
	if o.Budget == nil {
		o.Budget = budget.MustNew(budget.Options{Rate: budget.DefaultRate})
	}
	o.Pacing = o.Pacing.WithDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BudgetWaited == nil {
		o.BudgetWaited = func(time.Duration) {}
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
}

// Local schedules the polls of this process alone. With K tasks scheduled
// and a budget of B reads per second, each task is polled about every
// max(MinInterval, K/B), keeping the cadence of its due times. Urgent tasks
// (a caller waits) go first, unless a watched task is a whole MinInterval
// late; background tasks use what the others leave.
type Local struct {
	opts  LocalOptions
	mu    sync.Mutex
	tasks map[int64]*schedEntry
	heaps [TierNone]entryHeap
	// wake nudges the scheduler when the schedule changed.
	wake chan struct{}
	// polling counts the polls running; inflight lets Run wait for them.
	polling  int
	inflight sync.WaitGroup
	tracer   trace.Tracer
	// gens numbers the entries: an entry forgotten and made again counts
	// its polls from 0 under a higher generation.
	gens int64
}

var _ Scheduler = (*Local)(nil)

// schedEntry is the schedule's state of one task.
type schedEntry struct {
	id      int64
	gen     int64
	tier    Tier // wanted
	queued  Tier // the heap it is in; TierNone when in none
	due     time.Time
	index   int // in its heap
	polling bool
	// cadence is when the last poll was due: the next is due an interval
	// after it. Zero before the first poll. asked is when it was sent.
	cadence, asked time.Time
	// lastPoll and observed: when the cloud was last asked, and last
	// answered (or, for a task just created, when it was known pending).
	lastPoll, observed time.Time
	polls              int64
	failures           int
	// status is the last state observed; refused, whether the last poll
	// was a refusal (both to tell a task's first terminal observation).
	status  cloud.Status
	url     string
	refused bool
	// retryAt is the earliest time of the next poll after failures; a
	// poll the cloud answers resets it. No change of interest moves a retry
	// earlier.
	retryAt time.Time
}

// NewLocal returns a scheduler for this process; start it with Run.
func NewLocal(opts LocalOptions) *Local {
	opts.defaults()
	return &Local{opts: opts, tasks: map[int64]*schedEntry{}, wake: make(chan struct{}, 1), tracer: opts.TracerProvider.Tracer(TracerName)}
}

func (l *Local) entryLocked(id int64) *schedEntry {
	e, ok := l.tasks[id]
	if !ok {
		l.gens++
		e = &schedEntry{id: id, gen: l.gens, tier: TierNone, queued: TierNone, index: -1}
		l.tasks[id] = e
	}
	return e
}

// Created implements Scheduler.
func (l *Local) Created(id int64, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(id)
	e.observed, e.status, e.refused, e.failures = at, cloud.StatusPending, false, 0
	l.rescheduleLocked(e, l.opts.Now())
}

// Want implements Scheduler.
func (l *Local) Want(id int64, tier Tier) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.tasks[id]
	if !ok && tier == TierNone {
		return
	}
	if !ok {
		e = l.entryLocked(id)
	}
	e.tier = tier
	l.rescheduleLocked(e, l.opts.Now())
}

// Forget implements Scheduler.
func (l *Local) Forget(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.tasks[id]; ok && !e.polling && e.tier == TierNone {
		l.unscheduleLocked(e)
		delete(l.tasks, id)
	}
}

// Next implements Scheduler.
func (l *Local) Next(id int64) (time.Time, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var next time.Time
	if e, ok := l.tasks[id]; ok {
		switch {
		case e.polling:
			next = l.opts.Now() // a poll is in flight
		case e.queued != TierNone:
			next = e.due
		}
	}
	return next, l.scheduledLocked()
}

// Lookup implements Scheduler: this process's observations are all in the
// tracker already.
func (l *Local) Lookup(context.Context, int64) (Poll, bool) { return Poll{}, false }

// Rate implements Scheduler.
func (l *Local) Rate() float64 { return l.opts.Budget.Rate() }

// Now implements Scheduler: this process's clock.
func (l *Local) Now() time.Time { return l.opts.Now() }

// scheduledLocked counts the tasks sharing the budget: those waiting for
// their next poll and those being polled.
func (l *Local) scheduledLocked() int {
	return len(l.heaps[TierUrgent]) + len(l.heaps[TierWatched]) + len(l.heaps[TierBackground]) + l.polling
}

// rescheduleLocked puts e in the heap its wanted tier calls for, due at the
// earliest time the schedule allows.
func (l *Local) rescheduleLocked(e *schedEntry, now time.Time) {
	want := e.tier
	if e.polling {
		return // the poll's completion reschedules
	}
	if want == TierNone {
		l.unscheduleLocked(e)
		return
	}
	due := now
	if last := latest(e.lastPoll, e.observed); want != TierUrgent && e.failures == 0 && !last.IsZero() {
		// A new task's first poll also waits its share: polling it
		// earlier takes the slot from a task already waiting (measured:
		// notify latency p50 0.51 → 0.58 of the period with K = 100 and a
		// new task every second). A task never observed is polled at
		// once: it is urgent.
		iv := l.intervalLocked(e, want)
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
		due = latest(due, e.asked.Add(l.opts.Floor(want)))
	}
	due = latest(due, e.retryAt)
	if e.queued == want && e.index >= 0 && !due.Before(e.due) && want != TierUrgent {
		return // already scheduled no later than needed
	}
	l.unscheduleLocked(e)
	e.queued, e.due = want, due
	l.heaps[want].push(e)
	l.nudge()
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (l *Local) unscheduleLocked(e *schedEntry) {
	if e.index >= 0 && e.queued != TierNone {
		l.heaps[e.queued].remove(e)
	}
	e.queued = TierNone
}

// intervalLocked is the time between two polls of one task of tier tr:
// the floor, or the share of the budget the scheduled tasks leave it.
func (l *Local) intervalLocked(e *schedEntry, tr Tier) time.Duration {
	k := l.scheduledLocked()
	if e.index < 0 && !e.polling {
		k++ // e itself, about to be scheduled
	}
	share := time.Duration(float64(k) / l.opts.Budget.Rate() * float64(time.Second))
	return max(l.opts.Floor(tr), share)
}

func (l *Local) nudge() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// budgetRetry is the pause after the budget refused a poll for another
// reason than the scheduler's end.
const budgetRetry = time.Second

// Run implements Scheduler: it polls due tasks until ctx ends, then waits
// for polls in flight. A budget that refuses a poll is logged and asked
// again.
func (l *Local) Run(ctx context.Context, report func(Poll)) {
	defer l.inflight.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.mu.Lock()
		e, wait := l.nextLocked(l.opts.Now())
		l.mu.Unlock()
		if e == nil {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-l.wake:
			case <-timer.C:
			}
			continue
		}
		// Take the budget first, then pick again: the most urgent entry
		// gets the token even if it arrived during the wait.
		waitStart := time.Now()
		if err := l.opts.Budget.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			l.opts.Logger.Error("the read budget refused a poll; polls wait", "err", err, "retry_in", budgetRetry)
			timer.Reset(budgetRetry)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			continue
		}
		l.opts.BudgetWaited(time.Since(waitStart))
		l.mu.Lock()
		if e, _ = l.nextLocked(l.opts.Now()); e != nil {
			l.unscheduleLocked(e)
			e.cadence, e.asked = e.due, l.opts.Now()
			e.polling = true
			l.polling++
			l.inflight.Add(1)
			go l.poll(ctx, e, report)
		}
		l.mu.Unlock()
	}
}

// nextLocked returns the entry to poll now, or how long to wait for one.
func (l *Local) nextLocked(now time.Time) (*schedEntry, time.Duration) {
	// Callers waiting go first, but not forever: a watched task a whole
	// floor interval late takes its turn, so that a stream of Gets of
	// unwatched tasks cannot starve the watch streams.
	if h := l.heaps[TierWatched]; len(h) > 0 && now.Sub(h[0].due) >= l.opts.MinInterval && len(l.heaps[TierUrgent]) > 0 {
		return h[0], 0
	}
	wait := time.Hour
	for i := range l.heaps {
		h := l.heaps[i]
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

// poll asks the cloud for e's state and reports the outcome.
func (l *Local) poll(ctx context.Context, e *schedEntry, report func(Poll)) {
	defer l.inflight.Done()
	sctx, span := StartPoll(ctx, l.tracer, e.id, e.asked.Sub(e.cadence))
	// The span ends before the poll is reported: what reports it links to
	// a span already recorded.
	st, err := ReadWithin(sctx, l.opts.Cloud, e.id, l.opts.PollTimeout)

	l.mu.Lock()
	now := l.opts.Now()
	e.polling = false
	l.polling--
	if ctx.Err() != nil {
		// Shutting down: leave the entry as it was.
		l.mu.Unlock()
		span.End()
		return
	}
	e.polls++
	e.lastPoll = now
	wasTerminal := e.refused || e.status == cloud.StatusFinished || e.status == cloud.StatusError
	status, url, refused := e.status, e.url, e.refused
	p := Poll{TaskID: e.id, Local: true, At: now, Polls: e.polls, Gen: e.gen}
	switch {
	case err == nil:
		p.Status = st
		e.status, e.url, e.refused, e.observed = st.Status, st.DownloadURL, false, now
		e.failures, e.retryAt = 0, time.Time{}
	case cloud.Transient(err):
		e.failures++
		p.Transient = err
		if cloud.KindOf(err) == cloud.KindThrottled {
			// Others use the account's quota too: every poll, not only
			// this task's, slows down.
			l.opts.Budget.Throttled()
		}
		e.retryAt = now.Add(l.opts.Backoff(e.failures))
		l.opts.Logger.WarnContext(sctx, "poll failed; retrying", "task_id", e.id, "failures", e.failures, "err", err)
	default:
		p.Err = err
		e.refused = true
	}
	p.Failures = e.failures
	p.Settled = !wasTerminal && (e.refused || e.status == cloud.StatusFinished || e.status == cloud.StatusError)
	p.Change = e.status != status || e.url != url || e.refused != refused
	l.rescheduleLocked(e, now)
	p.NextPoll, p.Pending = time.Time{}, l.scheduledLocked()
	if e.queued != TierNone {
		p.NextPoll = e.due
	}
	l.mu.Unlock()
	p.Span = span.SpanContext()
	EndPoll(span, p)
	span.End()
	report(p)
}

// ReadWithin asks the cloud for task id's state within timeout. A call that
// outlasts its own timeout (not ctx's end) is a transient failure: the
// cloud is slow.
func ReadWithin(ctx context.Context, r Reader, id int64, timeout time.Duration) (cloud.TaskStatus, error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := r.ExportTasks(pctx, id)
	if err != nil && ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		err = &cloud.Error{Action: cloud.ActionExportTasks, Code: cloud.CodeTimeout,
			Message: fmt.Sprintf("the cloud did not answer within %s", timeout)}
	}
	return st, err
}

// TracerName names the tracer of the polls' spans.
const TracerName = "github.com/cwpexport/cwpexport/server/tracker"

// StartPoll starts a poll's span. A poll serves whoever follows the task,
// not one request: it is a trace of its own, which the watches that report
// it link to. late is from when the poll was due to when it was sent: the
// wait for the read budget and for the other tasks' turns.
func StartPoll(ctx context.Context, tracer trace.Tracer, id int64, late time.Duration) (context.Context, trace.Span) {
	return tracer.Start(ctx, "poll "+cloud.ActionExportTasks, trace.WithNewRoot(), trace.WithAttributes(
		attribute.Int64(cloud.AttrTaskID, id),
		attribute.Float64("cwpexport.poll.late_ms", float64(late.Microseconds())/1000),
	))
}

// EndPoll records what the poll observed on its span (the caller ends it).
func EndPoll(span trace.Span, p Poll) {
	span.SetAttributes(
		attribute.Int64("cwpexport.poll.number", p.Polls),
		attribute.Bool("cwpexport.poll.changed", p.Change),
		attribute.Int("cwpexport.poll.failures", p.Failures),
	)
}
