package fleet

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/tracker"
)

// Channel is the LISTEN/NOTIFY channel of the feed: each notification
// carries the row of fleet_tasks that a poll's result wrote, as JSON, or,
// when the row would not fit in PostgreSQL's 8000 bytes, the task id alone
// (its row is then read). The table stays the truth: a listener that
// reconnects reads the rows of every task it wants.
const Channel = "cwpexport_tasks"

// ScheduleOptions configure the fleet's schedule of polls. Zero values take
// the defaults named.
type ScheduleOptions struct {
	// Cloud answers the polls.
	Cloud tracker.Reader
	// Budget is the fleet's ExportTasks budget; required.
	Budget *Budget
	// Pacing paces each task's polls, as in one process.
	tracker.Pacing
	// Freshness: a shared observation younger than this answers a read;
	// default 1s.
	Freshness time.Duration
	// InterestTTL is how long a replica's interest in a task outlives its
	// last renewal (renewed every third of it): a dead replica's interest
	// ends within it. Default 15s.
	InterestTTL time.Duration
	// Logger receives the schedule's troubles; nil discards.
	Logger *slog.Logger
	// BudgetWaited, when set, is told how long each poll waited for its
	// slot.
	BudgetWaited func(time.Duration)
	// TracerProvider makes the polls' spans; nil means the global one.
	TracerProvider trace.TracerProvider
}

func (o *ScheduleOptions) defaults() {
	o.Pacing = o.Pacing.WithDefaults()
	if o.Freshness <= 0 {
		o.Freshness = time.Second
	}
	if o.InterestTTL <= 0 {
		o.InterestTTL = 15 * time.Second
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

// Schedule is a tracker.Scheduler shared by the fleet: the tasks' schedule
// lives in fleet_tasks, the replicas' interest in fleet_interest. Any
// replica takes the most urgent due task with a start slot of the fleet's
// budget (FOR UPDATE SKIP LOCKED, one round trip), polls it under a lease,
// and writes the result fenced by the lease's epoch, notifying the fleet.
// A replica that dies mid-poll loses its lease when it expires (the poll's
// timeout and a margin later), and the task is due again for any replica.
type Schedule struct {
	f    *Fleet
	opts ScheduleOptions

	mu sync.Mutex
	// want is this replica's interest; dirty, the tasks whose interest is
	// to be written; created, tasks created here, to be recorded.
	want    map[int64]tracker.Tier
	dirty   map[int64]bool
	created map[int64]bool
	// reads are tasks whose row is to be read (a notification without the
	// row, a new interest); notified, rows that notifications carried;
	// rows, what the last reads said of their schedule.
	reads    map[int64]bool
	notified map[int64]taskRow
	rows     map[int64]rowSchedule
	// pending is the number of tasks the fleet schedules, last counted.
	pending int

	writeWake, readWake, claimWake chan struct{}
	tracer                         trace.Tracer
	// feed is what the schedule knows of its listener (see watchFeed).
	feed feedWatch
}

// rowSchedule is what Next reports of a task.
type rowSchedule struct {
	due    time.Time
	leased bool
}

// Schedule returns the fleet's schedule for this replica.
func (f *Fleet) Schedule(opts ScheduleOptions) (*Schedule, error) {
	if opts.Budget == nil || opts.Cloud == nil {
		return nil, errors.New("fleet: a schedule needs the cloud and the fleet's read budget")
	}
	opts.defaults()
	return &Schedule{
		f: f, opts: opts,
		want: map[int64]tracker.Tier{}, dirty: map[int64]bool{}, created: map[int64]bool{},
		reads: map[int64]bool{}, notified: map[int64]taskRow{}, rows: map[int64]rowSchedule{},
		writeWake: make(chan struct{}, 1), readWake: make(chan struct{}, 1), claimWake: make(chan struct{}, 1),
		tracer: opts.TracerProvider.Tracer(tracker.TracerName),
	}, nil
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Want implements tracker.Scheduler: the interest is written to the fleet
// shortly after, and the task's row read, without blocking the caller.
func (s *Schedule) Want(id int64, tier tracker.Tier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.want[id]
	switch {
	case tier == tracker.TierNone && !had:
		return
	case tier == tracker.TierNone:
		delete(s.want, id)
	default:
		s.want[id] = tier
		if !had {
			s.reads[id] = true
			wake(s.readWake)
		}
	}
	if tier != old || tier == tracker.TierUrgent {
		s.dirty[id] = true
		wake(s.writeWake)
	}
}

// Created implements tracker.Scheduler.
func (s *Schedule) Created(id int64, _ time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created[id] = true
	wake(s.writeWake)
}

// Forget implements tracker.Scheduler.
func (s *Schedule) Forget(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, wanted := s.want[id]; !wanted {
		delete(s.rows, id)
	}
}

// Next implements tracker.Scheduler, from the rows last read.
func (s *Schedule) Next(id int64) (time.Time, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	switch {
	case !ok, !r.leased && r.due.IsZero(): // unknown, or ended
		return time.Time{}, s.pending
	case r.leased || r.due.Before(s.f.Now()):
		return s.f.Now(), s.pending // a poll is under way, or about to be
	}
	return r.due, s.pending
}

// Now implements tracker.Scheduler: the database's clock, as this
// replica estimates it (Fleet.Now).
func (s *Schedule) Now() time.Time { return s.f.Now() }

var _ tracker.Scheduler = (*Schedule)(nil)

// Rate implements tracker.Scheduler: the fleet's read budget now.
func (s *Schedule) Rate() float64 { return s.opts.Budget.Rate() }

// interval is the time between two polls of a task of tier t: the floor,
// or the share of the fleet's budget the fleet's tasks leave it.
func (s *Schedule) interval(t tracker.Tier) time.Duration {
	s.mu.Lock()
	k := max(s.pending, 1)
	s.mu.Unlock()
	share := time.Duration(float64(k) / s.opts.Budget.Rate() * float64(time.Second))
	return max(s.opts.Floor(t), share)
}

// Run implements tracker.Scheduler: until ctx ends it writes this
// replica's interest, listens to the feed, reads the rows of wanted tasks,
// and takes and makes polls; then it waits for its polls in flight.
func (s *Schedule) Run(ctx context.Context, report func(tracker.Poll)) {
	var wg sync.WaitGroup
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	run(func() { s.writeLoop(ctx) })
	run(func() { s.maintain(ctx) })
	run(func() { s.listen(ctx) })
	run(func() { s.watchFeed(ctx) })
	run(func() { s.readLoop(ctx, report) })
	run(func() { s.claimLoop(ctx, report, &wg) })
	wg.Wait()
}
