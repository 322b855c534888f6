// Package pgtest gives tests a real, throwaway PostgreSQL: Debian's server
// binaries (/usr/lib/postgresql/<version>/bin), a cluster in a temporary
// directory listening on 127.0.0.1 at a free port below 32768, its Unix
// socket in that directory, fsync off.
//
// A package whose tests use it runs them through Run (or Main) in its
// TestMain: the first DSN starts one cluster for the test binary, and Run
// stops it and removes its directory at the end. DSN gives each test a
// database of its own, dropped when the test ends. NewCluster gives a test
// a private cluster it may stop, start again and stall.
//
// CWPEXPORT_TEST_PG=postgres://user@host:port/db points DSN at an existing
// server instead (the user needs CREATEDB). Without PostgreSQL (no server
// binaries, or no "postgres" user to run them as root), the tests that need
// it are skipped with a message that starts with "SKIPPED: PostgreSQL";
// with CWPEXPORT_REQUIRE_PG=1 (as CI sets) they fail instead.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Environment variables that configure the package.
const (
	// EnvExternal names an existing server for DSN, as a postgres:// URL.
	EnvExternal = "CWPEXPORT_TEST_PG"
	// EnvRequire, set to 1, fails the tests that need PostgreSQL where it is
	// missing rather than skip them.
	EnvRequire = "CWPEXPORT_REQUIRE_PG"
	// EnvBinDir names the directory of initdb and postgres when they are
	// neither in /usr/lib/postgresql/*/bin nor on PATH.
	EnvBinDir = "CWPEXPORT_PG_BINDIR"
)

var (
	running atomic.Bool  // Run is running the tests
	skipped atomic.Int32 // tests skipped for want of PostgreSQL

	sharedOnce    sync.Once
	sharedCluster *Cluster
	sharedErr     error
)

// Run runs the tests and then stops the cluster DSN started, if any, and
// removes its directory; it returns m.Run's code. Call it from TestMain
// (or call Main).
func Run(m *testing.M) int {
	running.Store(true)
	code := m.Run()
	running.Store(false)
	if sharedCluster != nil {
		if err := sharedCluster.destroy(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop the test cluster:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if n := skipped.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "\n*** pgtest: %d test(s) SKIPPED: PostgreSQL is not available here (install the Debian package postgresql, or set %s) ***\n\n", n, EnvExternal)
	}
	return code
}

// Main is a TestMain that runs the tests with Run and exits with its code.
func Main(m *testing.M) { os.Exit(Run(m)) }

// DSN returns the URL of a new, empty database, named after the test, on
// the test binary's cluster (or on CWPEXPORT_TEST_PG's server); the
// database is dropped when the test ends, its connections closed by force.
func DSN(t testing.TB) string {
	t.Helper()
	admin, err := sharedAdminURL(t)
	if err != nil {
		unavailable(t, err)
	}
	dsn, drop, err := createDatabase(context.Background(), admin, t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(context.Background()); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dsn
}

// sharedAdminURL returns the URL of the server DSN creates databases on,
// starting the test binary's cluster on first use.
func sharedAdminURL(t testing.TB) (string, error) {
	if ext := os.Getenv(EnvExternal); ext != "" {
		u, err := url.Parse(ext)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			t.Fatalf("pgtest: %s must be a postgres:// URL", EnvExternal)
		}
		return ext, nil
	}
	if !running.Load() {
		t.Fatalf("pgtest: DSN needs the package's TestMain to run the tests through pgtest.Run or pgtest.Main")
	}
	sharedOnce.Do(func() { sharedCluster, sharedErr = startCluster() })
	if sharedErr != nil {
		return "", sharedErr
	}
	return sharedCluster.adminURL(), nil
}

// unavailable skips the test, loudly, when PostgreSQL is not installed (or
// fails it under CWPEXPORT_REQUIRE_PG=1), and fails it on any other error.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, errNotInstalled) {
		t.Fatalf("pgtest: %v", err)
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("PostgreSQL is required (%s=1) but %v", EnvRequire, err)
	}
	skipped.Add(1)
	t.Skipf("SKIPPED: PostgreSQL is not available: %v. Install the Debian package postgresql (apt-get install postgresql), or set %s=postgres://user@host:port/db", err, EnvExternal)
}

// createDatabase creates a database named after name on the server of the
// admin URL and returns its URL and the function that drops it.
func createDatabase(ctx context.Context, admin, name string) (string, func(context.Context) error, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("parse the server's URL: %w", err)
	}
	db := databaseName(name)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", db, err)
	}
	drop := func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return fmt.Errorf("connect to drop database %s: %w", db, err)
		}
		defer conn.Close(ctx)
		// FORCE ends the connections a test left open.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", db, err)
		}
		return nil
	}
	u.Path = "/" + db
	return u.String(), drop, nil
}

// databaseName is a database name made of the test's name and a random
// suffix (tests may run more than once, and binaries may share a server),
// within PostgreSQL's 63 bytes.
func databaseName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 48 {
		// The test's start and its end (a subtest's name) tell most.
		name = name[:20] + "_" + name[len(name)-27:]
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	return "t_" + name + "_" + hex.EncodeToString(suffix)
}

// FreePort returns a TCP port below 32768 that nothing listens on at
// 127.0.0.1 now: outside the ephemeral range (32768-60999), where a
// client's own outgoing connection could take it from a server that stops
// and starts again.
func FreePort() (int, error) {
	var buf [2]byte
	for range 200 {
		_, _ = rand.Read(buf[:])
		port := 20000 + int(binary.BigEndian.Uint16(buf[:]))%12768
		lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		lis.Close()
		return port, nil
	}
	return 0, errors.New("no free port below 32768 at 127.0.0.1")
}
