// Package taskstore is the task registry's storage: every export task the
// service created, with its parameters, request id and last observed state.
// The default store is an SQLite database file (pure-Go driver, WAL mode,
// versioned migrations); its SQL is kept portable so that a PostgreSQL
// store can implement the same methods.
package taskstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file inside the data directory.
const FileName = "registry.db"

// lockName is the file a running store holds an exclusive lock on, so that
// two processes never share one data directory (reservations rely on it).
const lockName = "LOCK"

// The states the cloud reports, as stored.
const (
	StatePending  = "PENDING"
	StateFinished = "FINISHED"
	StateError    = "ERROR"
)

// ErrLostReservation means a creation's row is no longer the owner's to
// complete, release or mark (it was completed, released or marked already).
var ErrLostReservation = errors.New("taskstore: the creation is no longer held by this owner")

// Task is one registry row.
type Task struct {
	// ID identifies the row, a creation from before its cloud call to the
	// end; Reserve sets it when empty.
	ID string
	// TaskID is the cloud's task id; 0 while the creation's outcome is not
	// known.
	TaskID int64
	// RequestID is the caller's request id; empty when none was sent.
	RequestID string
	// Fingerprint identifies the request's parameters, to tell a retry from
	// a different request reusing a request id.
	Fingerprint string
	// Parameters are the request's export conditions, encoded by the caller.
	Parameters string
	// Creator is the caller's identity, when known.
	Creator string
	// Owner is the process instance making the creation's cloud call.
	Owner string
	// LeaseUntil is until when the owner's cloud call may be under way;
	// a creation without a task past it has an unknown outcome.
	LeaseUntil time.Time
	// Created is when the task was recorded (or reserved).
	Created time.Time
	// State is the last state the cloud reported.
	State string
	// DownloadURL is the last download URL the cloud gave.
	DownloadURL string
	// CreateRequestID is the RequestId of the cloud's answer to the creation.
	CreateRequestID string
	// LastRequestID is the RequestId of the last cloud answer about the task.
	LastRequestID string
	// Observed is when the cloud last answered about the task.
	Observed time.Time
	// Changed is when a change of state was last observed.
	Changed time.Time
	// EndReason says why the service stopped following a task that is not
	// terminal, why a task is ERROR without the cloud saying so, or (with
	// no task) why a creation's outcome is unknown; empty otherwise.
	EndReason string
}

// Terminal reports whether the task's recorded state is final.
func (t Task) Terminal() bool { return t.State == StateFinished || t.State == StateError }

// InFlight reports whether the row is a creation whose cloud call may still
// be under way at now.
func (t Task) InFlight(now time.Time) bool {
	return t.TaskID == 0 && t.EndReason == "" && now.Before(t.LeaseUntil)
}

// Observation is what one cloud answer said about a task.
type Observation struct {
	TaskID      int64
	State       string
	DownloadURL string
	RequestID   string
	Observed    time.Time
	Changed     time.Time
}

// Cursor is a position in the newest-first order of tasks.
type Cursor struct {
	Created time.Time
	TaskID  int64
}

// Query selects one page of tasks.
type Query struct {
	// State keeps only tasks in this state; empty keeps all.
	State string
	// Creators keeps only tasks these callers created; nil keeps all, an
	// empty list none.
	Creators []string
	// After starts the page after this position; nil starts at the newest.
	After *Cursor
	// Limit is the page size.
	Limit int
}

// SQLite is the registry in an SQLite database file.
type SQLite struct {
	db   *sql.DB
	lock *os.File
}

// Open opens (creating if needed) the registry in dir and brings its schema
// up to date. It fails if another process has the directory open.
func Open(ctx context.Context, dir string) (*SQLite, error) {
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
	s := &SQLite{db: db, lock: lock}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s %w", filepath.Join(dir, FileName), err)
	}
	return s, nil
}

