package fleet_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/fleet"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// schedule runs a fleet schedule on r until the test ends.
func (e *env) schedule(t *testing.T, r *replica, opts fleet.ScheduleOptions) *fleet.Schedule {
	t.Helper()
	b, err := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportTasks, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	opts.Cloud, opts.Budget = e.cloud, b
	if opts.MinInterval == 0 {
		opts.MinInterval = 200 * time.Millisecond
	}
	s, err := r.fleet.Schedule(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, func(tracker.Poll) {}) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCleanupKeepsARowWantedWhileItRuns: the cleanup of rows nobody wants
// reads the interest in its snapshot; interest recorded and committed
// while it runs (held here by a lock on the row) still keeps the row, and
// the task is polled.
func TestCleanupKeepsARowWantedWhileItRuns(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	id := createTask(t, e.cloud)
	r := join(t, dsn, "a")
	ctx := context.Background()
	if _, err := r.pool.Exec(ctx, `INSERT INTO fleet_tasks (task_id, due, state, last_poll, observed, polls)
		VALUES ($1, now() - interval '2 hours', 'PENDING', now() - interval '2 hours', now() - interval '2 hours', 3)`, id); err != nil {
		t.Fatal(err)
	}
	hold, err := r.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM fleet_tasks WHERE task_id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	node := e.nodeOf(t, r, e.cloud)
	waitFor(t, "the cleanup to wait for the row", func() bool {
		return count(t, r.pool, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'DELETE FROM fleet_tasks%' AND wait_event_type = 'Lock'`) > 0
	})
	node.Follow(id, time.Now())
	waitFor(t, "the interest to be recorded, or to wait for the row too", func() bool {
		return count(t, r.pool, `SELECT count(*) FROM fleet_interest WHERE task_id = $1`, id) > 0 ||
			count(t, r.pool, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`) > 1
	})
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a poll of the followed task", func() bool { return e.emu.Stats().TaskPolls(id) > 0 })
}

// TestRenewalBringsBackAMissingRow: a wanted task whose row is gone,
// whatever removed it, is back in the schedule at the next renewal of the
// interest, and polled.
func TestRenewalBringsBackAMissingRow(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	id := createTask(t, e.cloud)
	r := join(t, dsn, "a")
	s := e.schedule(t, r, fleet.ScheduleOptions{InterestTTL: 1500 * time.Millisecond,
		Pacing: tracker.Pacing{MinInterval: 200 * time.Millisecond, BackgroundInterval: 300 * time.Millisecond}})
	s.Want(id, tracker.TierBackground)
	waitFor(t, "a first poll", func() bool { return e.emu.Stats().TaskPolls(id) > 0 })
	if _, err := r.pool.Exec(context.Background(), `DELETE FROM fleet_tasks WHERE task_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	polls := e.emu.Stats().TaskPolls(id)
	waitFor(t, "a poll after the row was removed", func() bool { return e.emu.Stats().TaskPolls(id) > polls+1 })
}

// logged keeps the messages of the records a logger gets.
type logged struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logged) Enabled(context.Context, slog.Level) bool { return true }
func (l *logged) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.mu.Lock()
	l.msgs = append(l.msgs, msg)
	l.mu.Unlock()
	return nil
}
func (l *logged) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logged) WithGroup(string) slog.Handler      { return l }

func (l *logged) containing(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

// TestInterestWritesNeverDeadlock: two replicas changing their interest in
// the same tasks at the same moment write their rows in one order, and
// never deadlock (PostgreSQL would break the cycle by failing one).
func TestInterestWritesNeverDeadlock(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	const tasks = 2000
	var (
		logs   logged
		scheds []*fleet.Schedule
		reps   []*replica
	)
	for _, name := range []string{"a", "b"} {
		r := join(t, dsn, name)
		reps = append(reps, r)
		scheds = append(scheds, e.schedule(t, r, fleet.ScheduleOptions{Logger: slog.New(&logs),
			Pacing: tracker.Pacing{MinInterval: time.Hour, BackgroundInterval: time.Hour}}))
	}
	for round := range 12 {
		tier := tracker.Tier(1 + round%2)
		var wg sync.WaitGroup
		for _, s := range scheds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range int64(tasks) {
					s.Want(1_000_000+id, tier)
				}
			}()
		}
		wg.Wait()
		waitFor(t, "both replicas' interest to be written", func() bool {
			return count(t, reps[0].pool, `SELECT count(*) FROM fleet_interest WHERE tier = $1`, int16(tier)) == 2*tasks
		})
	}
	if d := logs.containing("deadlock"); len(d) > 0 {
		t.Fatalf("%d interest writes deadlocked, e.g. %s", len(d), d[0])
	}
}

// holdRenewal holds the first renewal of the interest after armed for a
// second, as a renewal slow to reach the database would be.
type holdRenewal struct {
	armed, held, done chan struct{}
	once              sync.Once
}

type heldKey struct{}

func (h *holdRenewal) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (h *holdRenewal) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData)     {}
func (h *holdRenewal) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (h *holdRenewal) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	if ctx.Value(heldKey{}) != nil {
		close(h.done)
	}
}
func (h *holdRenewal) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	q := d.Batch.QueuedQueries
	// A renewal writes the interest and no new schedule.
	renewal := len(q) > 0 && strings.Contains(q[0].SQL, "INSERT INTO fleet_interest")
	for _, qq := range q {
		renewal = renewal && !strings.Contains(qq.SQL, "SET due")
	}
	select {
	case <-h.armed:
	default:
		return ctx
	}
	if renewal {
		h.once.Do(func() {
			close(h.held)
			time.Sleep(time.Second)
			ctx = context.WithValue(ctx, heldKey{}, true)
		})
	}
	return ctx
}

// TestALateRenewalNeverBringsBackWithdrawnInterest: a renewal of the
// interest that reaches the database after the interest was withdrawn
// does not bring it back.
func TestALateRenewalNeverBringsBackWithdrawnInterest(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	id := createTask(t, e.cloud)
	h := &holdRenewal{armed: make(chan struct{}), held: make(chan struct{}), done: make(chan struct{})}
	r := joinTraced(t, dsn, "a", h)
	s := e.schedule(t, r, fleet.ScheduleOptions{InterestTTL: 900 * time.Millisecond})
	s.Want(id, tracker.TierWatched)
	waitFor(t, "the interest to be recorded", func() bool {
		return count(t, r.pool, `SELECT count(*) FROM fleet_interest WHERE task_id = $1`, id) == 1
	})
	close(h.armed)
	waitFor(t, "a renewal", closed(h.held))
	s.Want(id, tracker.TierNone)
	waitFor(t, "the withdrawn interest to be gone", func() bool {
		return count(t, r.pool, `SELECT count(*) FROM fleet_interest WHERE task_id = $1`, id) == 0
	})
	waitFor(t, "the held renewal to end", closed(h.done))
	if n := count(t, r.pool, `SELECT count(*) FROM fleet_interest WHERE task_id = $1`, id); n != 0 {
		t.Fatalf("a late renewal brought back the withdrawn interest (%d rows)", n)
	}
}

// closed is a condition: ch is closed.
func closed(ch chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}
