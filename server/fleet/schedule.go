package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
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
	case !ok:
		return time.Time{}, s.pending
	case r.leased || r.due.Before(time.Now()):
		return time.Now(), s.pending // a poll is under way, or about to be
	}
	return r.due, s.pending
}

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
	run(func() { s.readLoop(ctx, report) })
	run(func() { s.claimLoop(ctx, report, &wg) })
	wg.Wait()
}

// retryPause is how long a loop waits after the database failed it.
const retryPause = time.Second

func (s *Schedule) pause(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		s.opts.Logger.Warn("fleet: "+what+"; retrying", "err", err, "retry_in", retryPause)
	}
	_ = budget.Sleep(ctx, retryPause)
}

// writeLoop writes interest and creations as they come.
func (s *Schedule) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.writeWake:
		}
		if err := s.write(ctx); err != nil {
			s.pause(ctx, "record this replica's interest", err)
			wake(s.writeWake)
		}
	}
}

// write records the pending interest changes and creations, in one round
// trip.
func (s *Schedule) write(ctx context.Context) error {
	s.mu.Lock()
	var (
		ids, gone, created []int64
		tiers              []int16
		urgent             bool
	)
	for id := range s.created {
		created = append(created, id)
	}
	for id := range s.dirty {
		if t, ok := s.want[id]; ok {
			ids, tiers = append(ids, id), append(tiers, int16(t))
			urgent = urgent || t == tracker.TierUrgent
		} else {
			gone = append(gone, id)
		}
	}
	s.created, s.dirty = map[int64]bool{}, map[int64]bool{}
	s.mu.Unlock()
	if len(ids)+len(gone)+len(created) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if len(created) > 0 {
		// A created task's first poll waits its share (see tracker.Local).
		b.Queue(`INSERT INTO fleet_tasks (task_id, due, state, observed, changed)
			SELECT id, clock_timestamp() + make_interval(secs => $2::float8), 'PENDING', clock_timestamp(), clock_timestamp()
			FROM unnest($1::bigint[]) AS w(id) ON CONFLICT (task_id) DO NOTHING`,
			created, s.interval(tracker.TierBackground).Seconds())
	}
	if len(ids) > 0 {
		s.queueInterest(b, ids, tiers)
		b.Queue(`INSERT INTO fleet_tasks (task_id, due) SELECT id, clock_timestamp() FROM unnest($1::bigint[]) AS w(id)
			ON CONFLICT (task_id) DO NOTHING`, ids)
		// A stronger interest brings the next poll forward, within the
		// floor and a failing task's backoff.
		b.Queue(`UPDATE fleet_tasks t SET due = least(t.due, greatest(clock_timestamp(),
				t.asked + make_interval(secs => $3::float8), t.retry_at,
				CASE WHEN w.tier = 1 THEN coalesce(t.last_poll, t.observed) + make_interval(secs => $4::float8) END))
			FROM unnest($1::bigint[], $2::smallint[]) AS w(id, tier) WHERE t.task_id = w.id AND w.tier <= 1`,
			ids, tiers, s.opts.MinInterval.Seconds(), s.interval(tracker.TierWatched).Seconds())
	}
	if len(gone) > 0 {
		b.Queue(`DELETE FROM fleet_interest WHERE replica = $1 AND task_id = ANY($2::bigint[])`, s.f.opts.Replica, gone)
	}
	err := s.f.check(ctx, s.f.pool.SendBatch(ctx, b).Close())
	if err != nil {
		// Keep what was not written.
		s.mu.Lock()
		for _, id := range created {
			s.created[id] = true
		}
		for _, id := range append(ids, gone...) {
			s.dirty[id] = true
		}
		s.mu.Unlock()
		return err
	}
	if urgent || len(created) > 0 {
		wake(s.claimWake)
	}
	return nil
}

