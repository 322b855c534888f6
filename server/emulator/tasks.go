package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Task states as ExportTasks reports them.
const (
	statusPending  = "PENDING"
	statusFinished = "FINISHED"
	statusError    = "ERROR"
)

// Errors returned by FinishTask and FailTask.
var (
	// ErrTaskNotFound means no task has the given id.
	ErrTaskNotFound = errors.New("emulator: task not found")
	// ErrTaskNotPending means the task already ended (FINISHED or ERROR).
	ErrTaskNotPending = errors.New("emulator: task is not pending")
)

type task struct {
	id       int64
	owner    string // SecretId that created it
	created  time.Time
	query    *exportQuery
	willFail bool
	final    string // "" while PENDING; sticky once set so clock jumps cannot revert it
	token    string // download token, handed out once FINISHED

	sizeOnce sync.Once
	size     int64 // CSV length, computed on first download

	synthetic int64    // requested size of a synthetic file (large.go); 0 for the data set's CSV
	info      fileInfo // size and SHA-256, for the admin endpoint
}

type taskStore struct {
	mu      sync.Mutex
	lastID  int64
	byID    map[int64]*task
	byToken map[string]*task
	// journal, when the emulator has a state directory, learns every
	// task created and ended.
	journal *journal
}

func newTaskStore(first int64) *taskStore {
	return &taskStore{lastID: max(first, 1) - 1, byID: map[int64]*task{}, byToken: map[string]*task{}}
}

// restore adds the tasks of an earlier run; ids continue above them.
func (s *taskStore) restore(st *restored, j *journal) {
	s.journal = j
	s.lastID = max(s.lastID, st.lastID)
	for _, t := range st.tasks {
		s.byID[t.id] = t
		s.byToken[t.token] = t
	}
}

func newTask(id int64, owner string, q *exportQuery, created time.Time, token string) *task {
	return &task{
		id:        id,
		owner:     owner,
		created:   created,
		query:     q,
		willFail:  q.wantsFailure(),
		token:     token,
		synthetic: q.syntheticSize(),
	}
}

// create records a new task. With a journal the task is durable before
// create returns, and known to lookups only from then on.
func (s *taskStore) create(owner string, q *exportQuery, now time.Time) (int64, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	s.mu.Lock()
	s.lastID++
	t := newTask(s.lastID, owner, q, now, hex.EncodeToString(b[:]))
	s.mu.Unlock()
	if s.journal != nil {
		rec := journalRecord{Kind: recordTask, ID: t.id, Owner: owner, Created: now, Token: t.token, Query: q.stored()}
		if err := s.journal.append(rec); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[t.id] = t
	s.byToken[t.token] = t
	return t.id, nil
}

// settleLocked ends t if its pending time has elapsed and returns its state;
// settled reports that t ended just now, which the journal must learn.
func (t *task) settleLocked(now time.Time, pendingFor time.Duration) (state string, settled bool) {
	if t.final == "" && pendingFor >= 0 && now.Sub(t.created) >= pendingFor {
		t.final = statusFinished
		if t.willFail {
			t.final = statusError
		}
		settled = true
	}
	if t.final == "" {
		return statusPending, false
	}
	return t.final, settled
}

// recordSettled journals that task id ended by its pending time. A failure
// only costs the record: the end follows from the creation time again.
func (s *taskStore) recordSettled(id int64, final string) {
	if s.journal == nil {
		return
	}
	if err := s.journal.append(journalRecord{Kind: recordEnd, ID: id, Final: final}); err != nil {
		s.journal.log.Warn("emulator journal: could not record a task's end", "task", id, "err", err)
	}
}

// status returns the state and download token of owner's task id.
func (s *taskStore) status(owner string, id int64, now time.Time, pendingFor time.Duration) (status, token string, found bool) {
	s.mu.Lock()
	t, ok := s.byID[id]
	if !ok || t.owner != owner {
		s.mu.Unlock()
		return "", "", false
	}
	status, settled := t.settleLocked(now, pendingFor)
	s.mu.Unlock()
	if settled {
		s.recordSettled(id, status)
	}
	return status, t.token, true
}

// end moves a PENDING task to final; with a journal, durably before it
// returns.
func (s *taskStore) end(id int64, final string, now time.Time, pendingFor time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byID[id]
	if !ok {
		return ErrTaskNotFound
	}
	if state, settled := t.settleLocked(now, pendingFor); state != statusPending {
		if settled {
			s.recordSettled(id, state)
		}
		return ErrTaskNotPending
	}
	// Admin calls are rare: holding the lock through the fsync keeps the
	// task pending until its end is durable.
	if s.journal != nil {
		if err := s.journal.append(journalRecord{Kind: recordEnd, ID: id, Final: final}); err != nil {
			return err
		}
	}
	t.final = final
	return nil
}

// downloadable returns the FINISHED task owning token, or nil.
func (s *taskStore) downloadable(token string, now time.Time, pendingFor time.Duration) *task {
	s.mu.Lock()
	t, ok := s.byToken[token]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	state, settled := t.settleLocked(now, pendingFor)
	s.mu.Unlock()
	if settled {
		s.recordSettled(t.id, state)
	}
	if state != statusFinished {
		return nil
	}
	return t
}

// FinishTask makes a PENDING task FINISHED now, regardless of PendingFor.
func (e *Emulator) FinishTask(id int64) error {
	return e.tasks.end(id, statusFinished, e.now(), e.pendingFor)
}

// FailTask makes a PENDING task end in ERROR now.
func (e *Emulator) FailTask(id int64) error {
	return e.tasks.end(id, statusError, e.now(), e.pendingFor)
}

// downloadURL is where the task's CSV can be fetched: the host the API
// request came to, so the URL works from wherever the client reached us.
func downloadURL(r *http.Request, token string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/downloads/" + token + ".csv"
}
