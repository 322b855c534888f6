package fleet

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// retryPause is how long a loop waits after the database failed it.
const retryPause = time.Second

func (s *Schedule) pause(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		s.opts.Logger.Warn("fleet: "+what+"; retrying", "err", err, "retry_in", retryPause)
	}
	_ = budget.Sleep(ctx, retryPause)
}

// writeLoop writes interest and creations as they come, and renews this
// replica's interest every third of InterestTTL. Writes and renewals take
// turns in this one loop: a renewal, which writes what it read of the
// interest, can then never land after a later change and undo it (bring
// back a withdrawn interest, or an urgent tier back to background).
func (s *Schedule) writeLoop(ctx context.Context) {
	renewal := time.NewTicker(s.opts.InterestTTL / 3)
	defer renewal.Stop()
	renewDue := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.writeWake:
		case <-renewal.C:
			renewDue = true
		}
		if err := s.write(ctx); err != nil {
			s.pause(ctx, "record this replica's interest", err)
			wake(s.writeWake)
			continue
		}
		if renewDue {
			if err := s.renew(ctx); err != nil {
				s.pause(ctx, "renew this replica's interest", err)
				continue
			}
			renewDue = false
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
	// Rows are locked in the order of their ids, as in every replica's
	// writes: two replicas' batches never wait for each other in a cycle.
	sortByID(ids, tiers)
	slices.Sort(gone)
	slices.Sort(created)
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
		// wanted marks the row as wanted now, whatever the interest's
		// snapshot a concurrent cleanup reads: its DELETE, finding the row
		// changed, checks it again and leaves it (see cleanTasks).
		b.Queue(`INSERT INTO fleet_tasks (task_id, due, wanted) SELECT id, clock_timestamp(), clock_timestamp()
			FROM unnest($1::bigint[]) AS w(id)
			ON CONFLICT (task_id) DO UPDATE SET wanted = excluded.wanted`, ids)
		// A stronger interest brings the next poll forward, within the
		// floor and a failing task's backoff.
		b.Queue(`UPDATE fleet_tasks t SET due = least(t.due, greatest(clock_timestamp(),
				t.asked + make_interval(secs => $3::float8), t.retry_at,
				CASE WHEN w.tier = 1 THEN coalesce(t.last_poll, t.observed) + make_interval(secs => $4::float8) END))
			FROM unnest($1::bigint[], $2::smallint[]) AS w(id, tier) WHERE t.task_id = w.id
			  AND (w.tier = 0 OR (w.tier = 1 AND t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''))`,
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
// and that have not ended (ended rows, due endedDue, are not read).
const countScheduled = `
SELECT count(*) FROM fleet_tasks t
WHERE t.due < ` + endedDue + ` AND t.state NOT IN ('FINISHED', 'ERROR') AND t.refusal_code = ''
  AND EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id AND i.until > clock_timestamp())`

// cleanInterest drops interest that ended a while ago (its replica died or
// forgot to withdraw it).
const cleanInterest = `DELETE FROM fleet_interest WHERE until < clock_timestamp() - interval '1 minute'`

// cleanTasks drops the rows nobody has wanted nor polled for an hour. A
// replica that records new interest sets the row's wanted time in the same
// transaction: were the interest committed after this statement's snapshot,
// the row is then changed under it, and PostgreSQL checks the conditions
// again on the row as changed, which is wanted now.
const cleanTasks = `DELETE FROM fleet_tasks t
WHERE coalesce(t.last_poll, t.observed, '-infinity') < clock_timestamp() - interval '1 hour'
  AND coalesce(t.wanted, '-infinity') < clock_timestamp() - interval '1 hour'
  AND (t.lease_until IS NULL OR t.lease_until < clock_timestamp())
  AND NOT EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id)`

// cleanEnded drops the rows of ended tasks as soon as nobody wants them
// (a minute after their last poll, for the reads of the replicas that
// watched them to the end).
const cleanEnded = `DELETE FROM fleet_tasks t
WHERE t.due = ` + endedDue + `
  AND coalesce(t.last_poll, t.observed, '-infinity') < clock_timestamp() - interval '1 minute'
  AND coalesce(t.wanted, '-infinity') < clock_timestamp() - interval '1 minute'
  AND (t.lease_until IS NULL OR t.lease_until < clock_timestamp())
  AND NOT EXISTS (SELECT 1 FROM fleet_interest i WHERE i.task_id = t.task_id)`

// maintain counts the fleet's scheduled tasks every second, and clears
// what nobody wants any more.
func (s *Schedule) maintain(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var cleaned time.Time
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
		if time.Since(cleaned) >= 30*time.Second {
			var err error
			for _, clean := range []string{cleanInterest, cleanTasks, cleanEnded} {
				if _, err = s.f.pool.Exec(ctx, clean); err != nil {
					break
				}
			}
			if s.f.check(ctx, err) == nil {
				cleaned = time.Now()
			}
		}
	}
}

// renew writes again all of this replica's interest, valid another
// InterestTTL, and the row of any wanted task that has none (whatever
// removed it): a wanted task is always in the schedule.
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
	sortByID(ids, tiers)
	b := &pgx.Batch{}
	s.queueInterest(b, ids, tiers)
	b.Queue(`INSERT INTO fleet_tasks (task_id, due) SELECT id, clock_timestamp() FROM unnest($1::bigint[]) AS w(id)
		ON CONFLICT (task_id) DO NOTHING`, ids)
	return s.f.check(ctx, s.f.pool.SendBatch(ctx, b).Close())
}

// sortByID sorts ids, and tiers along.
func sortByID(ids []int64, tiers []int16) {
	sort.Sort(byID{ids, tiers})
}

type byID struct {
	ids   []int64
	tiers []int16
}

func (b byID) Len() int           { return len(b.ids) }
func (b byID) Less(i, j int) bool { return b.ids[i] < b.ids[j] }
func (b byID) Swap(i, j int) {
	b.ids[i], b.ids[j] = b.ids[j], b.ids[i]
	b.tiers[i], b.tiers[j] = b.tiers[j], b.tiers[i]
}
