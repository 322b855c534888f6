// Package tracker keeps one shared observation of each export task, whatever
// the number of callers interested in it, and has it polled by a Scheduler.
//
// Every watch stream and every GetExportTask of a task reads the same entry.
// The tracker tells its scheduler how strongly it wants each task polled —
// urgent while a caller waits for an observation (a Get of a stale task, a
// watch of a task never observed), watched while watch streams follow it,
// background while the registry follows it — and applies what the polls
// observe. Watchers are woken only when what they report changes.
//
// The scheduler decides when the cloud is asked: Local does it for this
// process alone; a fleet of processes shares one schedule (package fleet),
// and then an entry also learns what other processes' polls observed.
//
// One clock: every time an entry stores or compares is read from the
// scheduler's clock (Scheduler.Now: the database's, for a fleet), and the
// order of observations is the schedule's (Poll.Gen, Poll.Polls), never a
// comparison of clocks.
//
// Each poll is a root span "poll ExportTasks" with the cloud call as its
// child; a snapshot names the poll that observed its last change
// (Snapshot.ChangeSpan), so that what reports the change can link to it.
package tracker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// Options configure a Tracker. Zero values take the defaults named.
type Options struct {
	// Scheduler polls the tasks: a Local one, or a fleet's; required.
	Scheduler Scheduler
	// Freshness: an unwatched task observed more recently than this is
	// answered without asking the cloud; default 1s.
	Freshness time.Duration
	// Retention is how long an entry nobody is interested in stays cached
	// (terminal states are answered from it); default 10m. Entries never
	// observed are dropped as soon as nobody is interested. An ended task
	// kept only by background interest that is not renewed (Follow) within
	// Retention is dropped too: the registry follows only what it has not
	// recorded as ended.
	Retention time.Duration
	// ReadWait bounds how long Read waits for a new poll when the task was
	// observed before or its last poll failed: then it answers what was
	// last observed (Snapshot.Observed says how old it is), or the poll's
	// failure. Default 1s.
	ReadWait time.Duration
	// Logger receives poll failures; nil discards.
	Logger *slog.Logger
	// Observer is told about the tracker's work (metrics, the registry);
	// nil ignores.
	Observer Observer
}

// Observer is told about the tracker's work.
type Observer interface {
	// Polled reports the task's snapshot after a poll this process made
	// that the cloud answered or refused; settled is true for the task's
	// first terminal observation (FINISHED, ERROR, or an error that ends
	// its watches). It runs outside the tracker's lock, and may call the
	// Tracker.
	//
	// Endings are reported by every process that learns them while it
	// follows the task (Follow), whoever polled: with settled false when
	// another process's poll observed it, and again at each Follow of a
	// task that already ended (the follower has not recorded it yet), so
	// that a lost or failed record is made again. Recording an ending must
	// therefore be idempotent; the observer ends the background interest
	// (Unfollow) once the ending is recorded.
	Polled(s Snapshot, settled bool)
}

type nopObserver struct{}

func (nopObserver) Polled(Snapshot, bool) {}

func (o *Options) defaults() {
	setDefault(&o.Freshness, time.Second)
	setDefault(&o.Retention, 10*time.Minute)
	setDefault(&o.ReadWait, time.Second)
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
	// tier is what the scheduler was last told.
	tier Tier
	// idle is when the last interest left; the entry is dropped Retention
	// after it. followed is when background interest was last renewed
	// (Follow).
	idle, followed time.Time
	// gen is the generation of the schedule whose polls the entry holds
	// (Poll.Gen); observations counts the observations applied, so that a
	// caller waits for one made after it came without comparing clocks.
	gen          int64
	observations uint64
}

// interested reports whether anyone wants the task followed or answered.
func (e *entry) interested() bool { return e.watchers > 0 || e.waiters > 0 || e.background }

