package taskstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	lease := now.Add(time.Minute)
	r := taskstore.Task{RequestID: "123e4567-e89b-12d3-a456-426614174000", Fingerprint: "fp", Parameters: "{}", Creator: "alice", Owner: "a", Created: now, LeaseUntil: lease}
	first, fresh, err := s.Reserve(ctx, r)
	if err != nil || !fresh || first.ID == "" || !first.InFlight(now) {
		t.Fatalf("reserve: %+v fresh=%v err=%v", first, fresh, err)
	}
	got, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: r.RequestID, Fingerprint: "other", Parameters: "{}", Creator: "alice", Owner: "b", Created: now, LeaseUntil: lease})
	if err != nil || fresh || got.ID != first.ID || got.Owner != "a" || got.Fingerprint != "fp" || got.TaskID != 0 || !got.LeaseUntil.Equal(lease) {
		t.Fatalf("second reserve: %+v fresh=%v err=%v", got, fresh, err)
	}
	// Request ids are the caller's own: another caller's use of the same
	// id is a creation of its own.
	if bob, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: r.RequestID, Fingerprint: "fp", Parameters: "{}", Creator: "bob", Owner: "a", Created: now, LeaseUntil: lease}); err != nil || !fresh || bob.ID == first.ID {
		t.Fatalf("another caller's reserve of the same request id: %+v fresh=%v err=%v", bob, fresh, err)
	}
	if err := s.Complete(ctx, first.ID, "b", taskstore.Task{TaskID: 7}); !errors.Is(err, taskstore.ErrLostReservation) {
		t.Fatalf("complete by non-owner: %v", err)
	}
	if err := s.Complete(ctx, first.ID, "a", taskstore.Task{TaskID: 7, Created: now, State: taskstore.StatePending, CreateRequestID: "up"}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := s.Release(ctx, first.ID, "a"); !errors.Is(err, taskstore.ErrLostReservation) {
		t.Fatalf("release of a completed creation: %v", err)
	}
	s.Close()

	s = open(t, dir)
	got, ok, err := s.GetRequest(ctx, "alice", r.RequestID)
	if err != nil || !ok || got.TaskID != 7 || got.InFlight(now) {
		t.Fatalf("after reopening: %+v %v %v", got, ok, err)
	}
}