// check proves that the database is whole and can be written: the service
// must never call the cloud for a creation it cannot record, nor serve
// from a damaged or read-only file as if it were healthy.
func (s *SQLite) check(ctx context.Context) error {
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
	if _, err := s.db.ExecContext(ctx, `INSERT INTO registry_checks (id, checked_at) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("cannot be written (%w); check the file's and the directory's permissions and the free disk space", err)
	}
	return nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("prepare the registry's migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate the registry: %w", err)
	}
	return nil
}

// Close closes the database and releases the data directory.
func (s *SQLite) Close() error {
	err := s.db.Close()
	s.lock.Close()
	return err
}

// Backup writes a consistent copy of the database to path (which must not
// exist) while the store stays in use.
func (s *SQLite) Backup(ctx context.Context, path string) error {
	_, err := s.db.ExecContext(ctx, "VACUUM INTO ?", path)
	return err
}

const columns = `id, task_id, request_id, fingerprint, parameters, creator, owner, created_at, state, download_url,
	create_request_id, last_request_id, observed_at, changed_at, end_reason, lease_until`

// Insert records a task created without a request id.
func (s *SQLite) Insert(ctx context.Context, t Task) error {
	if t.ID == "" {
		t.ID = uuid.NewString()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO export_tasks (`+columns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, nullableID(t.TaskID), nullable(t.RequestID), t.Fingerprint, t.Parameters, t.Creator, t.Owner,
		micros(t.Created), t.State, t.DownloadURL, t.CreateRequestID, t.LastRequestID, micros(t.Observed), micros(t.Changed), t.EndReason,
		micros(t.LeaseUntil))
	return err
}

// Reserve records a creation before its cloud call: r (with its ID set
// when empty) under way until r.LeaseUntil. When r's creator already used
// r's request id, nothing is written and the recorded row is returned with
// false.
func (s *SQLite) Reserve(ctx context.Context, r Task) (Task, bool, error) {
	if r.ID == "" {
		r.ID = uuid.NewString()
	}
	r.TaskID, r.State = 0, ""
	res, err := s.db.ExecContext(ctx, `INSERT INTO export_tasks (id, request_id, fingerprint, parameters, creator, owner, created_at, lease_until)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (creator, request_id) DO NOTHING`,
		r.ID, nullable(r.RequestID), r.Fingerprint, r.Parameters, r.Creator, r.Owner, micros(r.Created), micros(r.LeaseUntil))
	if err != nil {
		return Task{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return Task{}, false, err
	} else if n == 1 {
		return r, true, nil
	}
	t, found, err := s.GetRequest(ctx, r.Creator, r.RequestID)
	if err == nil && !found {
		// Released between the insert and the read: the caller retries.
		err = ErrLostReservation
	}
	return t, false, err
}

// GetRequest returns the row of creator's request id.
func (s *SQLite) GetRequest(ctx context.Context, creator, requestID string) (Task, bool, error) {
	return s.scanOne(ctx, `WHERE creator = ? AND request_id = ?`, creator, requestID)
}

// Complete records the task the cloud created for owner's creation id.
func (s *SQLite) Complete(ctx context.Context, id, owner string, t Task) error {
	return s.ownerUpdate(ctx, `UPDATE export_tasks SET task_id = ?, created_at = ?, state = ?,
		create_request_id = ?, last_request_id = ?, observed_at = ?, changed_at = ?, owner = '', lease_until = 0`, id, owner,
		t.TaskID, micros(t.Created), t.State, t.CreateRequestID, t.LastRequestID, micros(t.Observed), micros(t.Changed))
}

// Release drops owner's creation id: the cloud certainly created nothing,
// and its request id may be tried again.
func (s *SQLite) Release(ctx context.Context, id, owner string) error {
	return s.ownerUpdate(ctx, `DELETE FROM export_tasks`, id, owner)
}

// Unknown records that owner's creation id has an unknown outcome: the
// cloud may have created a task whose id never reached the service.
func (s *SQLite) Unknown(ctx context.Context, id, owner, reason string) error {
	return s.ownerUpdate(ctx, `UPDATE export_tasks SET end_reason = ?, owner = '', lease_until = 0`, id, owner, reason)
}

// ownerUpdate runs stmt (an UPDATE or DELETE with its arguments) on the
// creation id that owner holds and that has no task yet.
func (s *SQLite) ownerUpdate(ctx context.Context, stmt, id, owner string, args ...any) error {
	res, err := s.db.ExecContext(ctx, stmt+` WHERE id = ? AND owner = ? AND task_id IS NULL AND end_reason = ''`, append(args, id, owner)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return ErrLostReservation
	}
	return nil
}

// Get returns the task with the cloud id taskID.
func (s *SQLite) Get(ctx context.Context, taskID int64) (Task, bool, error) {
	return s.scanOne(ctx, `WHERE task_id = ?`, taskID)
}

// Observe records a cloud answer about a task; tasks not in the registry
// are ignored. Observations never go back: one older than the recorded one
// is ignored, and a terminal state is never replaced by another state, in
// whatever order concurrent writes arrive. A task that ends is no longer
// marked as given up.
func (s *SQLite) Observe(ctx context.Context, o Observation) error {
	_, err := s.db.ExecContext(ctx, `UPDATE export_tasks SET state = ?, download_url = ?, last_request_id = ?,
		observed_at = ?, changed_at = CASE WHEN state = ? THEN changed_at ELSE ? END,
		end_reason = CASE WHEN ? IN (?, ?) THEN '' ELSE end_reason END
		WHERE task_id = ? AND observed_at <= ? AND (state NOT IN (?, ?) OR state = ?)`,
		o.State, o.DownloadURL, o.RequestID, micros(o.Observed), o.State, micros(o.Changed),
		o.State, StateFinished, StateError,
		o.TaskID, micros(o.Observed), StateFinished, StateError, o.State)
	return err
}

// Abandon records why the service stopped following a task; its state
// stays what was last observed.
func (s *SQLite) Abandon(ctx context.Context, taskID int64, reason string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE export_tasks SET end_reason = ? WHERE task_id = ?`, reason, taskID)
	return err
}

// Lost ends a task the cloud no longer knows: it is ERROR, for the reason
// given, unless it already ended.
func (s *SQLite) Lost(ctx context.Context, taskID int64, reason string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE export_tasks SET state = ?, end_reason = ?, observed_at = ?,
		changed_at = CASE WHEN state = ? THEN changed_at ELSE ? END
		WHERE task_id = ? AND state NOT IN (?, ?)`,
		StateError, reason, micros(at), StateError, micros(at), taskID, StateFinished, StateError)
	return err
}

