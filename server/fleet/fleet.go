// Package fleet is what several replicas of the service share on
// PostgreSQL: one budget per cloud action for the whole fleet, one schedule
// of the tasks' polls in which exactly one replica polls a task at a time
// (under a lease fenced by an epoch), and a feed of the polls' observations
// (LISTEN/NOTIFY carrying the rows the polls wrote, the table the truth to
// read again after a listener's reconnect) so that watchers on every
// replica learn what any replica observed.
//
// A single process needs none of it: package budget and tracker.Local are
// its engines. The program chooses the engines in one place at start-up.
//
// Everything here fails closed: while the database cannot be reached no
// cloud call starts, and callers get clear errors.
//
// One clock: every time stored or compared across replicas is the
// database's (clock_timestamp()). A replica reads it through Fleet.Now, its
// own clock corrected by the offset measured on its round trips to the
// database, so that replicas whose clocks are seconds apart still agree.
package fleet

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/cwpexport/cwpexport/server/schema"
)

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable keeps the fleet's schema version, apart from the registry's.
const versionTable = "fleet_db_version"

// migrationLockID is the advisory lock under which one replica at a time
// migrates the fleet's tables.
const migrationLockID = 0x63777066 // "cwpf"

// DefaultUnhealthyAfter is how long the database may be unreachable before
// the fleet reports itself unhealthy (readiness).
const DefaultUnhealthyAfter = 5 * time.Second

// ErrUnavailable wraps every failure to reach the database: the fleet
// then makes no cloud call.
var ErrUnavailable = errors.New("the fleet's database cannot be reached")

// Options configure a Fleet.
type Options struct {
	// Replica names this process in leases and interest; default a random
	// UUID (it must differ between processes and runs).
	Replica string
	// UnhealthyAfter: see DefaultUnhealthyAfter.
	UnhealthyAfter time.Duration
	// Logger receives the fleet's troubles; nil discards.
	Logger *slog.Logger
	// Clock is this replica's own clock, which Now corrects to the
	// database's; nil means time.Now.
	Clock func() time.Time
}

// Fleet is this replica's handle on the shared state.
type Fleet struct {
	pool *pgxpool.Pool
	opts Options
	// lastOK is when the database last answered (unix nanoseconds), for
	// readiness.
	lastOK atomic.Int64
	// offset is the database's clock minus this replica's, in
	// nanoseconds, as last measured (syncClock).
	offset atomic.Int64
	// feedStale is set while the schedule's listener is taken for dead
	// (see watchFeed).
	feedStale atomic.Bool
}

// Open migrates the fleet's tables (once, whatever the number of replicas
// starting together) and returns this replica's handle.
func Open(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Fleet, error) {
	if opts.Replica == "" {
		opts.Replica = uuid.NewString()
	}
	if opts.UnhealthyAfter <= 0 {
		opts.UnhealthyAfter = DefaultUnhealthyAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	f := &Fleet{pool: pool, opts: opts}
	if err := f.migrate(ctx); err != nil {
		return nil, err
	}
	if err := f.syncClock(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// clockSync is how often Watch measures the database's clock again.
const clockSync = 5 * time.Second

// syncClock measures the offset of the database's clock from this
// replica's: the database's reading against the middle of the round trip
// (off by at most half of it).
func (f *Fleet) syncClock(ctx context.Context) error {
	var db time.Time
	before := f.opts.Clock()
	err := f.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&db)
	after := f.opts.Clock()
	if err := f.check(ctx, err); err != nil {
		return err
	}
	f.offset.Store(int64(db.Sub(before.Add(after.Sub(before) / 2))))
	return nil
}

// Now is the database's clock as this replica reads it: its own clock
// corrected by the offset last measured. Times compared with the fleet's
// (rows, observations, the registry's) are read from it.
func (f *Fleet) Now() time.Time {
	return f.opts.Clock().Add(time.Duration(f.offset.Load())).Round(0)
}

func (f *Fleet) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 600))
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(f.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithDisableGlobalRegistry(true), goose.WithTableName(versionTable), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("prepare the fleet's migrations: %w", err)
	}
	// The compatibility range is checked before and recorded after (package schema).
	_, err = schema.Open(ctx, db, "fleet", fsys, func(ctx context.Context) error {
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("migrate the fleet's tables: %w", err)
		}
		return nil
	})
	return err
}

// Replica is this process's name in the fleet.
func (f *Fleet) Replica() string { return f.opts.Replica }

// ok records that the database answered.
func (f *Fleet) ok() { f.lastOK.Store(time.Now().UnixNano()) }

// check records the outcome of a database call and wraps a failure in
// ErrUnavailable (unless the caller's context ended).
func (f *Fleet) check(ctx context.Context, err error) error {
	if err == nil {
		f.ok()
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Healthy reports whether the database answered within UnhealthyAfter and
// the schedule's feed is live (a replica that misses the other replicas'
// poll results would answer from stale observations).
func (f *Fleet) Healthy() bool {
	return time.Since(time.Unix(0, f.lastOK.Load())) < f.opts.UnhealthyAfter && !f.feedStale.Load()
}

// PingWhileIdle pings the database every second in which nothing else got
// an answer from it, and measures its clock every clockSync, until ctx
// ends, so that Healthy and Now follow it even when nothing else calls it.
func (f *Fleet) PingWhileIdle(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var synced time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, f.lastOK.Load())) < time.Second && time.Since(synced) < clockSync {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		if f.syncClock(pctx) == nil {
			synced = time.Now()
		}
		cancel()
	}
}