// TestCreationOutcomes: a creation without a request id is recorded too; a
// released creation leaves nothing; one marked unknown stays, without a
// task, and is no longer in flight.
func TestCreationOutcomes(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Microsecond)
	anon, fresh, err := s.Reserve(ctx, taskstore.Task{Fingerprint: "f", Parameters: "{}", Owner: "a", Created: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil || !fresh {
		t.Fatalf("reserve without a request id: %v %v", fresh, err)
	}
	if _, fresh, err := s.Reserve(ctx, taskstore.Task{Fingerprint: "f", Parameters: "{}", Owner: "a", Created: now, LeaseUntil: now.Add(time.Minute)}); err != nil || !fresh {
		t.Fatalf("a second creation without a request id: %v %v", fresh, err)
	}
	if err := s.Release(ctx, anon.ID, "a"); err != nil {
		t.Fatalf("release: %v", err)
	}
	const rid = "00000000-0000-4000-8000-000000000001"
	r, _, err := s.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: "f", Parameters: "{}", Owner: "a", Created: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unknown(ctx, r.ID, "a", "the connection broke after the request was sent"); err != nil {
		t.Fatalf("unknown: %v", err)
	}
	got, ok, err := s.GetRequest(ctx, "", rid)
	if err != nil || !ok || got.TaskID != 0 || got.InFlight(now) || got.EndReason == "" {
		t.Fatalf("an unknown outcome: %+v %v %v", got, ok, err)
	}
	if err := s.Complete(ctx, r.ID, "a", taskstore.Task{TaskID: 8}); !errors.Is(err, taskstore.ErrLostReservation) {
		t.Fatalf("complete after the outcome was marked unknown: %v", err)
	}
	rows, err := s.List(ctx, taskstore.Query{Limit: 10})
	if err != nil || len(rows) != 0 {
		t.Fatalf("creations without a task are listed: %+v %v", rows, err)
	}
}

// TestLostTasksEnd: a task the cloud no longer knows ends in ERROR with the
// reason, unless it had ended already.
func TestLostTasksEnd(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Microsecond)
	for id, state := range map[int64]string{1: taskstore.StatePending, 2: taskstore.StateFinished} {
		if err := s.Insert(ctx, taskstore.Task{TaskID: id, Fingerprint: "f", Parameters: "{}", Created: now, State: state}); err != nil {
			t.Fatal(err)
		}
		if err := s.Lost(ctx, id, "the cloud no longer knows the task", now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if r, _, _ := s.Get(ctx, 1); r.State != taskstore.StateError || r.EndReason == "" {
		t.Fatalf("lost pending task: %+v", r)
	}
	if r, _, _ := s.Get(ctx, 2); r.State != taskstore.StateFinished || r.EndReason != "" {
		t.Fatalf("lost finished task: %+v", r)
	}
	if f, err := s.Following(ctx); err != nil || len(f) != 0 {
		t.Fatalf("following: %+v %v", f, err)
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

// TestObservationsNeverGoBack: an observation older than the one recorded
// is ignored, and a terminal state is never replaced by PENDING, in
// whatever order the writes arrive.
func TestObservationsNeverGoBack(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.Insert(ctx, taskstore.Task{TaskID: 9, Fingerprint: "f", Parameters: "{}", Created: t0, State: taskstore.StatePending, Observed: t0, Changed: t0}); err != nil {
		t.Fatal(err)
	}
	observe := func(state string, at time.Time) {
		t.Helper()
		if err := s.Observe(ctx, taskstore.Observation{TaskID: 9, State: state, DownloadURL: map[bool]string{true: "http://x/" + at.String()}[state == taskstore.StateFinished], Observed: at, Changed: at}); err != nil {
			t.Fatal(err)
		}
	}
	get := func() taskstore.Task {
		t.Helper()
		r, ok, err := s.Get(ctx, 9)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		return r
	}
	observe(taskstore.StateFinished, t0.Add(2*time.Second))
	observe(taskstore.StatePending, t0.Add(time.Second)) // an older poll's write, arriving late
	if r := get(); r.State != taskstore.StateFinished || !r.Observed.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("an older PENDING overwrote FINISHED: %+v", r)
	}
	observe(taskstore.StatePending, t0.Add(3*time.Second)) // a newer, but wrong, PENDING
	if r := get(); r.State != taskstore.StateFinished {
		t.Fatalf("a terminal state went back to PENDING: %+v", r)
	}
	observe(taskstore.StateFinished, t0.Add(4*time.Second)) // a refreshed URL is newer
	if r := get(); r.State != taskstore.StateFinished || r.DownloadURL != "http://x/"+t0.Add(4*time.Second).String() {
		t.Fatalf("a newer FINISHED observation was not recorded: %+v", r)
	}
	rows, err := s.List(ctx, taskstore.Query{State: taskstore.StateFinished, Limit: 10})
	if err != nil || len(rows) != 1 {
		t.Fatalf("state=FINISHED list: %v %v", rows, err)
	}
}

// TestDamagedRegistryRefusesToOpen: a registry with a damaged page is not
// served from; the error says what to do.
func TestDamagedRegistryRefusesToOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC()
	for i := int64(1); i <= 300; i++ {
		if err := s.Insert(ctx, taskstore.Task{TaskID: i, Fingerprint: "f", Parameters: strings.Repeat("x", 200), Created: now, State: taskstore.StatePending}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, taskstore.FileName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Stat()
	if info.Size() < 8*4096 {
		t.Fatalf("the registry is only %d bytes", info.Size())
	}
	// Scribble over a page in the middle of the table.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 4096), 5*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = taskstore.Open(ctx, dir)
	if err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Fatalf("open of a damaged registry: %v", err)
	}
	if testing.Verbose() {
		t.Log(err)
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
