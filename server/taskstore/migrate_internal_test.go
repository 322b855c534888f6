package taskstore

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

// TestMigrationNumbersRecordedTasksInListOrder: a registry written before
// tasks were numbered gets its recorded tasks numbered in the order lists
// showed them (creation time, then task id); creations without a task get
// no number; the next task recorded comes after them all.
func TestMigrationNumbersRecordedTasksInListOrder(t *testing.T) {
	for _, c := range []struct {
		name string
		open func(t *testing.T) *Store
	}{
		{"sqlite", func(t *testing.T) *Store {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), FileName))
			if err != nil {
				t.Fatal(err)
			}
			return &Store{db: db, d: sqliteDialect}
		}},
		{"postgres", func(t *testing.T) *Store {
			pool, err := pgxpool.New(context.Background(), pgtest.DSN(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			return &Store{db: stdlib.OpenDBFromPool(pool), d: postgresDialect}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := c.open(t)
			defer s.Close()
			fsys, err := fs.Sub(migrations, "migrations")
			if err != nil {
				t.Fatal(err)
			}
			p, err := goose.NewProvider(s.d.goose, s.db, fsys, goose.WithDisableGlobalRegistry(true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.UpTo(ctx, 3); err != nil {
				t.Fatal(err)
			}
			for _, row := range []struct {
				id      string
				taskID  any
				created int64
			}{
				{"a", 30, 2000}, {"b", 10, 1000}, {"c", 20, 2000}, {"d", nil, 500}, {"e", 5, 3000},
			} {
				if _, err := s.db.ExecContext(ctx, `INSERT INTO export_tasks (id, task_id, fingerprint, parameters, created_at, state)
					VALUES ($1, $2, 'f', '{}', $3, 'PENDING')`, row.id, row.taskID, row.created); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Insert(ctx, Task{TaskID: 1, Fingerprint: "f", Parameters: "{}", State: StatePending}); err != nil {
				t.Fatal(err)
			}
			ts, err := s.List(ctx, Query{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var ids, seqs []int64
			for _, x := range ts {
				ids, seqs = append(ids, x.TaskID), append(seqs, x.Seq)
			}
			if !slices.Equal(ids, []int64{1, 5, 30, 20, 10}) || !slices.Equal(seqs, []int64{5, 4, 3, 2, 1}) {
				t.Fatalf("after the migration: tasks %v with seqs %v, want [1 5 30 20 10] with [5 4 3 2 1]", ids, seqs)
			}
		})
	}
}
