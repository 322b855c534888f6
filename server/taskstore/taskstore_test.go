package taskstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

const rid = "123e4567-e89b-12d3-a456-426614174000"

func TestReserveCompleteAndReopen(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		place := e.place(t)
		s := e.open(t, place)
		now := time.Now().UTC().Truncate(time.Microsecond)
		r := taskstore.Task{RequestID: rid, Fingerprint: "fp", Parameters: "{}", Creator: "alice", Owner: "a", Created: now}
		first, fresh, err := s.Reserve(ctx, r, time.Minute)
		if err != nil || !fresh || first.ID == "" || !first.InFlight || first.LeaseUntil.IsZero() {
			t.Fatalf("reserve: %+v fresh=%v err=%v", first, fresh, err)
		}
		got, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: "other", Parameters: "{}", Creator: "alice", Owner: "b", Created: now}, time.Minute)
		if err != nil || fresh || got.ID != first.ID || got.Owner != "a" || got.Fingerprint != "fp" || got.TaskID != 0 || !got.InFlight || !got.LeaseUntil.Equal(first.LeaseUntil) {
			t.Fatalf("second reserve: %+v fresh=%v err=%v (first %+v)", got, fresh, err, first)
		}
		// Request ids are the caller's own: another caller's use of the same
		// id is a creation of its own.
		if bob, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: "fp", Parameters: "{}", Creator: "bob", Owner: "a", Created: now}, time.Minute); err != nil || !fresh || bob.ID == first.ID {
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

		s = e.open(t, place)
		got, ok, err := s.GetRequest(ctx, "alice", rid)
		if err != nil || !ok || got.TaskID != 7 || got.InFlight || got.Seq != 1 || !got.Created.Equal(now) {
			t.Fatalf("after reopening: %+v %v %v", got, ok, err)
		}
	})
}

// TestLeasesFollowTheDatabaseClock: a reservation is in flight for its
// lease, counted from when the database recorded it, whatever creation
// time the process gives; a lease of 0 or less is past at once.
func TestLeasesFollowTheDatabaseClock(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
		reserve := func(requestID string, created time.Time, lease time.Duration) taskstore.Task {
			t.Helper()
			r, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: requestID, Fingerprint: "f", Parameters: "{}", Owner: "a", Created: created}, lease)
			if err != nil || !fresh {
				t.Fatalf("reserve %s: %v %v", requestID, fresh, err)
			}
			return r
		}
		read := func(requestID string) taskstore.Task {
			t.Helper()
			r, ok, err := s.GetRequest(ctx, "", requestID)
			if err != nil || !ok {
				t.Fatalf("get %s: %v %v", requestID, ok, err)
			}
			return r
		}
		// A process whose clock is a year behind, or ahead: the lease
		// does not care.
		for i, created := range []time.Time{time.Now().AddDate(-1, 0, 0), time.Now().AddDate(1, 0, 0)} {
			id := []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"}[i]
			if r := reserve(id, created, time.Hour); !r.InFlight || !read(id).InFlight {
				t.Errorf("a reservation with an hour's lease, created %v, is not in flight", created)
			}
		}
		past := reserve("00000000-0000-4000-8000-000000000003", time.Now(), -time.Second)
		if past.InFlight || read(past.RequestID).InFlight {
			t.Errorf("a reservation whose lease is past is in flight")
		}
		short := reserve("00000000-0000-4000-8000-000000000004", time.Now(), 300*time.Millisecond)
		time.Sleep(600 * time.Millisecond)
		if r := read(short.RequestID); r.InFlight {
			t.Errorf("a reservation is in flight after its lease: %+v", r)
		}
	})
}

