package suite

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The counter sees one round trip per statement a client waits for, one
// per batch, and one per statement prepared on first use, each labelled by
// what it ran and timed; the bytes pass unchanged.
func TestPGCounterCountsRoundTrips(t *testing.T) {
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c, err := startPGCounter(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	u.Host = c.addr()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	const single = "SELECT $1::int + 1"
	for i := range 5 {
		var got int
		if err := conn.QueryRow(ctx, single, i).Scan(&got); err != nil || got != i+1 {
			t.Fatalf("query %d through the counter: %d, %v", i, got, err)
		}
	}
	b := &pgx.Batch{}
	b.Queue("SELECT $1::int * 2", 1)
	b.Queue("SELECT $1::int * 3", 1)
	b.Queue("SELECT $1::int * 4", 1)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "-- ping"); err != nil {
		t.Fatal(err)
	}

	want := map[string]int64{
		"other: " + single:                                5, // each Bind+Execute+Sync
		"other: SELECT $1::int * 2":                       1, // the batch, labelled by its first statement
		"prepare a statement (first use on a connection)": 2, // the single statement; the batch's three together
		"pool: ping":                                      1,
	}
	// The counter decodes what it has already passed on: its count of the
	// last round trip may come a moment after the answer.
	var got map[string]int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = c.snapshot(); got["pool: ping"] == 1 {
			break
		}
	}
	for label, n := range want {
		if got[label] != n {
			t.Errorf("%q: %d round trips, want %d (all: %v)", label, got[label], n, got)
		}
	}
	if d := c.durations("other: " + single); len(d) != 5 {
		t.Errorf("%d durations of %q, want 5", len(d), single)
	}
}

// The fleet's statements get the labels the fleet benchmarks add up.
func TestLabels(t *testing.T) {
	for sql, want := range map[string]string{
		"\nUPDATE fleet_budget SET\n  last_gap = (1 + $6::float8) / fleet_budget_rate(...)":                         labelCreateSlot,
		"... LIMIT 1\n  FOR UPDATE OF t SKIP LOCKED\n), b AS (SELECT ... FROM fleet_budget":                         labelClaim,
		"WITH upd AS (UPDATE fleet_tasks AS t ...) SELECT t.*, pg_notify('cwpexport_tasks', t.task_id::text)::text": labelResult,
		"UPDATE fleet_tasks SET owner = '', lease_until = NULL, due = clock_timestamp()\n\t\tWHERE task_id = $1":    labelRelease,
		"INSERT INTO export_tasks (id, creator) VALUES ($1, $2)":                                                    "registry: insert",
		"begin":     "registry: begin",
		"-- ping":   "pool: ping",
		"SELECT 42": "other: SELECT 42",
	} {
		if got := label(sql); got != want {
			t.Errorf("label(%q) = %q, want %q", sql, got, want)
		}
	}
}