// Following returns the tasks still to follow: recorded, not terminal and
// not abandoned, oldest first.
func (s *SQLite) Following(ctx context.Context) ([]Task, error) {
	return s.scan(ctx, `WHERE task_id IS NOT NULL AND state NOT IN (?, ?) AND end_reason = '' ORDER BY created_at, task_id`,
		StateFinished, StateError)
}

// List returns one page of recorded tasks, newest first. Pages continue
// from a cursor (the last task of the previous page), so tasks recorded
// meanwhile, which are newer, never shift or repeat later pages.
func (s *SQLite) List(ctx context.Context, q Query) ([]Task, error) {
	if q.Creators != nil && len(q.Creators) == 0 {
		return nil, nil
	}
	tail, args := listQuery(q)
	return s.scan(ctx, tail, args...)
}

// listQuery is the WHERE, ORDER and LIMIT of List.
func listQuery(q Query) (string, []any) {
	where := `WHERE task_id IS NOT NULL`
	var args []any
	if q.State != "" {
		where += ` AND state = ?`
		args = append(args, q.State)
	}
	if len(q.Creators) > 0 {
		// IN on the indexed column, not a function of it: the index on
		// (creator, created_at, task_id) serves each creator's range.
		where += ` AND creator IN (?` + strings.Repeat(`, ?`, len(q.Creators)-1) + `)`
		for _, c := range q.Creators {
			args = append(args, c)
		}
	}
	if q.After != nil {
		c := micros(q.After.Created)
		where += ` AND (created_at < ? OR (created_at = ? AND task_id < ?))`
		args = append(args, c, c, q.After.TaskID)
	}
	args = append(args, q.Limit)
	return where + ` ORDER BY created_at DESC, task_id DESC LIMIT ?`, args
}

func (s *SQLite) Secret(ctx context.Context, name string, generate func() []byte) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO service_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		name, hex.EncodeToString(generate())); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	var v string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM service_secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("secret %s is not hex: %w", name, err)
	}
	return b, nil
}

func (s *SQLite) scanOne(ctx context.Context, where string, args ...any) (Task, bool, error) {
	ts, err := s.scan(ctx, where, args...)
	if err != nil || len(ts) == 0 {
		return Task{}, false, err
	}
	return ts[0], true, nil
}

func (s *SQLite) scan(ctx context.Context, tail string, args ...any) ([]Task, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM export_tasks `+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		var (
			t                                 Task
			taskID                            sql.NullInt64
			requestID                         sql.NullString
			created, observed, changed, lease int64
		)
		if err := rows.Scan(&t.ID, &taskID, &requestID, &t.Fingerprint, &t.Parameters, &t.Creator, &t.Owner, &created, &t.State,
			&t.DownloadURL, &t.CreateRequestID, &t.LastRequestID, &observed, &changed, &t.EndReason, &lease); err != nil {
			return nil, err
		}
		t.TaskID, t.RequestID = taskID.Int64, requestID.String
		t.Created, t.Observed, t.Changed, t.LeaseUntil = fromMicros(created), fromMicros(observed), fromMicros(changed), fromMicros(lease)
		out = append(out, t)
	}
	return out, rows.Err()
}

func nullableID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