// TestCreationOutcomes: a creation without a request id is recorded too; a
// released creation leaves nothing; one marked unknown stays, without a
// task, and is no longer in flight.
func TestCreationOutcomes(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
		now := time.Now().UTC().Truncate(time.Microsecond)
		anon, fresh, err := s.Reserve(ctx, taskstore.Task{Fingerprint: "f", Parameters: "{}", Owner: "a", Created: now}, time.Minute)
		if err != nil || !fresh {
			t.Fatalf("reserve without a request id: %v %v", fresh, err)
		}
		if _, fresh, err := s.Reserve(ctx, taskstore.Task{Fingerprint: "f", Parameters: "{}", Owner: "a", Created: now}, time.Minute); err != nil || !fresh {
			t.Fatalf("a second creation without a request id: %v %v", fresh, err)
		}
		if err := s.Release(ctx, anon.ID, "a"); err != nil {
			t.Fatalf("release: %v", err)
		}
		const rid = "00000000-0000-4000-8000-000000000001"
		r, _, err := s.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: "f", Parameters: "{}", Owner: "a", Created: now}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Unknown(ctx, r.ID, "a", "the connection broke after the request was sent"); err != nil {
			t.Fatalf("unknown: %v", err)
		}
		got, ok, err := s.GetRequest(ctx, "", rid)
		if err != nil || !ok || got.TaskID != 0 || got.InFlight || got.EndReason == "" {
			t.Fatalf("an unknown outcome: %+v %v %v", got, ok, err)
		}
		if err := s.Complete(ctx, r.ID, "a", taskstore.Task{TaskID: 8}); !errors.Is(err, taskstore.ErrLostReservation) {
			t.Fatalf("complete after the outcome was marked unknown: %v", err)
		}
		rows, err := s.List(ctx, taskstore.Query{Limit: 10})
		if err != nil || len(rows) != 0 {
			t.Fatalf("creations without a task are listed: %+v %v", rows, err)
		}
	})
}

// TestLostTasksEnd: a task the cloud no longer knows ends in ERROR with the
// reason, unless it had ended already.
func TestLostTasksEnd(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
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
	})
}

func TestDataDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	openSQLite(t, dir)
	if _, err := taskstore.Open(context.Background(), dir); err == nil {
		t.Fatal("a second Open of the same data directory succeeded")
	}
}

// TestListNewestFirstStableAcrossInserts: tasks are listed in the order
// they were recorded, newest first, whatever creation time their process
// read on its clock; pages continue from their cursor while newer tasks
// arrive.
func TestListNewestFirstStableAcrossInserts(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
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
			// Processes' clocks disagree: creation times go back and forth.
			insert(i, base.Add(time.Duration((i%3)-1)*time.Hour), state)
		}
		var seen []int64
		var after *taskstore.Cursor
		next := int64(1000)
		for {
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
			after = &taskstore.Cursor{Seq: ts[len(ts)-1].Seq}
			// A newer task arrives between pages, with an old creation time.
			next++
			insert(next, base.Add(-48*time.Hour), taskstore.StatePending)
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
	})
}

func TestObserveAndFollowing(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
		now := time.Now().UTC().Truncate(time.Microsecond)
		for i := int64(1); i <= 4; i++ {
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
		if err != nil || len(f) != 2 || f[0].TaskID != 3 || f[1].TaskID != 4 {
			t.Fatalf("following: %+v, %v", f, err)
		}
		got, ok, err := s.Get(ctx, 1)
		if err != nil || !ok || got.State != taskstore.StateFinished || got.DownloadURL != "http://x/1" {
			t.Fatalf("get: %+v %v %v", got, ok, err)
		}
	})
}

// TestBackupIsARegistry: an online backup of an SQLite registry opens as a
// data directory; a PostgreSQL registry is backed up with pg_dump.
func TestBackupIsARegistry(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, sqliteEngine)
	now := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.Insert(ctx, taskstore.Task{TaskID: 1, Fingerprint: "f", Parameters: "{}", Created: now, State: taskstore.StateFinished, DownloadURL: "http://x/1"}); err != nil {
		t.Fatal(err)
	}
	copyDir := t.TempDir()
	if err := s.Backup(ctx, filepath.Join(copyDir, taskstore.FileName)); err != nil {
		t.Fatalf("backup: %v", err)
	}
	got, ok, err := openSQLite(t, copyDir).Get(ctx, 1)
	if err != nil || !ok || got.State != taskstore.StateFinished || got.DownloadURL != "http://x/1" {
		t.Fatalf("get: %+v %v %v", got, ok, err)
	}
	if err := newStore(t, postgresEngine).Backup(ctx, filepath.Join(t.TempDir(), "copy")); err == nil || !strings.Contains(err.Error(), "pg_dump") {
		t.Fatalf("backup of a PostgreSQL registry: %v, want a pointer to pg_dump", err)
	}
}