// queueInterest upserts this replica's interest rows, valid InterestTTL.
func (s *Schedule) queueInterest(b *pgx.Batch, ids []int64, tiers []int16) {
	b.Queue(`INSERT INTO fleet_interest (task_id, replica, tier, until)
		SELECT id, $2, tier, clock_timestamp() + make_interval(secs => $4::float8) FROM unnest($1::bigint[], $3::smallint[]) AS w(id, tier)
		ON CONFLICT (task_id, replica) DO UPDATE SET tier = excluded.tier, until = excluded.until`,
		ids, s.f.opts.Replica, tiers, s.opts.InterestTTL.Seconds())
}

// countScheduled counts the tasks the fleet schedules: those someone wants
// and that have not ended.
const countScheduled = `
SELECT count(*) FROM fleet_tasks t
WHERE t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''
  AND EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id AND i.until > clock_timestamp())`

// maintain renews this replica's interest, counts the fleet's scheduled
// tasks every second, and clears what nobody wants any more.
func (s *Schedule) maintain(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var renewed, cleaned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var k int
		if err := s.f.check(ctx, s.f.pool.QueryRow(ctx, countScheduled).Scan(&k)); err == nil {
			s.mu.Lock()
			s.pending = k
			s.mu.Unlock()
		}
		if time.Since(renewed) >= s.opts.InterestTTL/3 {
			if err := s.renew(ctx); err == nil {
				renewed = time.Now()
			}
		}
		if time.Since(cleaned) >= 30*time.Second {
			_, err := s.f.pool.Exec(ctx, `DELETE FROM fleet_interest WHERE until < clock_timestamp() - interval '1 minute'`)
			if err == nil {
				_, err = s.f.pool.Exec(ctx, `DELETE FROM fleet_tasks t
					WHERE coalesce(t.last_poll, t.observed, '-infinity') < clock_timestamp() - interval '1 hour'
					  AND (t.lease_until IS NULL OR t.lease_until < clock_timestamp())
					  AND NOT EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id)`)
			}
			if s.f.check(ctx, err) == nil {
				cleaned = time.Now()
			}
		}
	}
}

// renew writes again all of this replica's interest, valid another
// InterestTTL.
func (s *Schedule) renew(ctx context.Context) error {
	s.mu.Lock()
	ids := make([]int64, 0, len(s.want))
	tiers := make([]int16, 0, len(s.want))
	for id, t := range s.want {
		ids, tiers = append(ids, id), append(tiers, int16(t))
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	s.queueInterest(b, ids, tiers)
	return s.f.check(ctx, s.f.pool.SendBatch(ctx, b).Close())
}

// listen follows the feed until ctx ends: each notification names a task
// whose row is read again if this replica wants it. After (re)connecting,
// every wanted task's row is read again: notifications sent while the
// listener was away are lost to it.
func (s *Schedule) listen(ctx context.Context) {
	cfg := s.f.pool.Config().ConnConfig.Copy()
	l := &pgxlisten.Listener{
		Connect:        func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) },
		ReconnectDelay: retryPause,
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("fleet: the feed's listener failed; reconnecting", "err", err)
			}
		},
	}
	l.Handle(Channel, feedHandler{s})
	_ = l.Listen(ctx)
}

type feedHandler struct{ s *Schedule }

// HandleNotification takes the row a notification carries, or, when it
// names only the task (a row too large for a notification), marks the row
// to be read.
func (h feedHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var (
		r   taskRow
		err error
	)
	if strings.HasPrefix(n.Payload, "{") {
		err = r.decode(n.Payload)
	} else {
		r.id, err = strconv.ParseInt(n.Payload, 10, 64)
	}
	if err != nil {
		return fmt.Errorf("notification %.100q: %w", n.Payload, err)
	}
	h.s.mu.Lock()
	if _, wanted := h.s.want[r.id]; wanted {
		if r.carried {
			h.s.notified[r.id] = r
		} else {
			h.s.reads[r.id] = true
		}
		wake(h.s.readWake)
	}
	h.s.mu.Unlock()
	return nil
}

func (h feedHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.s.mu.Lock()
	for id := range h.s.want {
		h.s.reads[id] = true
	}
	h.s.mu.Unlock()
	wake(h.s.readWake)
	return nil
}

