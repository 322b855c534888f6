package taskstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cwpexport/cwpexport/server/pgtest"
	"github.com/cwpexport/cwpexport/server/taskstore"
)

// Tests of several processes (replicas) sharing one PostgreSQL registry.

// TestReplicasReserveARequestOnce: two replicas reserving one caller's
// request id at the same moment get one fresh reservation and one answer
// with the first one's row, in flight.
func TestReplicasReserveARequestOnce(t *testing.T) {
	ctx := context.Background()
	dsn := postgresEngine.place(t)
	replicas := []*taskstore.Store{openPostgres(t, dsn), openPostgres(t, dsn)}
	const rounds = 40
	for i := range rounds {
		requestID := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		var wg sync.WaitGroup
		start := make(chan struct{})
		got := make([]taskstore.Task, len(replicas))
		fresh := make([]bool, len(replicas))
		errs := make([]error, len(replicas))
		for r, s := range replicas {
			wg.Go(func() {
				<-start
				got[r], fresh[r], errs[r] = s.Reserve(ctx, taskstore.Task{RequestID: requestID, Fingerprint: "f", Parameters: "{}",
					Creator: "alice", Owner: fmt.Sprintf("replica-%d", r), Created: time.Now()}, time.Minute)
			})
		}
		close(start)
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("round %d, replica %d: %v", i, r, err)
			}
		}
		if fresh[0] == fresh[1] {
			t.Fatalf("round %d: fresh %v, want exactly one fresh reservation", i, fresh)
		}
		first, second := got[0], got[1]
		if fresh[1] {
			first, second = second, first
		}
		if second.ID != first.ID || second.Owner != first.Owner || !second.InFlight || second.TaskID != 0 {
			t.Fatalf("round %d: the second replica got %+v, want the first one's row %+v in flight", i, second, first)
		}
	}
}

