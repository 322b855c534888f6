package pgtest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func databaseExists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// TestDSNGivesEachTestADatabaseDroppedAtItsEnd: two DSNs name two empty
// databases of one server; each is dropped when its test ends, even with a
// connection left open.
func TestDSNGivesEachTestADatabaseDroppedAtItsEnd(t *testing.T) {
	var names []string
	var admin string
	skipped := false
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		a, b := pgtest.DSN(t), pgtest.DSN(t)
		if a == b {
			t.Fatalf("two DSNs are the same: %s", a)
		}
		ca := connect(t, a)
		if _, err := ca.Exec(context.Background(), "CREATE TABLE x (v int)"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := connect(t, b).QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("the second database sees the first one's table: %d %v", n, err)
		}
		for _, dsn := range []string{a, b} {
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(cfg.Database, "inner") {
				t.Errorf("database %q is not named after the test", cfg.Database)
			}
			names = append(names, cfg.Database)
		}
		admin = strings.Replace(a, "/"+names[0], "/postgres", 1)
	})
	if skipped {
		t.Skip("SKIPPED: PostgreSQL is not available (see the inner test)")
	}
	if len(names) != 2 {
		t.Fatal("the inner test did not run")
	}
	conn := connect(t, admin)
	for _, n := range names {
		if databaseExists(t, conn, n) {
			t.Errorf("database %s outlived its test", n)
		}
	}
}

// TestClusterStopsAndStartsWithItsData: a private cluster stopped refuses
// connections; started again it is on the same port with the same data.
func TestClusterStopsAndStartsWithItsData(t *testing.T) {
	c := pgtest.NewCluster(t)
	if c.Port() >= 32768 || c.Port() < 1024 {
		t.Fatalf("port %d is not below the ephemeral range", c.Port())
	}
	dsn := c.DSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	c.Stop(t)
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Fatal("a stopped cluster accepted a connection")
	}
	c.Start(t)
	var v int
	if err := connect(t, dsn).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after a restart: %d %v", v, err)
	}
}

// TestClusterStallAnswersNothing: a stalled cluster neither answers a query
// on an open connection nor a new connection, and refuses neither; once
// resumed it answers both.
func TestClusterStallAnswersNothing(t *testing.T) {
	c := pgtest.NewCluster(t)
	dsn := c.DSN(t)
	ctx := context.Background()
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	resumed := c.Stall(t, 3*time.Second)
	qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := conn.Exec(qctx, "SELECT 1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !pgconnTimeout(err) {
		t.Fatalf("a query to a stalled server: %v, want no answer before the deadline", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = pgx.Connect(cctx, dsn)
	cancel()
	if err == nil || strings.Contains(err.Error(), "refused") {
		t.Fatalf("a connection to a stalled server: %v, want no answer (not a refusal)", err)
	}
	<-resumed
	var one int
	if err := connect(t, dsn).QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the stall: %d %v", one, err)
	}
}

func pgconnTimeout(err error) bool {
	return err != nil && strings.Contains(err.Error(), "timeout")
}

// TestScriptStartsStopsAndStartsAgain: scripts/pg-cluster.sh makes a
// cluster that serves its URL, stops, and starts again on the same port
// with its data.
func TestScriptStartsStopsAndStartsAgain(t *testing.T) {
	pgtest.NewCluster(t) // skips (or fails) where PostgreSQL is missing
	script, err := filepath.Abs("../../scripts/pg-cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: as root the server runs as postgres, which must be
	// able to traverse the directory's parents.
	dir, err := os.MkdirTemp("", "pg-cluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command(script, "stop", dir).Run()
		os.RemoveAll(dir)
	})
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(script, args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("pg-cluster.sh %v: %v: %s", args, err, ee.Stderr)
			}
			t.Fatalf("pg-cluster.sh %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := run("start", dir, strconv.Itoa(port))
	if want := "postgres://test@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable"; url != want {
		t.Fatalf("start printed %q, want %q", url, want)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "off" {
		t.Errorf("fsync %q %v, want off", fsync, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	run("status", dir)
	run("stop", dir)
	if err := exec.Command(script, "status", dir).Run(); err == nil {
		t.Fatal("status says a stopped cluster runs")
	}
	if again := run("start", dir); again != url {
		t.Fatalf("a second start printed %q, want %q", again, url)
	}
	var v int
	if err := connect(t, run("url", dir)).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after a restart: %d %v", v, err)
	}
}
