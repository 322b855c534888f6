package fleet

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

// rowsRead runs stmt under EXPLAIN ANALYZE (rolled back) and returns how
// many rows of fleet_tasks its plan read: those it returned and those its
// filters removed.
func rowsRead(t *testing.T, pool *pgxpool.Pool, stmt string, args ...any) float64 {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var out string
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+stmt, args...).Scan(&out); err != nil {
		t.Fatal(err)
	}
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal([]byte(out), &plans); err != nil {
		t.Fatal(err)
	}
	var walk func(n map[string]any) float64
	walk = func(n map[string]any) float64 {
		var read float64
		if n["Relation Name"] == "fleet_tasks" {
			loops, _ := n["Actual Loops"].(float64)
			for _, k := range []string{"Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck"} {
				v, _ := n[k].(float64)
				read += v * loops
			}
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			read += walk(k.(map[string]any))
		}
		return read
	}
	return walk(plans[0].Plan)
}

// TestHotStatementsNeverReadTheHistory: with 10,000 tasks polled to their
// end and 100 watched ones, the claim, the next-due read and the count of
// scheduled tasks read a handful of rows, not the history.
func TestHotStatementsNeverReadTheHistory(t *testing.T) {
	ctx := context.Background()
	pool := fleetDatabase(t, 20)
	const history = 10000
	// The history: tasks leased, then ended by their polls' results.
	if _, err := pool.Exec(ctx, `INSERT INTO fleet_tasks (task_id, due, owner, epoch, state, observed)
		SELECT g, now(), 'a', 1, 'PENDING', now() FROM generate_series(1, $1::int) g`, history); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	for id := range int64(history) {
		b.Queue(result, id+1, "ok", "FINISHED", "https://example.com/x", "", "", "", 0.0, 1.0, 1.0, int64(1), "a", "")
	}
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	// 100 watched tasks, 10 of them due now.
	if _, err := pool.Exec(ctx, `INSERT INTO fleet_tasks (task_id, due, state, observed)
		SELECT g, now() + make_interval(secs => CASE WHEN g % 10 = 0 THEN -1 ELSE g END), 'PENDING', now()
		FROM generate_series($1::int + 1, $1::int + 100) g`, history); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO fleet_interest (task_id, replica, tier, until)
		SELECT g, 'a', 1, now() + interval '1 hour' FROM generate_series($1::int + 1, $1::int + 100) g`, history); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE fleet_tasks; ANALYZE fleet_interest`); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		name string
		sql  string
		args []any
	}{
		{"claim", claim, []any{"a", 0.2, -1.0, 0.7, 4.0, 0.05, 0.025, 0.05, 12.0}},
		{"nextDue", nextDue, nil},
		{"countScheduled", countScheduled, nil},
	} {
		if read := rowsRead(t, pool, st.sql, st.args...); read > 500 {
			t.Errorf("%s read %.0f rows of fleet_tasks with %d ended tasks in the table", st.name, read, history)
		}
	}
}

// fleetDatabase is a new database with the fleet's tables, its
// ExportTasks budget at rate.
func fleetDatabase(t *testing.T, rate float64) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f, err := Open(ctx, pool, Options{Replica: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Budget(BudgetOptions{Action: "ExportTasks", Rate: rate}); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestClaimNeverSortsABacklog: with 5,000 followed tasks overdue (a fleet
// behind its schedule), the claim takes the urgent task first, then the
// watched one, reading a handful of rows, not the backlog.
func TestClaimNeverSortsABacklog(t *testing.T) {
	ctx := context.Background()
	pool := fleetDatabase(t, 1e6)
	for _, sql := range []string{
		`INSERT INTO fleet_tasks (task_id, due, state, observed)
		 SELECT g, now() - make_interval(secs => 10000 - g), 'PENDING', now() FROM generate_series(1, 5002) g`,
		`INSERT INTO fleet_interest (task_id, replica, tier, until)
		 SELECT g, 'a', CASE g WHEN 5001 THEN 1 WHEN 5002 THEN 0 ELSE 2 END, now() + interval '1 hour' FROM generate_series(1, 5002) g`,
		`ANALYZE fleet_tasks`, `ANALYZE fleet_interest`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	args := []any{"a", 1e6, -1.0, 0.7, 4.0, 0.05, 0.025, 0.05, 12.0}
	if read := rowsRead(t, pool, claim, args...); read > 100 {
		t.Errorf("the claim read %.0f rows of fleet_tasks with 5,000 overdue tasks", read)
	}
	for _, want := range []int64{5002, 5001, 1} {
		var id int64
		if err := pool.QueryRow(ctx, claim, args...).Scan(&id, new(int64), new(int16), new(time.Time), new(time.Time), new(float64),
			new(int64), new(float64), new(string), new(string), new(bool), new(int)); err != nil {
			t.Fatal(err)
		}
		if id != want {
			t.Fatalf("claimed task %d, want %d (urgent, then watched, then the most overdue)", id, want)
		}
	}
}
