// Package schema keeps rolling upgrades safe: it records, in each store's
// database, the range of builds that can serve its schema, and refuses to
// start a build outside that range.
//
// A store's migrations are numbered files (00004_name.sql). Migrations only
// expand a schema (new tables, new nullable or defaulted columns, new
// indexes) while a previous release may still run beside this one, so that
// build keeps serving a schema newer than it knows. A migration that
// contracts it (drops, renames, narrows) is marked with a line
//
//	-- cwpexport:contract
//
// and may only remove what the previous release no longer uses. Applying it
// raises the store's required version to the migration's own: from then on
// builds that do not carry it refuse to start against that database, with
// an error that says which release to run, instead of failing on a missing
// column halfway through a request.
package schema

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ContractMarker marks a migration that contracts the schema.
const ContractMarker = "-- cwpexport:contract"

// Table is where each store's compatibility range is recorded. Every build
// since the range was introduced reads it before migrating.
const Table = "schema_compatibility"

// Migration is one migration file.
type Migration struct {
	Version  int64
	Name     string
	Contract bool
}

// Set is a store's migrations, as a build carries them.
type Set struct {
	Migrations []Migration
	// Known is the highest version; Requires the highest contracting
	// one (0 when none contracts).
	Known, Requires int64
}

// Read reads the migrations in fsys (its top-level *.sql files).
func Read(fsys fs.FS) (Set, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return Set{}, err
	}
	var s Set
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return Set{}, fmt.Errorf("migration %s: the name must start with its version (00001_what.sql)", name)
		}
		f, err := fsys.Open(name)
		if err != nil {
			return Set{}, err
		}
		m := Migration{Version: v, Name: name}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == ContractMarker {
				m.Contract = true
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return Set{}, fmt.Errorf("migration %s: %w", name, err)
		}
		s.Migrations = append(s.Migrations, m)
		s.Known = max(s.Known, v)
		if m.Contract {
			s.Requires = max(s.Requires, v)
		}
	}
	sort.Slice(s.Migrations, func(i, j int) bool { return s.Migrations[i].Version < s.Migrations[j].Version })
	return s, nil
}

// Status is what a build found when it opened a store.
type Status struct {
	// Store names the store: "registry" or "fleet".
	Store string
	// Known is the highest migration this build carries; Database the
	// highest applied to the database, by this build or a newer one;
	// Requires the oldest version a build must know to serve it.
	Known, Database, Requires int64
}

// ErrIncompatible is wrapped by the refusal to serve a database whose
// schema this build cannot serve.
var ErrIncompatible = errors.New("incompatible schema")

// Open brings a store's schema up to date with migrate, between two
// checks: before, that this build may serve the database at all; after,
// the range recorded for the builds to come. db is the store's database
// (SQLite or PostgreSQL; the SQL is portable).
func Open(ctx context.Context, db *sql.DB, store string, fsys fs.FS, migrate func(context.Context) error) (Status, error) {
	set, err := Read(fsys)
	if err != nil {
		return Status{}, fmt.Errorf("read the %s's migrations: %w", store, err)
	}
	st := Status{Store: store, Known: set.Known}
	if st.Database, st.Requires, err = recorded(ctx, db, store); err != nil {
		// No table yet (a database from before the range was recorded):
		// create it. Otherwise nothing is written unless the range grows,
		// so that a read-only database reaches the store's own check,
		// which says what to fix.
		if cerr := createTable(ctx, db); cerr != nil {
			return Status{}, fmt.Errorf("read the %s's schema range (%w), or create its table: %w", store, err, cerr)
		}
		if st.Database, st.Requires, err = recorded(ctx, db, store); err != nil {
			return Status{}, fmt.Errorf("read the %s's schema range: %w", store, err)
		}
	}
	if st.Requires > set.Known {
		return st, fmt.Errorf("%w: the %s's database was migrated by a newer release to schema version %d, which needs a build that knows at least version %d; this build knows up to %d: run that newer release (or restore the database from before the upgrade to roll back)",
			ErrIncompatible, store, st.Database, st.Requires, set.Known)
	}
	if err := migrate(ctx); err != nil {
		return st, err
	}
	if st.Database >= set.Known && st.Requires >= set.Requires {
		remember(st)
		return st, nil
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO `+Table+` (store, version, requires) VALUES ($1, $2, $3)
		ON CONFLICT (store) DO UPDATE SET
		  version = CASE WHEN excluded.version > `+Table+`.version THEN excluded.version ELSE `+Table+`.version END,
		  requires = CASE WHEN excluded.requires > `+Table+`.requires THEN excluded.requires ELSE `+Table+`.requires END`,
		store, set.Known, set.Requires); err != nil {
		return st, fmt.Errorf("record the %s's schema range: %w", store, err)
	}
	st.Database, st.Requires = max(st.Database, set.Known), max(st.Requires, set.Requires)
	remember(st)
	return st, nil
}

func createTable(ctx context.Context, db *sql.DB) error {
	create := `CREATE TABLE IF NOT EXISTS ` + Table + ` (
		store    VARCHAR(32) NOT NULL PRIMARY KEY,
		version  BIGINT      NOT NULL,
		requires BIGINT      NOT NULL)`
	_, err := db.ExecContext(ctx, create)
	if err != nil {
		// Two replicas creating it at once on PostgreSQL: one loses a race
		// on the catalog; the table exists now.
		_, err = db.ExecContext(ctx, create)
	}
	return err
}

func recorded(ctx context.Context, db *sql.DB, store string) (version, requires int64, err error) {
	err = db.QueryRowContext(ctx, `SELECT version, requires FROM `+Table+` WHERE store = $1`, store).Scan(&version, &requires)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return version, requires, err
}

var (
	mu     sync.Mutex
	opened = map[string]Status{}
)

func remember(st Status) {
	mu.Lock()
	defer mu.Unlock()
	opened[st.Store] = st
}

// Opened returns the status of each store this process opened last, for
// the metrics.
func Opened() []Status {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Status, 0, len(opened))
	for _, st := range opened {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Store < out[j].Store })
	return out
}
