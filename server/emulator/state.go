package emulator

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// State directory (Options.StateDir). The emulator keeps what it needs to
// answer as before after a restart in journal.jsonl, an append-only journal
// of JSON lines, each written and fsynced before the answer that depends on
// it. The first line describes the emulator: the download-URL signing key
// and the data set (anchor date, seed, size), so signed URLs keep verifying
// and a task's CSV never changes. Then one line per task created (id, owning
// SecretId, creation time, validated query, download token) and one per
// task ended (by its pending time, FinishTask or FailTask), so an ended task
// stays ended whatever PendingFor the next run has.
//
// Start-up replays the journal in one pass. A last line cut short by a crash
// during its write is dropped with a warning and the journal truncated
// before it; that line's answer was never given. Any other unreadable line
// is an error: the journal is damaged, not torn. A LOCK file keeps a second
// process out of the directory.

const (
	journalName    = "journal.jsonl"
	stateLockName  = "LOCK"
	journalVersion = 1
)

// Journal record kinds.
const (
	recordEmulator = "emulator"
	recordTask     = "task"
	recordEnd      = "end"
)

// journalRecord is one journal line; Kind says which fields it carries.
type journalRecord struct {
	Kind string
	// Kind "emulator" (the first line only).
	Version int    `json:",omitempty"`
	URLKey  string `json:",omitempty"` // hex
	Anchor  string `json:",omitempty"` // the data set's anchor date, YYYY-MM-DD
	Seed    int64  `json:",omitempty"`
	Records int    `json:",omitempty"`
	// Kind "task", and ID also for "end".
	ID      int64        `json:",omitempty"`
	Owner   string       `json:",omitempty"`
	Created time.Time    `json:",omitzero"`
	Token   string       `json:",omitempty"`
	Query   *storedQuery `json:",omitempty"`
	// Kind "end".
	Final string `json:",omitempty"`
}

// storedQuery is the journal form of a validated exportQuery.
type storedQuery struct {
	Filters     []filter            `json:",omitempty"`
	IsHistory   bool                `json:",omitempty"`
	ExportMonth string              `json:",omitempty"`
	Tags        map[string][]string `json:",omitempty"`
}

func (q *exportQuery) stored() *storedQuery {
	return &storedQuery{Filters: q.Filters, IsHistory: q.IsHistory, ExportMonth: q.ExportMonth, Tags: q.tags}
}

func (sq *storedQuery) query() (*exportQuery, error) {
	q := &exportQuery{Filters: sq.Filters, IsHistory: sq.IsHistory, ExportMonth: sq.ExportMonth, tags: sq.Tags}
	if q.tags == nil {
		q.tags = map[string][]string{}
	}
	if q.ExportMonth != "" {
		start, err := time.Parse("2006-01", q.ExportMonth)
		if err != nil {
			return nil, fmt.Errorf("export month %q: %w", q.ExportMonth, err)
		}
		q.monthStart = start
	}
	return q, nil
}

// journal appends records durably. It is safe for concurrent use.
type journal struct {
	mu   sync.Mutex
	f    *os.File
	lock *os.File
	size int64 // bytes of whole records
	// err, once set, refuses further appends: a write that failed could
	// not be undone, so the journal's end is unknown.
	err error
	log *slog.Logger
}

// dataSet identifies the data set a state directory serves.
type dataSet struct {
	anchor  time.Time // UTC midnight
	seed    int64
	records int
}

// restored is what a journal replay yields.
type restored struct {
	urlKey []byte
	data   dataSet
	tasks  map[int64]*task
	lastID int64
}

// openState locks dir and replays its journal, starting one with urlKey and
// data when there is none. The caller closes the journal.
func openState(dir string, urlKey []byte, data dataSet, log *slog.Logger) (*journal, *restored, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create the state directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, stateLockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open the state directory's lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("state directory %s is in use by another process: %w", dir, err)
	}
	path := filepath.Join(dir, journalName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("open the journal: %w", err)
	}
	j := &journal{f: f, lock: lock, log: log}
	st, err := j.replay(path)
	if err == nil && st == nil {
		// A new journal: its first line must be durable, and so must the
		// file's name in the directory, before any task is recorded.
		st = &restored{urlKey: urlKey, data: data, tasks: map[int64]*task{}}
		err = j.append(journalRecord{
			Kind: recordEmulator, Version: journalVersion, URLKey: hex.EncodeToString(urlKey),
			Anchor: data.anchor.Format(time.DateOnly), Seed: data.seed, Records: data.records,
		})
		if err == nil {
			err = syncDir(dir)
		}
	}
	if err != nil {
		j.close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return j, st, nil
}

// replay reads the journal from the start. It returns nil, nil for a
// journal without its first line (new, or torn before it was whole).
func (j *journal) replay(path string) (*restored, error) {
	r := bufio.NewReaderSize(j.f, 64<<10)
	p := replayer{ends: map[int64]string{}}
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		switch {
		case errors.Is(err, io.EOF) && len(b) == 0:
			return p.done()
		case errors.Is(err, io.EOF):
			err = errors.New("the line is incomplete")
		case err != nil:
			return nil, fmt.Errorf("read: %w", err)
		default:
			err = p.apply(b)
		}
		if err == nil {
			j.size += int64(len(b))
			continue
		}
		if _, perr := r.Peek(1); !errors.Is(perr, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		// The last line: torn by a crash during its write.
		j.log.Warn("emulator journal: dropping a torn last line", "path", path, "line", line, "bytes", len(b), "reason", err.Error())
		if err := j.f.Truncate(j.size); err != nil {
			return nil, fmt.Errorf("truncate the torn last line: %w", err)
		}
		if err := j.f.Sync(); err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
		return p.done()
	}
}

