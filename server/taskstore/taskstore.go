// Package taskstore is the task registry's storage: every export task the
// service created, with its parameters, request id and last observed state.
//
// One implementation serves two engines: an SQLite database file in a data
// directory (Open: pure-Go driver, WAL mode; the default) and PostgreSQL
// (OpenPostgres: through pgx, shared by every replica of a fleet). Both run
// the same queries and the same versioned migrations; what differs (the
// database's clock, the data directory's lock, integrity checks, backups,
// the migration lock) is in a dialect.
//
// Nothing here depends on the clocks of the processes sharing the registry:
// lists are ordered by a number the database gives each task as it is
// recorded, and creations' leases are set and compared by the database's
// clock.
package taskstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

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
	// Seq is the task's place in the order of recording: the database
	// numbers tasks as they are recorded, in increasing order. 0 for a
	// creation without a task.
	Seq int64
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
	// LeaseUntil is until when, by the database's clock, the owner's cloud
	// call may be under way; a creation without a task past it has an
	// unknown outcome.
	LeaseUntil time.Time
	// InFlight is whether, when the row was read, it was a creation whose
	// cloud call may still be under way: no task, no outcome recorded, and
	// its lease not past by the database's clock.
	InFlight bool
	// CallStarted is whether the creation's cloud call may have started
	// (see CallStarting); a creation without it never reached the cloud.
	CallStarted bool
	// Created is when the task was recorded (or reserved), by the clock of
	// the process that recorded it; for people, not for ordering.
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
	// Seq is the Seq of the last task of the previous page.
	Seq int64
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

// Store is the task registry in an SQL database.
type Store struct {
	db   *sql.DB
	d    dialect
	lock *os.File // SQLite: the data directory's lock
}

// columns are the stored columns of a Task, as Insert writes them.
const columns = `id, task_id, request_id, fingerprint, parameters, creator, owner, created_at, state, download_url,
	create_request_id, last_request_id, observed_at, changed_at, end_reason, lease_until`

// nextSeq numbers a task being recorded: one more than the highest number.
// A concurrent recording (on PostgreSQL) may take the same number; the
// unique index refuses the second, which numbers itself again (see
// numbered), so numbers increase in the order recordings commit.
const nextSeq = `(SELECT COALESCE(MAX(seq), 0) + 1 FROM export_tasks)`

// maxNumberingAttempts bounds the retries of a recording whose number
// others took first; each retry means that another recording succeeded.
const maxNumberingAttempts = 50

// selectColumns reads a Task: the stored columns, the number, and whether
// the row is in flight by the database's clock.
func (s *Store) selectColumns() string {
	return `SELECT ` + columns + `, COALESCE(seq, 0),
		CASE WHEN task_id IS NULL AND end_reason = '' AND lease_until > ` + s.d.now + ` THEN 1 ELSE 0 END, call_started
		FROM export_tasks `
}

// Insert records a task the cloud created (a TaskID is required) without a
// reservation.
func (s *Store) Insert(ctx context.Context, t Task) error {
	if t.TaskID == 0 {
		return errors.New("taskstore: Insert needs the cloud's task id")
	}
	if t.ID == "" {
		t.ID = uuid.NewString()
	}
	_, err := s.numbered(ctx, `INSERT INTO export_tasks (`+columns+`, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, `+nextSeq+`)`,
		t.ID, t.TaskID, nullable(t.RequestID), t.Fingerprint, t.Parameters, t.Creator, t.Owner,
		micros(t.Created), t.State, t.DownloadURL, t.CreateRequestID, t.LastRequestID, micros(t.Observed), micros(t.Changed), t.EndReason,
		micros(t.LeaseUntil))
	return err
}

