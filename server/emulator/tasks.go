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
}

func newTaskStore(first int64) *taskStore {
	return &taskStore{lastID: max(first, 1) - 1, byID: map[int64]*task{}, byToken: map[string]*task{}}
}

func (s *taskStore) create(owner string, q *exportQuery, now time.Time) int64 {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastID++
	t := &task{
		id:       s.lastID,
		owner:    owner,
		created:  now,
		query:    q,
		willFail: q.wantsFailure(),
		token:    hex.EncodeToString(b[:]),
	}
	t.synthetic = q.syntheticSize()
	s.byID[t.id] = t
	s.byToken[t.token] = t
	return t.id
}

// settleLocked ends t if its pending time has elapsed and returns its state.
func (t *task) settleLocked(now time.Time, pendingFor time.Duration) string {
	if t.final == "" && pendingFor >= 0 && now.Sub(t.created) >= pendingFor {
		t.final = statusFinished
		if t.willFail {
			t.final = statusError
		}
	}
	if t.final == "" {
		return statusPending
	}
	return t.final
}

// status returns the state and download token of owner's task id.
func (s *taskStore) status(owner string, id int64, now time.Time, pendingFor time.Duration) (status, token string, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byID[id]
	if !ok || t.owner != owner {
		return "", "", false
	}
	return t.settleLocked(now, pendingFor), t.token, true
}

// end moves a PENDING task to final.
func (s *taskStore) end(id int64, final string, now time.Time, pendingFor time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byID[id]
	if !ok {
		return ErrTaskNotFound
	}
	if t.settleLocked(now, pendingFor) != statusPending {
		return ErrTaskNotPending
	}
	t.final = final
	return nil
}

// downloadable returns the FINISHED task owning token, or nil. Expiring
// download URLs would be enforced here.
func (s *taskStore) downloadable(token string, now time.Time, pendingFor time.Duration) *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byToken[token]
	if !ok || t.settleLocked(now, pendingFor) != statusFinished {
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