// taskColumns are what a row says of a task's latest poll. Their names are
// the keys of a notification that carries the row (see taskRow.decode).
const taskColumns = `t.task_id, t.state, t.download_url, t.request_id, t.refusal_code, t.refusal, t.error_code, t.error,
	t.polls, t.failures, t.last_poll, t.observed, t.changed, t.due,
	coalesce(t.lease_until > clock_timestamp(), false) AS leased, t.poll_span`

// taskRow is one row of fleet_tasks as read.
type taskRow struct {
	id                                     int64
	state, url, rid                        string
	refusalCode, refusal, errCode, errText string
	polls                                  int64
	failures                               int
	lastPoll, observed, changed            *time.Time
	due                                    time.Time
	leased                                 bool
	span                                   string
	// carried says that the row came whole in a notification.
	carried bool
}

// notifiedRow is a row as a notification carries it: taskColumns as a
// JSON object (PostgreSQL's to_json of the row).
type notifiedRow struct {
	ID          int64      `json:"task_id"`
	State       string     `json:"state"`
	URL         string     `json:"download_url"`
	RequestID   string     `json:"request_id"`
	RefusalCode string     `json:"refusal_code"`
	Refusal     string     `json:"refusal"`
	ErrCode     string     `json:"error_code"`
	ErrText     string     `json:"error"`
	Polls       int64      `json:"polls"`
	Failures    int        `json:"failures"`
	LastPoll    *time.Time `json:"last_poll"`
	Observed    *time.Time `json:"observed"`
	Changed     *time.Time `json:"changed"`
	Due         time.Time  `json:"due"`
	Leased      bool       `json:"leased"`
	Span        string     `json:"poll_span"`
}

// decode reads a row from a notification's payload.
func (r *taskRow) decode(payload string) error {
	var n notifiedRow
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		return err
	}
	if n.ID <= 0 {
		return errors.New("no task id")
	}
	*r = taskRow{id: n.ID, state: n.State, url: n.URL, rid: n.RequestID, refusalCode: n.RefusalCode, refusal: n.Refusal,
		errCode: n.ErrCode, errText: n.ErrText, polls: n.Polls, failures: n.Failures, lastPoll: n.LastPoll,
		observed: n.Observed, changed: n.Changed, due: n.Due, leased: n.Leased, span: n.Span, carried: true}
	return nil
}

func (r *taskRow) scan(row pgx.Row, extra ...any) error {
	return row.Scan(append([]any{&r.id, &r.state, &r.url, &r.rid, &r.refusalCode, &r.refusal, &r.errCode, &r.errText,
		&r.polls, &r.failures, &r.lastPoll, &r.observed, &r.changed, &r.due, &r.leased, &r.span}, extra...)...)
}

// observed reports whether the row holds an observation to report.
func (r *taskRow) observedAny() bool { return r.polls > 0 || r.state != "" || r.refusalCode != "" }

// poll is what the row says of the task's latest poll, as the tracker
// reads it.
func (r *taskRow) poll(pending int) tracker.Poll {
	p := tracker.Poll{TaskID: r.id, Polls: r.polls, Failures: r.failures, Pending: pending, NextPoll: r.due, Span: parseSpan(r.span)}
	if r.leased {
		p.NextPoll = time.Now()
	}
	if r.lastPoll != nil {
		p.At = *r.lastPoll
	}
	if r.observed != nil {
		p.Observed = *r.observed
		if p.At.IsZero() {
			p.At = p.Observed // created, not yet polled
		}
	}
	if r.changed != nil {
		p.Changed = *r.changed
	}
	switch {
	case r.refusalCode != "":
		p.Err = &cloud.Error{Action: cloud.ActionExportTasks, Code: r.refusalCode, Message: r.refusal, RequestID: r.rid}
	case r.failures > 0 && r.errCode != "":
		p.Transient = &cloud.Error{Action: cloud.ActionExportTasks, Code: r.errCode, Message: r.errText}
	}
	if p.Err == nil && r.state != "" {
		// Known even when the last poll failed: as observed before.
		p.Status = cloud.TaskStatus{Status: cloud.Status(r.state), DownloadURL: r.url, RequestID: r.rid}
	}
	return p
}