// want is the tier e's interest and state call for.
func (e *entry) want() Tier {
	switch {
	case e.waiters > 0:
		// A caller waits for a new answer, even of a terminal task.
		return TierUrgent
	case e.snap.Terminal():
		return TierNone
	case e.watchers > 0 && e.snap.State == "" && e.snap.Err == nil:
		return TierUrgent
	case e.watchers > 0:
		return TierWatched
	case e.background:
		return TierBackground
	}
	return TierNone
}

// Tracker shares task observations among callers and has the tasks polled.
// Run must be running for polls to happen.
type Tracker struct {
	opts  Options
	sched Scheduler
	mu    sync.Mutex
	tasks map[int64]*entry
}

// New returns a tracker; start its scheduler with Run. opts.Scheduler must
// be set.
func New(opts Options) *Tracker {
	if opts.Scheduler == nil {
		panic("tracker: Options.Scheduler is required")
	}
	opts.defaults()
	return &Tracker{opts: opts, sched: opts.Scheduler, tasks: map[int64]*entry{}}
}

// Now is the tracker's clock: its scheduler's (the database's, for a
// fleet). Times recorded about tasks shared with other processes are read
// from it.
func (t *Tracker) Now() time.Time { return t.sched.Now() }

// Created records a task the service has just created: the cloud's answer
// says it exists and is pending, so no poll is needed to know that.
func (t *Tracker) Created(id int64, requestID string) Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.sched.Now()
	e := t.entryLocked(id, now)
	if e.snap.State != cloud.StatusPending {
		defer t.changedLocked(e)
	}
	e.snap.State = cloud.StatusPending
	e.snap.Err, e.snap.LastErr, e.snap.Failures = nil, nil, 0
	e.snap.RequestID = requestID
	e.snap.Created, e.snap.Changed, e.snap.Observed = now, now, now
	e.snap.ChangeSpan = trace.SpanContext{}
	t.sched.Created(id, now)
	return t.snapshotLocked(e)
}

// Watch registers interest in a task until the returned Watch is closed.
// While any watch is open and the task is not terminal, it is polled.
func (t *Tracker) Watch(id int64) *Watch {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.sched.Now()
	e := t.entryLocked(id, now)
	e.watchers++
	t.interestLocked(e, now)
	return &Watch{t: t, e: e}
}

// Follow keeps a task polled at background priority until it is terminal or
// Unfollow is called; created is when the task was created, if known.
//
// Following a task that already ended reports its ending to the observer
// again: the follower (the registry) has not recorded it yet.
func (t *Tracker) Follow(id int64, created time.Time) {
	t.mu.Lock()
	now := t.sched.Now()
	e := t.entryLocked(id, now)
	if e.snap.Created.IsZero() || (!created.IsZero() && created.Before(e.snap.Created)) {
		e.snap.Created = created
	}
	e.background, e.followed = true, now
	t.interestLocked(e, now)
	ended, snap := e.snap.Terminal(), t.snapshotLocked(e)
	t.mu.Unlock()
	if ended {
		t.opts.Observer.Polled(snap, false)
	}
}

// Unfollow ends background interest in a task.
func (t *Tracker) Unfollow(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.tasks[id]; ok && e.background {
		e.background = false
		t.interestLocked(e, t.sched.Now())
	}
}

// Get returns the task's state: at once when the task is watched (its
// observation is as fresh as the budget allows), terminal, or observed within
// Freshness; otherwise after one poll. It returns the poll's error when the
// cloud refused, and on ctx's end the last transient failure, if any.
func (t *Tracker) Get(ctx context.Context, id int64) (Snapshot, error) {
	return t.await(ctx, id, false, 0)
}

// Read is Get for a caller that set no deadline of its own: it waits at
// most ReadWait for a new poll when it has something to answer — the
// state last observed (by any process sharing the schedule; its Observed
// says how old it is), or the last poll's failure — so that an outage of
// the cloud or a backoff never holds a read for long. A task never
// observed and never polled is waited for until ctx ends.
func (t *Tracker) Read(ctx context.Context, id int64) (Snapshot, error) {
	return t.await(ctx, id, false, t.opts.ReadWait)
}