// replayer rebuilds the state from journal lines.
type replayer struct {
	st *restored // nil until the first line
	// ends are applied once every task is known.
	ends map[int64]string
}

func (p *replayer) apply(b []byte) error {
	var rec journalRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return fmt.Errorf("not a journal record: %w", err)
	}
	if p.st == nil {
		if rec.Kind != recordEmulator {
			return fmt.Errorf("the first record is %q, want %q", rec.Kind, recordEmulator)
		}
		st, err := restoreEmulator(&rec)
		p.st = st
		return err
	}
	switch rec.Kind {
	case recordTask:
		return p.st.restoreTask(&rec)
	case recordEnd:
		if rec.Final != statusFinished && rec.Final != statusError {
			return fmt.Errorf("task %d ended in %q", rec.ID, rec.Final)
		}
		if _, dup := p.ends[rec.ID]; dup {
			return fmt.Errorf("task %d ended twice", rec.ID)
		}
		p.ends[rec.ID] = rec.Final
		return nil
	}
	return fmt.Errorf("unexpected record kind %q", rec.Kind)
}

func (p *replayer) done() (*restored, error) {
	if p.st == nil {
		return nil, nil
	}
	for id, final := range p.ends {
		t, ok := p.st.tasks[id]
		if !ok {
			return nil, fmt.Errorf("task %d ended but never created", id)
		}
		t.final = final
	}
	return p.st, nil
}

func restoreEmulator(rec *journalRecord) (*restored, error) {
	if rec.Version != journalVersion {
		return nil, fmt.Errorf("journal version %d; this emulator reads version %d", rec.Version, journalVersion)
	}
	key, err := hex.DecodeString(rec.URLKey)
	if err != nil || len(key) == 0 {
		return nil, errors.New("no download-URL signing key")
	}
	anchor, err := time.Parse(time.DateOnly, rec.Anchor)
	if err != nil {
		return nil, fmt.Errorf("anchor date: %w", err)
	}
	if rec.Records <= 0 {
		return nil, fmt.Errorf("data set size %d", rec.Records)
	}
	return &restored{
		urlKey: key,
		data:   dataSet{anchor: anchor, seed: rec.Seed, records: rec.Records},
		tasks:  map[int64]*task{},
	}, nil
}

func (st *restored) restoreTask(rec *journalRecord) error {
	switch {
	case rec.ID <= 0:
		return fmt.Errorf("task id %d", rec.ID)
	case st.tasks[rec.ID] != nil:
		return fmt.Errorf("task %d created twice", rec.ID)
	case rec.Owner == "" || rec.Token == "" || rec.Query == nil || rec.Created.IsZero():
		return fmt.Errorf("task %d is incomplete", rec.ID)
	}
	q, err := rec.Query.query()
	if err != nil {
		return fmt.Errorf("task %d: %w", rec.ID, err)
	}
	st.tasks[rec.ID] = newTask(rec.ID, rec.Owner, q, rec.Created, rec.Token)
	st.lastID = max(st.lastID, rec.ID)
	return nil
}

// append writes rec as one line and fsyncs it.
func (j *journal) append(rec journalRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode a journal record: %w", err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	_, err = j.f.Write(b)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		// Whatever reached the file may be part of a line; after a failed
		// fsync even the earlier lines are in doubt. Append no more.
		_ = j.f.Truncate(j.size)
		j.err = fmt.Errorf("the emulator journal failed: %w", err)
		return j.err
	}
	j.size += int64(len(b))
	return nil
}

// errJournalClosed refuses appends after close.
var errJournalClosed = errors.New("the emulator journal is closed")

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == errJournalClosed {
		return nil
	}
	j.err = errJournalClosed
	return errors.Join(j.f.Close(), j.lock.Close())
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CredentialsFile is the file in a state directory that StateCredential
// keeps the account in.
const CredentialsFile = "credentials.json"

// stateCredential is the JSON form of the credentials file.
type stateCredential struct {
	SecretId  string
	SecretKey string
}

// StateCredential returns the SecretId and SecretKey kept in dir, creating
// the directory and a random pair on first use (file credentials.json, mode
// 0600). An emulator restarted on the same state directory with this
// credential is the same account, so its earlier tasks stay visible.
// Concurrent first uses agree on one pair.
func StateCredential(dir string) (secretID, secretKey string, err error) {
	path := filepath.Join(dir, CredentialsFile)
	if c, err := readStateCredential(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return c.SecretId, c.SecretKey, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create the state directory: %w", err)
	}
	id, key := NewDevCredential()
	// Marshalling plain strings cannot fail; CreateTemp makes mode 0600.
	b, _ := json.Marshal(stateCredential{SecretId: id, SecretKey: key})
	tmp, err := os.CreateTemp(dir, CredentialsFile+".*")
	if err != nil {
		return "", "", fmt.Errorf("create the credentials file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("write the credentials file: %w", err)
	}
	// A link never replaces an existing file: of two first uses, one
	// links its pair and both read that one.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", "", fmt.Errorf("create the credentials file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", "", fmt.Errorf("sync the state directory: %w", err)
	}
	c, err := readStateCredential(path)
	return c.SecretId, c.SecretKey, err
}

func readStateCredential(path string) (stateCredential, error) {
	var c stateCredential
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil || c.SecretId == "" || c.SecretKey == "" {
		return stateCredential{}, fmt.Errorf("%s does not hold a SecretId and a SecretKey", path)
	}
	return c, nil
}