// TestListIsStableAcrossReplicas: while two replicas, whose clocks
// disagree by two hours, record tasks at once, a list read page by page
// never repeats a task, never skips one recorded before its first page,
// and is newest first in the order of recording; the numbers are dense.
func TestListIsStableAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := postgresEngine.place(t)
	replicas := []*taskstore.Store{openPostgres(t, dsn), openPostgres(t, dsn)}
	skew := []time.Duration{time.Hour, -time.Hour}
	var nextID atomic.Int64
	record := func(r int) error {
		s := replicas[r]
		id := nextID.Add(1)
		owner := fmt.Sprintf("replica-%d", r)
		res, _, err := s.Reserve(ctx, taskstore.Task{Fingerprint: "f", Parameters: "{}", Owner: owner, Created: time.Now().Add(skew[r])}, time.Minute)
		if err != nil {
			return err
		}
		return s.Complete(ctx, res.ID, owner, taskstore.Task{TaskID: id, Created: time.Now().Add(skew[r]), State: taskstore.StatePending})
	}
	for i := range 30 {
		if err := record(i % 2); err != nil {
			t.Fatal(err)
		}
	}
	// Recorders on both replicas, several at once on each, until the
	// reader is done.
	done := make(chan struct{})
	var wg sync.WaitGroup
	var recorded atomic.Int64
	errc := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := record(w % 2); err != nil {
					errc <- err
					return
				}
				recorded.Add(1)
			}
		})
	}
	var seqs []int64
	var after *taskstore.Cursor
	for page := 0; ; page++ {
		ts, err := replicas[page%2].List(ctx, taskstore.Query{After: after, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) == 0 {
			break
		}
		for _, x := range ts {
			seqs = append(seqs, x.Seq)
		}
		after = &taskstore.Cursor{Seq: ts[len(ts)-1].Seq}
		// Let the recorders record between pages.
		for want := recorded.Load() + 2; recorded.Load() < want && len(errc) == 0; {
			time.Sleep(time.Millisecond)
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("record: %v", err)
	}
	if recorded.Load() < 10 {
		t.Fatalf("only %d tasks were recorded while the list was read", recorded.Load())
	}
	// Newest first, each once, down to 1 without a gap: nothing recorded
	// before the first page was skipped, nothing repeated.
	for i, seq := range seqs {
		if want := seqs[0] - int64(i); seq != want {
			t.Fatalf("position %d: seq %d, want %d (all: %v)", i, seq, want, seqs)
		}
	}
	if seqs[len(seqs)-1] != 1 || len(seqs) < 30 {
		t.Fatalf("listed %d tasks down to seq %d: %v", len(seqs), seqs[len(seqs)-1], seqs)
	}
	// Every recorded task has its own number, densely.
	all, err := replicas[0].List(ctx, taskstore.Query{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, x := range all {
		got = append(got, x.Seq)
	}
	slices.Sort(got)
	if int64(len(got)) != nextID.Load() || got[0] != 1 || got[len(got)-1] != int64(len(got)) || len(slices.Compact(got)) != len(all) {
		t.Fatalf("%d tasks recorded, %d listed, seqs from %d to %d", nextID.Load(), len(all), got[0], got[len(got)-1])
	}
}

// TestConcurrentStartsMigrateOnce: three replicas starting at once on an
// empty database all open the registry, and each migration ran once.
func TestConcurrentStartsMigrateOnce(t *testing.T) {
	dsn := postgresEngine.place(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	stores := make([]*taskstore.Store, 3)
	for i := range stores {
		wg.Go(func() {
			<-start
			stores[i] = openPostgres(t, dsn)
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT version_id FROM goose_db_version WHERE version_id > 0 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, f := range files {
		// goose's version: the number that starts the file's name.
		v, err := strconv.ParseInt(strings.SplitN(filepath.Base(f), "_", 2)[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, v)
	}
	if !slices.Equal(versions, want) {
		t.Fatalf("applied migrations %v, want %v once each", versions, want)
	}
	// And the replicas work on the one schema.
	for i, s := range stores {
		if err := s.Insert(ctx, taskstore.Task{TaskID: int64(i + 1), Fingerprint: "f", Parameters: "{}", State: taskstore.StatePending}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRegistryRidesThroughARestartAndAStall: while PostgreSQL is stopped
// or stalled the registry's calls fail (within the caller's deadline, for
// a stall) rather than hang or answer wrongly; once it is back, the same
// store works again without being reopened.
func TestRegistryRidesThroughARestartAndAStall(t *testing.T) {
	c := pgtest.NewCluster(t)
	s := openPostgres(t, c.DSN(t))
	ctx := context.Background()
	if err := s.Insert(ctx, taskstore.Task{TaskID: 1, Fingerprint: "f", Parameters: "{}", State: taskstore.StatePending}); err != nil {
		t.Fatal(err)
	}
	get := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		got, ok, err := s.Get(ctx, 1)
		if err == nil && (!ok || got.TaskID != 1) {
			t.Fatalf("get: %+v %v", got, ok)
		}
		return err
	}
	c.Stop(t)
	if err := get(10 * time.Second); err == nil {
		t.Fatal("a read succeeded while PostgreSQL was stopped")
	}
	c.Start(t)
	if err := get(10 * time.Second); err != nil {
		t.Fatalf("the first read after PostgreSQL came back: %v", err)
	}
	resumed := c.Stall(t, 2*time.Second)
	if err := get(500 * time.Millisecond); err == nil {
		t.Fatal("a read succeeded while PostgreSQL was stalled")
	}
	<-resumed
	if err := get(10 * time.Second); err != nil {
		t.Fatalf("a read after the stall: %v", err)
	}
	if _, fresh, err := s.Reserve(ctx, taskstore.Task{RequestID: rid, Fingerprint: "f", Parameters: "{}", Owner: "a"}, time.Minute); err != nil || !fresh {
		t.Fatalf("a reservation after the stall: %v %v", fresh, err)
	}
}
