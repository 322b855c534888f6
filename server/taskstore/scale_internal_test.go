package taskstore

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

// TestScaleRegistry is the registry's part of bench-scale (make
// bench-scale; skipped unless CWPEXPORT_BENCH_SCALE is set): the p99 of
// the registry's hot reads with 1,000 and with 1,000,000 records on
// PostgreSQL, and their plans. It prints Markdown lines prefixed with
// "SCALE".
func TestScaleRegistry(t *testing.T) {
	if os.Getenv("CWPEXPORT_BENCH_SCALE") == "" {
		t.Skip("CWPEXPORT_BENCH_SCALE unset: run make bench-scale")
	}
	const runs = 200
	p99 := map[string][2]time.Duration{}
	var names []string
	for i, size := range []int{1000, 1000000} {
		ctx := context.Background()
		pool, err := pgxpool.New(ctx, pgtest.DSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		s, err := OpenPostgres(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		// size records of 1000 callers, one in a thousand still followed,
		// created over the last year.
		if _, err := pool.Exec(ctx, `INSERT INTO export_tasks (id, task_id, request_id, fingerprint, parameters, creator,
			created_at, state, seq)
			SELECT 'id-' || g, g, 'r-' || g, 'f', '{}', 'caller-' || (g % 1000),
			  (extract(epoch FROM now()) * 1000000)::bigint - (($1::int - g)::float8 / $1::int * 31536000000000)::bigint,
			  CASE WHEN g % 1000 = 0 THEN 'PENDING' ELSE 'FINISHED' END, g
			FROM generate_series(1, $1::int) g`, size); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE export_tasks`); err != nil {
			t.Fatal(err)
		}
		mid := int64(size / 2)
		reads := []struct {
			name string
			sql  string
			args []any
			call func() error
		}{
			{"Get (by task id)", s.selectColumns() + `WHERE task_id = $1`, []any{mid}, func() error { _, _, err := s.Get(ctx, mid); return err }},
			{"GetRequest (by creator, request id)", s.selectColumns() + `WHERE creator = $1 AND request_id = $2`,
				[]any{fmt.Sprint("caller-", mid%1000), fmt.Sprint("r-", mid)},
				func() error {
					_, _, err := s.GetRequest(ctx, fmt.Sprint("caller-", mid%1000), fmt.Sprint("r-", mid))
					return err
				}},
			{"List, first page of 50", "", nil, func() error { _, err := s.List(ctx, Query{Limit: 50}); return err }},
			{"List, a page in the middle, one caller", "", nil, func() error {
				_, err := s.List(ctx, Query{Creators: []string{"caller-7"}, After: &Cursor{Seq: mid}, Limit: 50})
				return err
			}},
			{"Following", s.selectColumns() + followingWhere, nil, func() error { _, err := s.Following(ctx); return err }},
			{"retention batch (none old enough)", pruneSelect, []any{time.Now().Add(-DefaultRetention).UnixMicro(), DefaultPruneBatch},
				func() error { _, err := s.Prune(ctx, time.Now().Add(-DefaultRetention), DefaultPruneBatch); return err }},
		}
		for _, r := range reads {
			var ds []time.Duration
			for range runs {
				t0 := time.Now()
				if err := r.call(); err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				ds = append(ds, time.Since(t0))
			}
			slices.Sort(ds)
			f, seen := p99[r.name]
			if !seen {
				names = append(names, r.name)
			}
			f[i] = ds[len(ds)*99/100]
			p99[r.name] = f
			if i == 1 && r.sql != "" {
				t.Logf("SCALE-PLAN %s\n%s", r.name, pgtest.Explain(t, pool, r.sql, r.args...))
			}
		}
	}
	t.Logf("SCALE | registry read | p99, 1,000 records | p99, 1,000,000 records | ratio |")
	t.Logf("SCALE |---|---|---|---|")
	for _, name := range names {
		f := p99[name]
		t.Logf("SCALE | %s | %.2f ms | %.2f ms | %.2f |", name, float64(f[0])/1e6, float64(f[1])/1e6, float64(f[1])/float64(f[0]))
	}
}