// readCoalesce is how long the feed's reader gathers task ids before it
// reads their rows.
const readCoalesce = 10 * time.Millisecond

// readLoop reports the rows notifications carried, reads the rows of the
// tasks named by other notifications and new interest, and reports them.
func (s *Schedule) readLoop(ctx context.Context, report func(tracker.Poll)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.readWake:
		}
		s.mu.Lock()
		carried := s.notified
		s.notified = map[int64]taskRow{}
		toRead := len(s.reads) > 0
		s.mu.Unlock()
		if len(carried) > 0 {
			s.deliver(slices.Collect(maps.Values(carried)), report)
		}
		if !toRead {
			continue
		}
		// Reads come in bursts (new interest, a listener's reconnect): one
		// read serves those of a few milliseconds.
		if budget.Sleep(ctx, readCoalesce) != nil {
			return
		}
		s.mu.Lock()
		ids := make([]int64, 0, len(s.reads))
		for id := range s.reads {
			if _, wanted := s.want[id]; wanted {
				ids = append(ids, id)
			}
		}
		s.reads = map[int64]bool{}
		s.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		rows, err := s.f.pool.Query(ctx, `SELECT `+taskColumns+` FROM fleet_tasks t WHERE t.task_id = ANY($1::bigint[])`, ids)
		var got []taskRow
		if err == nil {
			for rows.Next() {
				var r taskRow
				if err = r.scan(rows); err != nil {
					break
				}
				got = append(got, r)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err := s.f.check(ctx, err); err != nil {
			s.mu.Lock()
			for _, id := range ids {
				s.reads[id] = true
			}
			s.mu.Unlock()
			s.pause(ctx, "read the feed's tasks", err)
			wake(s.readWake)
			continue
		}
		s.deliver(got, report)
	}
}

// deliver keeps the rows' schedules and reports what they observed.
func (s *Schedule) deliver(got []taskRow, report func(tracker.Poll)) {
	s.mu.Lock()
	pending := s.pending
	for _, r := range got {
		s.rows[r.id] = rowSchedule{due: r.due, leased: r.leased}
	}
	s.mu.Unlock()
	for i := range got {
		if got[i].observedAny() {
			report(got[i].poll(pending))
		}
	}
}

// Lookup implements tracker.Scheduler: the task's row answers a read when
// it is fresh — observed within Freshness, ended, refused within
// Freshness, or watched by some replica (then it is as fresh as the
// fleet's budget allows).
func (s *Schedule) Lookup(ctx context.Context, id int64) (tracker.Poll, bool) {
	var (
		r       taskRow
		watched bool
		now     time.Time
	)
	err := r.scan(s.f.pool.QueryRow(ctx, `SELECT `+taskColumns+`,
		EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id AND i.tier <= 1 AND i.until > clock_timestamp()),
		clock_timestamp() FROM fleet_tasks t WHERE t.task_id = $1`, id), &watched, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return tracker.Poll{}, false
	}
	if s.f.check(ctx, err) != nil {
		return tracker.Poll{}, false
	}
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	p := r.poll(pending)
	fresh := func(t *time.Time) bool { return t != nil && now.Sub(*t) < s.opts.Freshness }
	switch {
	case r.refusalCode != "":
		return p, fresh(r.lastPoll)
	case r.state == string(cloud.StatusFinished) || r.state == string(cloud.StatusError):
		return p, true
	case r.state != "":
		return p, watched || fresh(r.observed)
	}
	return tracker.Poll{}, false
}

