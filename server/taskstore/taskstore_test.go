package taskstore_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

func open(t *testing.T, dir string) *taskstore.SQLite {
	t.Helper()
	s, err := taskstore.Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestReserveCompleteAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC().Truncate(time.Microsecond)
	r := taskstore.Task{RequestID: "123e4567-e89b-12d3-a456-426614174000", Fingerprint: "fp", Parameters: "{}", Owner: "a", Created: now}
	if _, fresh, err := s.Reserve(ctx, r); err != nil || !fresh {
		t.Fatalf("reserve: fresh=%v err=%v", fresh, err)
	}
	got, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: r.RequestID, Fingerprint: "other", Parameters: "{}", Owner: "b", Created: now})
	if err != nil || fresh || got.Owner != "a" || got.Fingerprint != "fp" || got.TaskID != 0 {
		t.Fatalf("second reserve: %+v fresh=%v err=%v", got, fresh, err)
	}
	if err := s.Complete(ctx, r.RequestID, "b", taskstore.Task{TaskID: 7}); !errors.Is(err, taskstore.ErrLostReservation) {
		t.Fatalf("complete by non-owner: %v", err)
	}
	if err := s.Complete(ctx, r.RequestID, "a", taskstore.Task{TaskID: 7, Created: now, State: taskstore.StatePending, CreateRequestID: "up"}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	s.Close()

	if _, err := taskstore.Open(ctx, dir); err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
}

func TestDataDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := taskstore.Open(context.Background(), dir); err == nil {
		t.Fatal("a second Open of the same data directory succeeded")
	}
}

func TestListNewestFirstStableAcrossInserts(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	base := time.Now().UTC().Truncate(time.Microsecond)
	insert := func(id int64, at time.Time, state string) {
		t.Helper()
		if err := s.Insert(ctx, taskstore.Task{TaskID: id, Fingerprint: "f", Parameters: "{}", Created: at, State: state}); err != nil {
			t.Fatalf("insert %d: %v", id, err)
		}
	}
	for i := int64(1); i <= 25; i++ {
		state := taskstore.StatePending
		if i%2 == 0 {
			state = taskstore.StateFinished
		}
		// Pairs share a creation time: the task id breaks the tie.
		insert(i, base.Add(time.Duration(i/2)*time.Millisecond), state)
	}
	var seen []int64
	var after *taskstore.Cursor
	var mu sync.Mutex
	next := int64(1000)
	for page := 0; ; page++ {
		ts, err := s.List(ctx, taskstore.Query{After: after, Limit: 4})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(ts) == 0 {
			break
		}
		for _, x := range ts {
			seen = append(seen, x.TaskID)
		}
		last := ts[len(ts)-1]
		after = &taskstore.Cursor{Created: last.Created, TaskID: last.TaskID}
		// A newer task arrives between pages.
		mu.Lock()
		next++
		insert(next, time.Now().UTC().Add(time.Hour), taskstore.StatePending)
		mu.Unlock()
	}
	if len(seen) != 25 {
		t.Fatalf("listed %d tasks, want the 25 present at the start: %v", len(seen), seen)
	}
	for i, id := range seen {
		if want := int64(25 - i); id != want {
			t.Fatalf("position %d: task %d, want %d (all: %v)", i, id, want, seen)
		}
	}
	fin, err := s.List(ctx, taskstore.Query{State: taskstore.StateFinished, Limit: 100})
	if err != nil || len(fin) != 12 {
		t.Fatalf("finished filter: %d tasks, err %v", len(fin), err)
	}
}

func TestObserveFollowingAndBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := int64(1); i <= 3; i++ {
		if err := s.Insert(ctx, taskstore.Task{TaskID: i, Fingerprint: "f", Parameters: "{}", Created: now, State: taskstore.StatePending}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Observe(ctx, taskstore.Observation{TaskID: 1, State: taskstore.StateFinished, DownloadURL: "http://x/1", Observed: now, Changed: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Abandon(ctx, 2, "too old"); err != nil {
		t.Fatal(err)
	}
	f, err := s.Following(ctx)
	if err != nil || len(f) != 1 || f[0].TaskID != 3 {
		t.Fatalf("following: %+v, %v", f, err)
	}
	// An online backup is a registry of its own: open it as a data directory.
	copyDir := t.TempDir()
	if err := s.Backup(ctx, filepath.Join(copyDir, taskstore.FileName)); err != nil {
		t.Fatalf("backup: %v", err)
	}
	got, ok, err := open(t, copyDir).Get(ctx, 1)
	if err != nil || !ok || got.State != taskstore.StateFinished || got.DownloadURL != "http://x/1" {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}
}

func TestListFiltersByCreators(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	base := time.Now().UTC().Truncate(time.Microsecond)
	for i, creator := range []string{"alice", "bob", "carol", "alice", "", "bob"} {
		if err := s.Insert(ctx, taskstore.Task{TaskID: int64(i + 1), Fingerprint: "f", Parameters: "{}", Creator: creator,
			Created: base.Add(time.Duration(i) * time.Millisecond), State: taskstore.StatePending}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(q taskstore.Query) []int64 {
		t.Helper()
		q.Limit = 100
		ts, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, x := range ts {
			out = append(out, x.TaskID)
		}
		return out
	}
	for _, c := range []struct {
		creators []string
		want     []int64
	}{
		{nil, []int64{6, 5, 4, 3, 2, 1}},
		{[]string{}, nil},
		{[]string{"alice"}, []int64{4, 1}},
		{[]string{"alice", "bob"}, []int64{6, 4, 2, 1}},
		{[]string{"dave"}, nil},
	} {
		if got := ids(taskstore.Query{Creators: c.creators}); !slices.Equal(got, c.want) {
			t.Errorf("creators %q: %v, want %v", c.creators, got, c.want)
		}
	}
	// Pages continue within the filter.
	if got := ids(taskstore.Query{Creators: []string{"alice", "bob"}, After: &taskstore.Cursor{Created: base.Add(3 * time.Millisecond), TaskID: 4}}); !slices.Equal(got, []int64{2, 1}) {
		t.Errorf("second page: %v", got)
	}
}

func TestSecretIsKeptAcrossReopens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	calls := 0
	gen := func() []byte { calls++; return []byte{byte(calls), 2, 3} }
	first, err := s.Secret(ctx, "key", gen)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Secret(ctx, "key", gen)
	if err != nil || !bytes.Equal(first, again) || !bytes.Equal(first, []byte{1, 2, 3}) {
		t.Fatalf("second read %x (%v), first %x", again, err, first)
	}
	s.Close()
	reopened, err := open(t, dir).Secret(ctx, "key", gen)
	if err != nil || !bytes.Equal(reopened, first) {
		t.Fatalf("after reopening: %x (%v), want %x", reopened, err, first)
	}
}