// Reserve records a creation before its cloud call: r (with its ID set
// when empty), under way for lease from now by the database's clock (0 or
// less: a lease already past). When r's creator already used r's request
// id, nothing is written and the recorded row is returned with false.
func (s *Store) Reserve(ctx context.Context, r Task, lease time.Duration) (Task, bool, error) {
	if r.ID == "" {
		r.ID = uuid.NewString()
	}
	r.TaskID, r.Seq, r.State = 0, 0, ""
	var until int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO export_tasks (id, request_id, fingerprint, parameters, creator, owner, created_at, lease_until, call_started)
		VALUES ($1, $2, $3, $4, $5, $6, $7, `+s.d.now+` + $8, 0) ON CONFLICT (creator, request_id) DO NOTHING RETURNING lease_until`,
		r.ID, nullable(r.RequestID), r.Fingerprint, r.Parameters, r.Creator, r.Owner, micros(r.Created), lease.Microseconds()).Scan(&until)
	switch {
	case err == nil:
		r.LeaseUntil, r.InFlight = fromMicros(until), lease > 0
		return r, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Task{}, false, err
	}
	t, found, err := s.GetRequest(ctx, r.Creator, r.RequestID)
	if err == nil && !found {
		// Released between the insert and the read: the caller retries.
		err = ErrLostReservation
	}
	return t, false, err
}

// GetRequest returns the row of creator's request id.
func (s *Store) GetRequest(ctx context.Context, creator, requestID string) (Task, bool, error) {
	return s.scanOne(ctx, `WHERE creator = $1 AND request_id = $2`, creator, requestID)
}

// Complete records the task the cloud created for owner's creation id,
// numbering it in the order of recording.
func (s *Store) Complete(ctx context.Context, id, owner string, t Task) error {
	return s.ownerUpdate(ctx, true, `UPDATE export_tasks SET task_id = $3, created_at = $4, state = $5,
		create_request_id = $6, last_request_id = $7, observed_at = $8, changed_at = $9, owner = '', lease_until = 0,
		seq = `+nextSeq, id, owner,
		t.TaskID, micros(t.Created), t.State, t.CreateRequestID, t.LastRequestID, micros(t.Observed), micros(t.Changed))
}

// CallStarting marks, durably, that owner's creation id is about to make
// its cloud call, and renews its lease for lease from now by the
// database's clock (the call and the recording of its outcome). Without
// the mark a creation whose lease ran out certainly never reached the
// cloud (see ReleaseUnstarted).
func (s *Store) CallStarting(ctx context.Context, id, owner string, lease time.Duration) error {
	return s.ownerUpdate(ctx, false, `UPDATE export_tasks SET call_started = 1, lease_until = `+s.d.now+` + $3`,
		id, owner, lease.Microseconds())
}

// ReleaseUnstarted drops creation id if its owner stopped before its cloud
// call could start: no task, no outcome, no CallStarting mark, its lease
// past by the database's clock. Its request id may then run again. It
// reports whether it dropped the row.
func (s *Store) ReleaseUnstarted(ctx context.Context, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM export_tasks
		WHERE id = $1 AND task_id IS NULL AND end_reason = '' AND call_started = 0 AND lease_until <= `+s.d.now, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Release drops owner's creation id: the cloud certainly created nothing,
// and its request id may be tried again.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	return s.ownerUpdate(ctx, false, `DELETE FROM export_tasks`, id, owner)
}

// Unknown records that owner's creation id has an unknown outcome: the
// cloud may have created a task whose id never reached the service.
func (s *Store) Unknown(ctx context.Context, id, owner, reason string) error {
	return s.ownerUpdate(ctx, false, `UPDATE export_tasks SET end_reason = $3, owner = '', lease_until = 0`, id, owner, reason)
}

// ownerUpdate runs stmt (an UPDATE or DELETE whose own arguments start at
// $3) on the creation id ($1) that owner ($2) holds and that has no task
// yet. numbering says that stmt numbers the task (nextSeq).
func (s *Store) ownerUpdate(ctx context.Context, numbering bool, stmt, id, owner string, args ...any) error {
	stmt += ` WHERE id = $1 AND owner = $2 AND task_id IS NULL AND end_reason = ''`
	args = append([]any{id, owner}, args...)
	var res sql.Result
	var err error
	if numbering {
		res, err = s.numbered(ctx, stmt, args...)
	} else {
		res, err = s.db.ExecContext(ctx, stmt, args...)
	}
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

// numbered runs stmt, which numbers a task with nextSeq, again while
// concurrent recordings take the number it chose.
func (s *Store) numbered(ctx context.Context, stmt string, args ...any) (sql.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := s.db.ExecContext(ctx, stmt, args...)
		if err == nil || !s.d.seqTaken(err) {
			return res, err
		}
		if attempt == maxNumberingAttempts {
			return nil, fmt.Errorf("number a recorded task: %d attempts were taken by others: %w", attempt, err)
		}
	}
}

// Get returns the task with the cloud id taskID.
func (s *Store) Get(ctx context.Context, taskID int64) (Task, bool, error) {
	return s.scanOne(ctx, `WHERE task_id = $1`, taskID)
}