// Refresh returns the task's state after a poll made for it now, whatever
// the task's state and the freshness of its observation: a finished task's
// download URL expires, and a new one needs a new answer of the cloud. The
// poll takes its turn in the budget like any other.
func (t *Tracker) Refresh(ctx context.Context, id int64) (Snapshot, error) {
	return t.await(ctx, id, true, 0)
}

func (t *Tracker) await(ctx context.Context, id int64, force bool, patience time.Duration) (Snapshot, error) {
	t.mu.Lock()
	now := t.sched.Now()
	e := t.entryLocked(id, now)
	if s := t.snapshotLocked(e); !force && t.answerableLocked(e, now) {
		t.mu.Unlock()
		return s, s.Err
	}
	t.mu.Unlock()
	if !force {
		// Another process may share a fresh observation: no poll needed.
		if p, ok := t.sched.Lookup(ctx, id); ok {
			t.apply(p)
			t.mu.Lock()
			e = t.entryLocked(id, t.sched.Now())
			s, answerable := t.snapshotLocked(e), t.answerableLocked(e, t.sched.Now())
			t.mu.Unlock()
			if answerable {
				return s, s.Err
			}
		}
	}
	t.mu.Lock()
	now = t.sched.Now()
	e = t.entryLocked(id, now)
	if force {
		// An earlier refusal is no answer to a request for a new one.
		e.snap.Err = nil
	}
	e.waiters++
	since := e.observations
	t.interestLocked(e, now)
	t.mu.Unlock()
	s, err := (&Watch{t: t, e: e}).await(ctx, since, patience)
	// The caller's urgency leaves with it; the answer's schedule is the one
	// left after it.
	t.mu.Lock()
	e.waiters--
	t.interestLocked(e, t.sched.Now())
	after := t.snapshotLocked(e)
	t.mu.Unlock()
	s.NextPoll, s.Pending, s.Rate = after.NextPoll, after.Pending, after.Rate
	return s, err
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
	_, pending := t.sched.Next(id)
	return Snapshot{TaskID: id, Pending: pending, Rate: t.sched.Rate()}
}

// Stats is a count of the tracker's state, for metrics and tests.
type Stats struct {
	// Tasks is the number of cached entries.
	Tasks int
	// Scheduled is the number of tasks being polled (by the whole fleet,
	// when the schedule is shared).
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
	_, s.Scheduled = t.sched.Next(0)
	for _, e := range t.tasks {
		s.Watchers += e.watchers + e.waiters
	}
	return s
}

