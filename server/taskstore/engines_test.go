package taskstore_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/pgtest"
	"github.com/cwpexport/cwpexport/server/taskstore"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// engine is a database engine of the registry under test.
type engine struct {
	name string
	// place returns a new, empty place for a registry: a data directory,
	// a database's URL.
	place func(t testing.TB) string
	// open opens the registry at place, as one process (a replica) does;
	// what it opens is closed when the test ends.
	open func(t testing.TB, place string) *taskstore.Store
}

var (
	sqliteEngine   = engine{name: "sqlite", place: func(t testing.TB) string { return t.TempDir() }, open: openSQLite}
	postgresEngine = engine{name: "postgres", place: pgtest.DSN, open: openPostgres}
)

// eachEngine runs test on every engine, as a subtest named after it.
func eachEngine(t *testing.T, test func(t *testing.T, e engine)) {
	for _, e := range []engine{sqliteEngine, postgresEngine} {
		t.Run(e.name, func(t *testing.T) { test(t, e) })
	}
}

// newStore opens a registry in a new place of engine e.
func newStore(t *testing.T, e engine) *taskstore.Store { return e.open(t, e.place(t)) }

func openSQLite(t testing.TB, dir string) *taskstore.Store {
	t.Helper()
	s, err := taskstore.Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres opens the registry with a pool of its own, as a replica.
func openPostgres(t testing.TB, dsn string) *taskstore.Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	s, err := taskstore.OpenPostgres(context.Background(), pool)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
