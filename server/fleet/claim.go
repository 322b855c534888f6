package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// claim takes the most urgent due task of the fleet, with the next start
// slot of the fleet's read budget and a lease on the task, in one round
// trip (the slot and the database's now computed after the budget row's
// lock, as in takeSlot). Urgent tasks go first, unless a watched task is a whole floor late;
// an ended task is polled only for an urgent caller. Nothing is taken, and
// no slot used, when no task is due. Each kind of candidate is the first
// of its kind in the order of due times, read from an index (the interest
// of urgent and watched callers from fleet_interest_watched, the others
// from fleet_tasks_due, bounded by the statement's now(), a value the
// planner can use, unlike clock_timestamp()), so that a backlog of due
// tasks is never sorted; ended rows are not in the due range (due
// endedDue, see result).
const claim = `
WITH late AS (
  SELECT t.task_id, 1::smallint AS tier, -1 AS rank, t.due
  FROM fleet_interest i JOIN fleet_tasks t ON t.task_id = i.task_id
  WHERE i.tier = 1 AND i.until > now() AND t.due <= now() - make_interval(secs => $2::float8)
    AND (t.lease_until IS NULL OR t.lease_until < now()) AND t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''
  ORDER BY t.due LIMIT 1
  FOR UPDATE OF t SKIP LOCKED
),
urgent AS (
  SELECT t.task_id, 0::smallint AS tier, 0 AS rank, t.due
  FROM fleet_interest i JOIN fleet_tasks t ON t.task_id = i.task_id
  WHERE i.tier = 0 AND i.until > now() AND t.due <= now() AND (t.lease_until IS NULL OR t.lease_until < now())
  ORDER BY t.due LIMIT 1
  FOR UPDATE OF t SKIP LOCKED
),
watched AS (
  SELECT t.task_id, 1::smallint AS tier, 1 AS rank, t.due
  FROM fleet_interest i JOIN fleet_tasks t ON t.task_id = i.task_id
  WHERE i.tier = 1 AND i.until > now() AND t.due <= now()
    AND (t.lease_until IS NULL OR t.lease_until < now()) AND t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''
  ORDER BY t.due LIMIT 1
  FOR UPDATE OF t SKIP LOCKED
),
background AS (
  SELECT t.task_id, i.tier, 2 AS rank, t.due
  FROM fleet_tasks t,
       LATERAL (SELECT min(tier) AS tier FROM fleet_interest i WHERE i.task_id = t.task_id AND i.until > now()) i
  WHERE i.tier IS NOT NULL AND t.due <= now()
    AND (t.lease_until IS NULL OR t.lease_until < now()) AND t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''
  ORDER BY t.due LIMIT 1
  FOR UPDATE OF t SKIP LOCKED
),
cand AS (
  SELECT c.task_id, c.tier FROM (
    SELECT * FROM late UNION ALL SELECT * FROM urgent UNION ALL SELECT * FROM watched UNION ALL SELECT * FROM background
  ) c ORDER BY c.rank, c.due LIMIT 1
),
slot AS (
  SELECT s.slot, s.db_now AS now, s.rate, s.throttles, s.configured
  FROM cand, LATERAL fleet_take_slot('ExportTasks', $3, $4, $5, $6, $7, $8, -1) AS s
)
UPDATE fleet_tasks t SET owner = $1, epoch = t.epoch + 1, cadence = t.due, asked = slot.slot,
  lease_until = slot.slot + make_interval(secs => $9::float8)
FROM cand, slot WHERE t.task_id = cand.task_id
RETURNING t.task_id, t.epoch, cand.tier, slot.slot, slot.now, slot.rate, slot.throttles, slot.configured,
  t.state, t.download_url, t.refusal_code <> '', t.failures`

// endedDue is the due time of an ended task's row, out of the due range
// of any claim (see result); a task whose row says so is not scheduled.
const endedDue = `'9999-12-31 00:00:00+00'::timestamptz`

// scheduledDue is a row's due time as the tracker reads it: zero for an
// ended task's row, which no poll is scheduled for.
func scheduledDue(due time.Time) time.Time {
	if due.Year() >= 9999 {
		return time.Time{}
	}
	return due
}

// nextDue is how long until the fleet's next task is due (null: none):
// the first row in the order of the due index that someone wants and no
// poll holds.
const nextDue = `
SELECT (SELECT extract(epoch FROM t.due - clock_timestamp())::float8 FROM fleet_tasks t
  WHERE t.due < ` + endedDue + ` AND (t.lease_until IS NULL OR t.lease_until < now())
    AND EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id AND i.until > now()
                AND (i.tier = 0 OR (t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = '')))
  ORDER BY t.due LIMIT 1)`

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
			l         lease
			tier      int16
			st        slotTaken
			throttles int64
			found     = true
			b         = s.opts.Budget
			width     = b.width()
		)
		args := append([]any{s.f.opts.Replica, s.opts.MinInterval.Seconds()}, b.slotArgs(width, -1)[:6]...)
		args = append(args, leaseFor.Seconds())
		err := s.f.roundTrip(ctx, &b.trips, &st, func(conn *pgxpool.Conn) error {
			return conn.QueryRow(ctx, claim, args...).
				Scan(&l.id, &l.epoch, &tier, &st.slot, &st.now, &st.rate, &throttles, &st.configured, &l.state, &l.url, &l.refused, &l.failures)
		})
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
		b.store(st.rate, throttles, st.configured)
		l.tier = tracker.Tier(tier)
		s.mu.Lock()
		if _, wanted := s.want[l.id]; wanted {
			s.rows[l.id] = rowSchedule{leased: true}
		}
		s.mu.Unlock()
		target := st.latest()
		l.until = target.Add(leaseFor)
		if budget.Sleep(ctx, time.Until(target)) != nil {
			return
		}
		if !st.within(width) {
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
    -- An ended task leaves the due range until an urgent caller wants it
    -- polled again (see write).
    due = CASE WHEN $2 = 'refused' OR ($2 = 'ok' AND $3 IN ('FINISHED', 'ERROR')) THEN ` + endedDue + ` ELSE greatest(clock_timestamp(),
      CASE WHEN $2 = 'ok' THEN cadence + make_interval(secs => $9::float8) END,
      asked + make_interval(secs => $10::float8),
      CASE WHEN $2 = 'transient' THEN clock_timestamp() + make_interval(secs => $8::float8) END) END
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
	p := r.poll(pending, s.f.Now())
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

// errorParts is what a failed poll's row keeps of its error.
func errorParts(err error) (code, text, rid string) {
	var ce *cloud.Error
	if errors.As(err, &ce) {
		return ce.Code, ce.Message, ce.RequestID
	}
	return "ClientError", err.Error(), ""
}