// claim takes the most urgent due task of the fleet, with the next start
// slot of the fleet's read budget and a lease on the task, in one round
// trip (the slot and the database's now computed after the budget row's
// lock, as in takeSlot). Urgent tasks go first, unless a watched task is a whole floor late;
// an ended task is polled only for an urgent caller. Nothing is taken, and
// no slot used, when no task is due.
const claim = `
WITH n AS (SELECT clock_timestamp() AS now),
cand AS (
  SELECT t.task_id, i.tier
  FROM fleet_tasks t CROSS JOIN n,
       LATERAL (SELECT min(tier) AS tier FROM fleet_interest i WHERE i.task_id = t.task_id AND i.until > n.now) i
  WHERE i.tier IS NOT NULL AND t.due <= n.now
    AND (t.lease_until IS NULL OR t.lease_until < n.now)
    AND (i.tier = 0 OR (t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''))
  ORDER BY CASE WHEN i.tier = 1 AND t.due <= n.now - make_interval(secs => $2::float8) THEN -1 ELSE i.tier END, t.due
  LIMIT 1
  FOR UPDATE OF t SKIP LOCKED
),
slot AS (
  UPDATE fleet_budget SET
    last_gap = (1 + $7::float8) / fleet_budget_rate(cut_at, base, ceiling, $3, $4, $5, $6, clock_timestamp()),
    next_slot = greatest(next_slot, clock_timestamp())
      + make_interval(secs => (1 + $7::float8) / fleet_budget_rate(cut_at, base, ceiling, $3, $4, $5, $6, clock_timestamp()))
  WHERE action = 'ExportTasks' AND EXISTS (SELECT 1 FROM cand)
  RETURNING next_slot - make_interval(secs => last_gap) AS slot, clock_timestamp() AS now, (1 + $7::float8) / last_gap AS rate,
    throttles
)
UPDATE fleet_tasks t SET owner = $1, epoch = t.epoch + 1, cadence = t.due, asked = slot.slot,
  lease_until = slot.slot + make_interval(secs => $8::float8)
FROM cand, slot WHERE t.task_id = cand.task_id
RETURNING t.task_id, t.epoch, cand.tier, slot.slot, slot.now, slot.rate, slot.throttles,
  t.state, t.download_url, t.refusal_code <> '', t.failures`

// nextDue is how long until the fleet's next task is due (null: none).
const nextDue = `
SELECT extract(epoch FROM min(t.due) - clock_timestamp())::float8 FROM fleet_tasks t
WHERE (t.lease_until IS NULL OR t.lease_until < clock_timestamp())
  AND EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id AND i.until > clock_timestamp()
              AND (i.tier = 0 OR (t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = '')))`

// lease is what a poll holds: the task, the epoch that fences its result,
// its tier, and what the task was before (to tell its first ending).
type lease struct {
	id    int64
	epoch int64
	// until is when the lease ends, by this replica's clock.
	until    time.Time
	tier     tracker.Tier
	state    cloud.Status
	url      string
	refused  bool
	failures int
}

// ended reports whether the task had ended before the poll.
func (l lease) ended() bool {
	return l.refused || l.state == cloud.StatusFinished || l.state == cloud.StatusError
}

// claimLoop takes and starts polls until ctx ends; polls run on wg.
func (s *Schedule) claimLoop(ctx context.Context, report func(tracker.Poll), wg *sync.WaitGroup) {
	leaseFor := s.opts.PollTimeout + 2*time.Second
	for ctx.Err() == nil {
		began := time.Now()
		var (
			l          lease
			tier       int16
			slot, now  time.Time
			rate       float64
			throttles  int64
			found      = true
			budgetArgs = s.opts.Budget.rateArgs()
		)
		err := s.f.pool.QueryRow(ctx, claim, s.f.opts.Replica, s.opts.MinInterval.Seconds(),
			budgetArgs[0], budgetArgs[1], budgetArgs[2], budgetArgs[3], s.opts.Budget.spacing(), leaseFor.Seconds()).
			Scan(&l.id, &l.epoch, &tier, &slot, &now, &rate, &throttles, &l.state, &l.url, &l.refused, &l.failures)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
		if err := s.f.check(ctx, err); err != nil {
			s.pause(ctx, "take a task to poll", err)
			continue
		}
		if !found {
			s.idle(ctx)
			continue
		}
		received := time.Now()
		s.opts.Budget.store(rate, throttles)
		l.tier = tracker.Tier(tier)
		s.mu.Lock()
		if _, wanted := s.want[l.id]; wanted {
			s.rows[l.id] = rowSchedule{leased: true}
		}
		s.mu.Unlock()
		target := received.Add(slot.Sub(now))
		l.until = target.Add(leaseFor)
		if budget.Sleep(ctx, time.Until(target)) != nil {
			return
		}
		if time.Since(target) > s.opts.Budget.opts.Lateness {
			// Too late for the slot: give the task back, due at once.
			s.release(ctx, l)
			continue
		}
		waited := time.Since(began)
		s.opts.BudgetWaited(waited)
		wg.Add(1)
		go func() { defer wg.Done(); s.poll(ctx, l, waited, report) }()
	}
}