// Observe records a cloud answer about a task; tasks not in the registry
// are ignored. Observations never go back: one older than the recorded one
// is ignored, and a terminal state is never replaced by another state, in
// whatever order concurrent writes arrive. A task that ends is no longer
// marked as given up.
func (s *Store) Observe(ctx context.Context, o Observation) error {
	_, err := s.db.ExecContext(ctx, `UPDATE export_tasks SET state = $1, download_url = $2, last_request_id = $3,
		observed_at = $4, changed_at = CASE WHEN state = $1 THEN changed_at ELSE $5 END,
		end_reason = CASE WHEN $1 IN ($7, $8) THEN '' ELSE end_reason END
		WHERE task_id = $6 AND observed_at <= $4 AND (state NOT IN ($7, $8) OR state = $1)`,
		o.State, o.DownloadURL, o.RequestID, micros(o.Observed), micros(o.Changed), o.TaskID, StateFinished, StateError)
	return err
}

// Abandon records why the service stopped following a task; its state
// stays what was last observed.
func (s *Store) Abandon(ctx context.Context, taskID int64, reason string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE export_tasks SET end_reason = $1 WHERE task_id = $2`, reason, taskID)
	return err
}

// Lost ends a task the cloud no longer knows: it is ERROR, for the reason
// given, unless it already ended.
func (s *Store) Lost(ctx context.Context, taskID int64, reason string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE export_tasks SET state = $1, end_reason = $2, observed_at = $3,
		changed_at = CASE WHEN state = $1 THEN changed_at ELSE $3 END
		WHERE task_id = $4 AND state NOT IN ($5, $1)`,
		StateError, reason, micros(at), taskID, StateFinished)
	return err
}

// followingWhere selects the tasks still followed. Its conditions are those
// of the index export_tasks_following, word for word, so that both engines
// read that index alone.
const followingWhere = `WHERE task_id IS NOT NULL AND state NOT IN ('FINISHED', 'ERROR') AND end_reason = '' ORDER BY seq`

// Following returns the tasks still to follow: recorded, not terminal and
// not abandoned, oldest first.
func (s *Store) Following(ctx context.Context) ([]Task, error) {
	return s.scan(ctx, followingWhere)
}

// List returns one page of recorded tasks, newest first. Pages continue
// from a cursor (the last task of the previous page), so tasks recorded
// meanwhile, which are numbered higher, never shift or repeat later pages,
// whichever process recorded them.
func (s *Store) List(ctx context.Context, q Query) ([]Task, error) {
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
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.State != "" {
		where += ` AND state = ` + arg(q.State)
	}
	if len(q.Creators) > 0 {
		// IN on the indexed column, not a function of it: the index on
		// (creator, seq) serves each creator's range.
		in := make([]string, len(q.Creators))
		for i, c := range q.Creators {
			in[i] = arg(c)
		}
		where += ` AND creator IN (` + strings.Join(in, ", ") + `)`
	}
	if q.After != nil {
		where += ` AND seq < ` + arg(q.After.Seq)
	}
	return where + ` ORDER BY seq DESC LIMIT ` + arg(q.Limit), args
}

// Secret returns the value kept under name, generating and keeping it
// first when there is none; every process sharing the registry gets the
// value the first one kept.
func (s *Store) Secret(ctx context.Context, name string, generate func() []byte) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO service_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		name, hex.EncodeToString(generate())); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	var v string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM service_secrets WHERE name = $1`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("secret %s is not hex: %w", name, err)
	}
	return b, nil
}

func (s *Store) scanOne(ctx context.Context, where string, args ...any) (Task, bool, error) {
	ts, err := s.scan(ctx, where, args...)
	if err != nil || len(ts) == 0 {
		return Task{}, false, err
	}
	return ts[0], true, nil
}

func (s *Store) scan(ctx context.Context, tail string, args ...any) ([]Task, error) {
	rows, err := s.db.QueryContext(ctx, s.selectColumns()+tail, args...)
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
			inFlight, callStarted             int64
		)
		if err := rows.Scan(&t.ID, &taskID, &requestID, &t.Fingerprint, &t.Parameters, &t.Creator, &t.Owner, &created, &t.State,
			&t.DownloadURL, &t.CreateRequestID, &t.LastRequestID, &observed, &changed, &t.EndReason, &lease, &t.Seq, &inFlight, &callStarted); err != nil {
			return nil, err
		}
		t.TaskID, t.RequestID, t.InFlight, t.CallStarted = taskID.Int64, requestID.String, inFlight == 1, callStarted == 1
		t.Created, t.Observed, t.Changed, t.LeaseUntil = fromMicros(created), fromMicros(observed), fromMicros(changed), fromMicros(lease)
		out = append(out, t)
	}
	return out, rows.Err()
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