// TestObservationsNeverGoBack: an observation older than the one recorded
// is ignored, and a terminal state is never replaced by PENDING, in
// whatever order the writes arrive.
func TestObservationsNeverGoBack(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
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
		if r := get(); r.State != taskstore.StateFinished || r.DownloadURL != "http://x/"+t0.Add(4*time.Second).String() || !r.Changed.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("a newer FINISHED observation was not recorded as such: %+v", r)
		}
		rows, err := s.List(ctx, taskstore.Query{State: taskstore.StateFinished, Limit: 10})
		if err != nil || len(rows) != 1 {
			t.Fatalf("state=FINISHED list: %v %v", rows, err)
		}
	})
}

// TestDamagedRegistryRefusesToOpen: an SQLite registry with a damaged page
// is not served from; the error says what to do.
func TestDamagedRegistryRefusesToOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLite(t, dir)
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
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
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
		// Pages continue within the filter, and with a state.
		four, _, err := s.Get(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(taskstore.Query{Creators: []string{"alice", "bob"}, After: &taskstore.Cursor{Seq: four.Seq}}); !slices.Equal(got, []int64{2, 1}) {
			t.Errorf("second page: %v", got)
		}
		if got := ids(taskstore.Query{Creators: []string{"alice", "bob"}, State: taskstore.StatePending, After: &taskstore.Cursor{Seq: four.Seq}}); !slices.Equal(got, []int64{2, 1}) {
			t.Errorf("second page, pending: %v", got)
		}
	})
}

func TestSecretIsKeptAcrossReopens(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		place := e.place(t)
		s := e.open(t, place)
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
		reopened, err := e.open(t, place).Secret(ctx, "key", gen)
		if err != nil || !bytes.Equal(reopened, first) {
			t.Fatalf("after reopening: %x (%v), want %x", reopened, err, first)
		}
	})
}

// TestOnlyAMarkedCreationMayHaveReachedTheCloud: a creation whose lease ran
// out before CallStarting marked it is dropped by ReleaseUnstarted, so its
// request id runs again; a marked one, or one still leased, is not.
func TestOnlyAMarkedCreationMayHaveReachedTheCloud(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
		now := time.Now().UTC()
		reserve := func(rid string, lease time.Duration) taskstore.Task {
			t.Helper()
			r, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: "f", Parameters: "{}", Owner: "gone", Created: now}, lease)
			if err != nil || !fresh {
				t.Fatalf("reserve %s: %v %v", rid, fresh, err)
			}
			return r
		}
		queued := reserve("00000000-0000-4000-8000-0000000000a1", 0)  // stopped while it waited for the budget
		started := reserve("00000000-0000-4000-8000-0000000000a2", 0) // stopped during its call
		if err := s.CallStarting(ctx, started.ID, "gone", 0); err != nil {
			t.Fatalf("mark: %v", err)
		}
		leased := reserve("00000000-0000-4000-8000-0000000000a3", time.Hour) // still waiting

		for _, c := range []struct {
			row     taskstore.Task
			started bool
			drop    bool
		}{{queued, false, true}, {started, true, false}, {leased, false, false}} {
			got, ok, err := s.GetRequest(ctx, "", c.row.RequestID)
			if err != nil || !ok || got.CallStarted != c.started {
				t.Fatalf("%s: read %+v %v %v; want CallStarted %v", c.row.RequestID, got, ok, err, c.started)
			}
			dropped, err := s.ReleaseUnstarted(ctx, c.row.ID)
			if err != nil || dropped != c.drop {
				t.Fatalf("%s: ReleaseUnstarted = %v, %v; want %v", c.row.RequestID, dropped, err, c.drop)
			}
			if _, ok, _ := s.GetRequest(ctx, "", c.row.RequestID); ok == c.drop {
				t.Fatalf("%s: row kept = %v after ReleaseUnstarted dropped = %v", c.row.RequestID, ok, c.drop)
			}
		}
		// The request id of the dropped creation runs again.
		if _, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: queued.RequestID, Fingerprint: "f", Parameters: "{}", Owner: "next", Created: now}, time.Minute); err != nil || !fresh {
			t.Fatalf("reserve again after the drop: %v %v", fresh, err)
		}
		// The mark is the owner's to write, and only while the creation is open.
		if err := s.CallStarting(ctx, leased.ID, "someone else", time.Minute); !errors.Is(err, taskstore.ErrLostReservation) {
			t.Fatalf("mark by another owner: %v", err)
		}
	})
}
