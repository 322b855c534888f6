package taskstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cwpexport/cwpexport/server/schema"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the SQLite database file inside the data directory.
const FileName = "registry.db"

// lockName is the file a running SQLite store holds an exclusive lock on,
// so that two processes never share one data directory.
const lockName = "LOCK"

// dialect is what differs between the engines.
type dialect struct {
	// goose is the migrations' dialect.
	goose goose.Dialect
	// now is the database's clock in Unix microseconds, as an SQL
	// expression.
	now string
	// seqTaken reports whether err is a recording's refusal because a
	// concurrent one took the number it chose (see nextSeq).
	seqTaken func(err error) bool
	// migrateOptions are goose's options beyond the defaults.
	migrateOptions func() ([]goose.ProviderOption, error)
	// quickCheck runs SQLite's integrity check at start-up.
	quickCheck bool
	// optimize, when set, gathers the query planner's statistics at
	// start-up where they are missing or stale.
	optimize string
	// writeHint says what to check when the registry cannot be written.
	writeHint string
}

// sqliteDialect: one process at a time (the data directory's lock), so the
// database's clock is that process's clock.
var sqliteDialect = dialect{
	goose: goose.DialectSQLite3,
	now:   `CAST(unixepoch('subsec') * 1000000 AS INTEGER)`,
	seqTaken: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE && strings.Contains(e.Error(), "export_tasks.seq")
	},
	migrateOptions: func() ([]goose.ProviderOption, error) { return nil, nil },
	quickCheck:     true,
	// Without statistics SQLite would serve a list of a few callers' tasks
	// in one state from the state index (scanning every task in that
	// state) rather than from the creators' index. PostgreSQL gathers its
	// own (autovacuum).
	optimize:  "PRAGMA optimize=0x10002",
	writeHint: "check the file's and the directory's permissions and the free disk space",
}

// postgresDialect: replicas share the database, whose clock is the one
// they agree on.
var postgresDialect = dialect{
	goose: goose.DialectPostgres,
	now:   `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)`,
	seqTaken: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505" && e.ConstraintName == "export_tasks_seq"
	},
	migrateOptions: func() ([]goose.ProviderOption, error) {
		// Replicas starting at once migrate once: the first takes a
		// session-level advisory lock, the others wait for it (polling
		// every second, for up to 5 minutes) and find nothing to do.
		l, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, err
		}
		return []goose.ProviderOption{goose.WithSessionLocker(l)}, nil
	},
	writeHint: "check the database user's privileges and the server's free disk space",
}

// Open opens (creating if needed) the SQLite registry in dir and brings its
// schema up to date. It fails if another process has the directory open.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create the data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open the data directory's lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("the data directory %s is in use by another process: %w", dir, err)
	}
	if err := privateFiles(filepath.Join(dir, FileName)); err != nil {
		lock.Close()
		return nil, err
	}
	// synchronous(FULL) makes a commit durable before the answer returns:
	// a recorded task survives a crash of the machine, not only of the process.
	dsn := "file:" + filepath.Join(dir, FileName) +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open the registry: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	return open(ctx, &Store{db: db, d: sqliteDialect, lock: lock}, filepath.Join(dir, FileName))
}

// OpenPostgres opens the registry in the PostgreSQL database of pool and
// brings its schema up to date; replicas that start at once migrate it
// once. The pool stays the caller's: Close leaves it open.
func OpenPostgres(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	return open(ctx, &Store{db: stdlib.OpenDBFromPool(pool), d: postgresDialect}, "the PostgreSQL registry")
}

// open migrates and checks a store; name names it in errors.
func open(ctx context.Context, s *Store, name string) (*Store, error) {
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s %w", name, err)
	}
	return s, nil
}

// check proves that the database is whole and can be written: the service
// must never call the cloud for a creation it cannot record, nor serve
// from a damaged or read-only database as if it were healthy.
func (s *Store) check(ctx context.Context) error {
	if s.d.quickCheck {
		if err := s.quickCheck(ctx); err != nil {
			return err
		}
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO registry_checks (id, checked_at) VALUES (1, `+s.d.now+`)
		ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`); err != nil {
		return fmt.Errorf("cannot be written (%w); %s", err, s.d.writeHint)
	}
	if s.d.optimize != "" {
		if _, err := s.db.ExecContext(ctx, s.d.optimize); err != nil {
			return fmt.Errorf("cannot be analyzed (%w); %s", err, s.d.writeHint)
		}
	}
	return nil
}

// quickCheck runs SQLite's PRAGMA quick_check.
func (s *Store) quickCheck(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("cannot be checked (%w); restore it from a backup or move it away", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return fmt.Errorf("cannot be checked (%w); restore it from a backup or move it away", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("cannot be checked (%w); restore it from a backup or move it away", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("is damaged (%s); restore it from a backup or move it away", strings.Join(problems[:min(len(problems), 3)], "; "))
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	opts, err := s.d.migrateOptions()
	if err != nil {
		return fmt.Errorf("prepare the registry's migrations: %w", err)
	}
	p, err := goose.NewProvider(s.d.goose, s.db, fsys, append(opts, goose.WithDisableGlobalRegistry(true))...)
	if err != nil {
		return fmt.Errorf("prepare the registry's migrations: %w", err)
	}
	// The compatibility range is checked before and recorded after (package schema).
	_, err = schema.Open(ctx, s.db, "registry", fsys, func(ctx context.Context) error {
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("migrate the registry: %w", err)
		}
		return nil
	})
	return err
}

// Close closes the database (not a PostgreSQL pool given to OpenPostgres)
// and releases the data directory.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.lock != nil {
		s.lock.Close()
	}
	return err
}

// Backup writes a consistent copy of an SQLite registry to path (which
// must not exist) while the store stays in use. A PostgreSQL registry is
// backed up with PostgreSQL's tools (pg_dump).
func (s *Store) Backup(ctx context.Context, path string) error {
	if s.lock == nil {
		return errors.New("taskstore: a PostgreSQL registry is backed up with pg_dump")
	}
	_, err := s.db.ExecContext(ctx, "VACUUM INTO $1", path)
	return err
}