// idle waits until a task may be due: the next due time (at most a
// second, so that other replicas' interest is seen), or a nudge.
func (s *Schedule) idle(ctx context.Context) {
	wait := time.Second
	var secs *float64
	if err := s.f.check(ctx, s.f.pool.QueryRow(ctx, nextDue).Scan(&secs)); err == nil && secs != nil {
		wait = min(wait, max(time.Duration(*secs*float64(time.Second)), 5*time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-s.claimWake:
	}
}

// release gives a lease back without a poll.
func (s *Schedule) release(ctx context.Context, l lease) {
	_, err := s.f.pool.Exec(ctx, `UPDATE fleet_tasks SET owner = '', lease_until = NULL, due = clock_timestamp()
		WHERE task_id = $1 AND epoch = $2 AND owner = $3`, l.id, l.epoch, s.f.opts.Replica)
	_ = s.f.check(ctx, err)
}

// result writes a poll's outcome under its lease's epoch, sets the next
// due time, and notifies the fleet with the row written (its id alone when
// the row's JSON would not fit in a notification: maxPayload), in one round
// trip. A poller whose lease was taken over writes nothing.
const result = `
WITH upd AS (
  UPDATE fleet_tasks AS t SET owner = '', lease_until = NULL,
    polls = polls + 1, last_poll = clock_timestamp(),
    failures = CASE $2 WHEN 'ok' THEN 0 WHEN 'transient' THEN failures + 1 ELSE failures END,
    changed = CASE WHEN $2 = 'ok' AND state <> $3 THEN clock_timestamp() ELSE changed END,
    observed = CASE WHEN $2 = 'ok' THEN clock_timestamp() ELSE observed END,
    state = CASE WHEN $2 = 'ok' THEN $3 ELSE state END,
    download_url = CASE WHEN $2 = 'ok' THEN $4 ELSE download_url END,
    request_id = CASE WHEN $5 <> '' THEN $5 ELSE request_id END,
    refusal_code = CASE $2 WHEN 'refused' THEN $6 WHEN 'ok' THEN '' ELSE refusal_code END,
    refusal = CASE $2 WHEN 'refused' THEN $7 WHEN 'ok' THEN '' ELSE refusal END,
    error_code = CASE WHEN $2 = 'ok' THEN '' ELSE $6 END,
    error = CASE WHEN $2 = 'ok' THEN '' ELSE $7 END,
    retry_at = CASE WHEN $2 = 'transient' THEN clock_timestamp() + make_interval(secs => $8::float8) END,
    poll_span = $13,
    due = greatest(clock_timestamp(),
      CASE WHEN $2 = 'ok' THEN cadence + make_interval(secs => $9::float8) END,
      asked + make_interval(secs => $10::float8),
      CASE WHEN $2 = 'transient' THEN clock_timestamp() + make_interval(secs => $8::float8) END)
  WHERE task_id = $1 AND epoch = $11 AND owner = $12
  RETURNING ` + taskColumns + `
)
SELECT t.*, pg_notify('` + Channel + `',
  CASE WHEN octet_length(j.payload) <= ` + maxPayload + ` THEN j.payload ELSE t.task_id::text END)::text
FROM upd AS t, LATERAL (SELECT to_json(t)::text AS payload) AS j`

// maxPayload is the largest row a notification carries, in bytes: under
// PostgreSQL's limit of 8000 (pg_notify fails beyond it).
const maxPayload = "7900"

// poll asks the cloud for the leased task's state and writes the outcome.
func (s *Schedule) poll(ctx context.Context, l lease, late time.Duration, report func(tracker.Poll)) {
	sctx, span := tracker.StartPoll(ctx, s.tracer, l.id, late)
	// Ended before the poll is reported, on every path.
	ended := false
	defer func() {
		if !ended {
			span.End()
		}
	}()
	st, err := tracker.ReadWithin(sctx, s.opts.Cloud, l.id, s.opts.PollTimeout)
	if ctx.Err() != nil {
		return
	}
	outcome, code, text, rid := "ok", "", "", st.RequestID
	var backoff time.Duration
	switch {
	case err == nil:
	case cloud.Transient(err):
		outcome = "transient"
		if cloud.KindOf(err) == cloud.KindThrottled {
			s.opts.Budget.Throttled()
		}
		backoff = s.opts.Backoff(l.failures + 1)
		s.opts.Logger.WarnContext(sctx, "poll failed; retrying", "task_id", l.id, "failures", l.failures+1, "err", err)
	default:
		outcome = "refused"
	}
	if err != nil {
		code, text, rid = errorParts(err)
	}
	// The result is written while the lease lasts, through a database
	// outage too: the task is polled again at once when the database
	// returns, not only when the lease has expired.
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), l.until)
	defer cancel()
	var (
		r      taskRow
		notify string
	)
	for {
		qerr := r.scan(s.f.pool.QueryRow(wctx, result, l.id, outcome, string(st.Status), st.DownloadURL, rid, code, text,
			backoff.Seconds(), s.interval(l.tier).Seconds(), s.opts.Floor(l.tier).Seconds(), l.epoch, s.f.opts.Replica, formatSpan(span.SpanContext())), &notify)
		if errors.Is(qerr, pgx.ErrNoRows) {
			s.opts.Logger.Warn("fleet: a poll's lease was taken over before its result was written; the result is dropped", "task_id", l.id)
			return
		}
		err := s.f.check(wctx, qerr)
		if err == nil {
			break
		}
		if wctx.Err() != nil || budget.Sleep(wctx, 250*time.Millisecond) != nil {
			s.opts.Logger.Warn("fleet: a poll's result could not be written while its lease lasted; it is dropped", "task_id", l.id, "err", err)
			return
		}
	}
	s.mu.Lock()
	pending := s.pending
	if _, wanted := s.want[l.id]; wanted {
		s.rows[l.id] = rowSchedule{due: r.due}
	}
	s.mu.Unlock()
	p := r.poll(pending)
	p.Local = true
	switch outcome {
	case "transient":
		p.Transient = err
	case "refused":
		p.Err = err
	}
	p.Settled = !l.ended() && (p.Err != nil || st.Status == cloud.StatusFinished || st.Status == cloud.StatusError)
	p.Change = p.Err != nil != l.refused || (outcome == "ok" && (st.Status != l.state || st.DownloadURL != l.url))
	tracker.EndPoll(span, p)
	span.End()
	ended = true
	report(p)
}

// formatSpan writes a span's trace and span ids for the row, so that other
// replicas' watches can link to it.
func formatSpan(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String() + "-" + sc.SpanID().String()
}

// parseSpan reads what formatSpan wrote.
func parseSpan(s string) trace.SpanContext {
	tid, sid, ok := strings.Cut(s, "-")
	if !ok {
		return trace.SpanContext{}
	}
	t, err1 := trace.TraceIDFromHex(tid)
	sp, err2 := trace.SpanIDFromHex(sid)
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: t, SpanID: sp, TraceFlags: trace.FlagsSampled, Remote: true})
}

// errorParts is what a failed poll's row keeps of its error.
func errorParts(err error) (code, text, rid string) {
	var ce *cloud.Error
	if errors.As(err, &ce) {
		return ce.Code, ce.Message, ce.RequestID
	}
	return "ClientError", err.Error(), ""
}