func (t *Tracker) entryLocked(id int64, now time.Time) *entry {
	e, ok := t.tasks[id]
	if !ok {
		e = &entry{snap: Snapshot{TaskID: id, Created: now}, changed: make(chan struct{}), polled: make(chan struct{}), tier: TierNone, idle: now}
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
	s.NextPoll, s.Pending = t.sched.Next(e.snap.TaskID)
	s.Rate = t.sched.Rate()
	return s
}

// interestLocked tells the scheduler the tier e now calls for, and drops e
// when nobody is interested in a task never observed (there is nothing to
// keep).
func (t *Tracker) interestLocked(e *entry, now time.Time) {
	want := e.want()
	if !e.interested() {
		e.idle = now
	}
	if want != e.tier || want == TierUrgent {
		e.tier = want
		t.sched.Want(e.snap.TaskID, want)
	}
	if !e.interested() && e.snap.State == "" && e.snap.Err == nil {
		delete(t.tasks, e.snap.TaskID)
		t.sched.Forget(e.snap.TaskID)
	}
}

// Run has the tasks polled until ctx ends, then waits for polls in flight.
func (t *Tracker) Run(ctx context.Context) {
	housekeeping := make(chan struct{})
	go func() { defer close(housekeeping); t.housekeep(ctx) }()
	defer func() { <-housekeeping }()
	t.sched.Run(ctx, t.apply)
}

// apply records what a poll observed in the task's entry, wakes who must
// know, and tells the observer about this process's polls.
func (t *Tracker) apply(p Poll) {
	t.mu.Lock()
	e, ok := t.tasks[p.TaskID]
	var (
		snap  Snapshot
		ended bool
	)
	if ok {
		before := e.snap.Terminal()
		snap = t.applyLocked(e, p)
		// Every process that follows a task records its ending, whoever
		// polled: the poller may die, or fail to record it.
		ended = !p.Local && e.background && !before && snap.Terminal()
	}
	t.mu.Unlock()
	if !p.Local {
		if ended {
			t.opts.Observer.Polled(snap, false)
		}
		return
	}
	if !ok {
		// A task this process polled but holds no entry of (it was swept
		// during the poll, or the poll was the fleet's).
		t.sched.Forget(p.TaskID)
	}
	if p.Err == nil && p.Transient != nil {
		return
	}
	if !ok {
		snap = p.snapshot()
		_, snap.Pending = t.sched.Next(p.TaskID)
		snap.Rate = t.sched.Rate()
	}
	t.opts.Observer.Polled(snap, p.Settled)
}

func (t *Tracker) applyLocked(e *entry, p Poll) Snapshot {
	s := &e.snap
	if p.Gen < e.gen || (p.Gen == e.gen && p.Polls < s.Polls) {
		return t.snapshotLocked(e) // an older poll's news, arriving late
	}
	// A later poll, or a later generation of the task's schedule (which
	// counts its polls from 0 again): news, whatever the times say.
	newer := p.Gen > e.gen || p.Polls > s.Polls
	e.gen = p.Gen
	s.Polls, s.LastPoll, s.Failures = p.Polls, p.At, p.Failures
	state, url, refused := s.State, s.DownloadURL, s.Err != nil
	if p.Err != nil {
		s.Err, s.LastErr = p.Err, p.Err
		if rid := requestID(p.Err); rid != "" {
			s.RequestID = rid
		}
	} else {
		// A poll that failed may still carry the state observed before
		// (another process's shared observation); a successful one is
		// observed when it ended.
		observed := p.Observed
		if observed.IsZero() && p.Transient == nil {
			observed = p.At
		}
		if p.Status.Status != "" && (newer || !observed.Before(s.Observed)) {
			if newer && p.Polls > 0 && p.Transient == nil {
				e.observations++
			}
			changed := p.Changed
			if p.Status.Status != s.State && changed.IsZero() {
				changed = observed
			}
			if !changed.IsZero() {
				s.Changed = changed
			}
			s.State, s.DownloadURL, s.RequestID = p.Status.Status, p.Status.DownloadURL, p.Status.RequestID
			s.Observed, s.Err = observed, nil
		}
		s.LastErr = p.Transient
	}
	t.interestLocked(e, t.sched.Now())
	close(e.polled)
	e.polled = make(chan struct{})
	if s.State != state || s.DownloadURL != url || (s.Err != nil) != refused {
		s.ChangeSpan = p.Span
		t.changedLocked(e)
	}
	return t.snapshotLocked(e)
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

// sweep drops entries nobody has been interested in for Retention,
// refusals nobody has asked about within Freshness, and ended tasks whose
// only interest, background, was not renewed within Retention (the
// follower learnt the ending, from this process or another).
func (t *Tracker) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.sched.Now()
	cutoff := now.Add(-t.opts.Retention)
	for id, e := range t.tasks {
		if e.background && e.watchers == 0 && e.waiters == 0 && e.snap.Terminal() && e.followed.Before(cutoff) {
			e.background = false
			t.interestLocked(e, now)
			e.idle = e.followed
		}
		if e.interested() {
			continue
		}
		if e.idle.Before(cutoff) || (e.snap.Err != nil && now.Sub(e.snap.LastPoll) >= t.opts.Freshness) {
			delete(t.tasks, id)
			t.sched.Forget(id)
		}
	}
}
