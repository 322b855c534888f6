package fleet

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

// TestScaleHotStatements is the fleet's part of bench-scale (make
// bench-scale; skipped unless CWPEXPORT_BENCH_SCALE is set): each hot
// statement's p99 with 1k rows and with 100k pending + 100k ended rows,
// the claims a replica makes per second, and the plans. It prints
// Markdown lines prefixed with "SCALE".
func TestScaleHotStatements(t *testing.T) {
	if os.Getenv("CWPEXPORT_BENCH_SCALE") == "" {
		t.Skip("CWPEXPORT_BENCH_SCALE unset: run make bench-scale")
	}
	runs := 200
	type figure struct{ small, large time.Duration }
	figures := map[string]*figure{}
	var names []string
	var claimsPerSecond [2]float64
	for i, size := range []int{500, 100000} {
		ctx := context.Background()
		// A rate the budget never makes a claim wait for: the statement's
		// cost alone.
		pool := fleetDatabase(t, 1e6)
		// size pending tasks wanted by three replicas, due over the next
		// size/20 seconds, 200 of them due now (ten seconds of the budget's
		// reads); size ended tasks, as results leave them.
		const due = 200
		for _, sql := range []string{
			`INSERT INTO fleet_tasks (task_id, due, state, last_poll, observed, polls)
			 SELECT g, clock_timestamp() + make_interval(secs => CASE WHEN g <= $2 THEN -1 ELSE g / 20.0 END), 'PENDING', now(), now(), 5
			 FROM generate_series(1, $1::int) g`,
			`INSERT INTO fleet_tasks (task_id, due, state, last_poll, observed, polls)
			 SELECT g, ` + endedDue + `, 'FINISHED', now() - interval '10 min', now() - interval '10 min', 5
			 FROM generate_series($1::int + 1, 2 * $1::int) g WHERE $2::int >= 0`,
			`INSERT INTO fleet_interest (task_id, replica, tier, until)
			 SELECT g, r, 2, now() + interval '1 hour' FROM generate_series(1, $1::int) g, unnest(ARRAY['a','b','c']) r
			 WHERE $2::int >= 0`,
			// One task in a thousand watched.
			`UPDATE fleet_interest SET tier = 1 WHERE task_id % 1000 = 7 AND replica = 'b' AND $1::int > 0 AND $2::int >= 0`,
		} {
			if _, err := pool.Exec(ctx, sql, size, due); err != nil {
				t.Fatal(err)
			}
		}
		for _, table := range []string{"fleet_tasks", "fleet_interest"} {
			if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
				t.Fatal(err)
			}
		}
		ids := make([]int64, 0, 1000)
		tiers := make([]int16, 0, 1000)
		for id := int64(1); id <= 1000; id++ {
			ids, tiers = append(ids, id), append(tiers, 2)
		}
		stmts := []struct {
			name, sql string
			args      []any
			rollback  bool
		}{
			{"claim", claim, []any{"a", 1.0, -1.0, 0.7, 4.0, 0.05, 0.025, 0.05, 12.0}, true},
			{"nextDue", nextDue, nil, false},
			{"countScheduled", countScheduled, nil, false},
			{"renew 1000 interests", `INSERT INTO fleet_interest (task_id, replica, tier, until)
				SELECT id, $2, tier, clock_timestamp() + make_interval(secs => 15) FROM unnest($1::bigint[], $3::smallint[]) AS w(id, tier)
				ON CONFLICT (task_id, replica) DO UPDATE SET tier = excluded.tier, until = excluded.until`, []any{ids, "a", tiers}, false},
			{"cleanEnded", cleanEnded, nil, true},
			{"cleanTasks", cleanTasks, nil, true},
		}
		for _, st := range stmts {
			var ds []time.Duration
			// runs, or 20 s and at least 20 runs for the slow ones.
			for began := time.Now(); len(ds) < runs && (len(ds) < 20 || time.Since(began) < 20*time.Second); {
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t0 := time.Now()
				rows, err := tx.Query(ctx, st.sql, st.args...)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				for rows.Next() {
				}
				rows.Close()
				if rows.Err() != nil {
					t.Fatalf("%s: %v", st.name, rows.Err())
				}
				ds = append(ds, time.Since(t0))
				if st.rollback {
					_ = tx.Rollback(ctx)
				} else {
					_ = tx.Commit(ctx)
				}
			}
			slices.Sort(ds)
			p99 := ds[len(ds)*99/100]
			if figures[st.name] == nil {
				figures[st.name] = &figure{}
				names = append(names, st.name)
			}
			if i == 0 {
				figures[st.name].small = p99
			} else {
				figures[st.name].large = p99
				if plan := explain(t, pool, st.sql, st.args...); plan != "" {
					t.Logf("SCALE-PLAN %s\n%s", st.name, plan)
				}
			}
		}
		// Claims for real, one after the other, as one replica's loop makes
		// them: for 3 s, or until the due tasks run out.
		n, began := 0, time.Now()
		for time.Since(began) < 3*time.Second && n < due {
			if _, err := pool.Exec(ctx, claim, "a", 1.0, -1.0, 0.7, 4.0, 0.05, 0.025, 0.05, 12.0); err != nil {
				t.Fatal(err)
			}
			n++
		}
		claimsPerSecond[i] = float64(n) / time.Since(began).Seconds()
	}
	t.Logf("SCALE | statement | p99, 500 pending + 500 ended | p99, 100k pending + 100k ended | ratio |")
	t.Logf("SCALE |---|---|---|---|")
	for _, name := range names {
		f := figures[name]
		t.Logf("SCALE | %s | %s | %s | %.2f |", name, ms(f.small), ms(f.large), float64(f.large)/float64(f.small))
	}
	t.Logf("SCALE | claims per second, one replica, one after the other | %.0f | %.0f | %.2f |",
		claimsPerSecond[0], claimsPerSecond[1], claimsPerSecond[1]/claimsPerSecond[0])
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// explain is the plan of stmt, run (EXPLAIN ANALYZE) and rolled back.
func explain(t *testing.T, pool *pgxpool.Pool, stmt string, args ...any) string {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	return pgtest.Explain(t, tx, stmt, args...)
}
