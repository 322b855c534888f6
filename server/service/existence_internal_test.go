package service

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/access"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// countingRegistry counts the reads of a real registry.
type countingRegistry struct {
	*taskstore.Store
	gets atomic.Int32
}

func (r *countingRegistry) Get(ctx context.Context, id int64) (taskstore.Task, bool, error) {
	r.gets.Add(1)
	return r.Store.Get(ctx, id)
}

// newReader is a service over reg whose saga never polls the cloud (the
// reads under test ask only the registry), on the clock now.
func newReader(reg *countingRegistry, now func() time.Time) *Service {
	policy, _ := access.NewPolicy(nil, nil)
	saga, tr := exports.New(exports.Options{Registry: reg, Now: now}, tracker.Options{Scheduler: tracker.NewLocal(tracker.LocalOptions{})})
	return New(Options{Saga: saga, Tracker: tr, Registry: reg, Access: access.NewLive(policy), Now: now})
}

// alices is the task alice created in alicesRegistry.
const alices = 1001

// alicesRegistry is a real SQLite registry, closed at the end of tb, that
// records one task of alice's.
func alicesRegistry(tb testing.TB) *countingRegistry {
	ctx := context.Background()
	store, err := taskstore.Open(ctx, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	if err := store.Insert(ctx, taskstore.Task{TaskID: alices, Creator: "alice", Fingerprint: "f", Parameters: "{}", Created: time.Now(), State: taskstore.StatePending}); err != nil {
		tb.Fatal(err)
	}
	return &countingRegistry{Store: store}
}

// TestRefusalsTakeTheSamePath: bob's reads of alice's task and of an id
// that does not exist are both refused NotFound after one registry read
// each, however often they are repeated and whatever the cache holds, so
// that their timing does not tell which one exists.
func TestRefusalsTakeTheSamePath(t *testing.T) {
	ctx := context.Background()
	reg := alicesRegistry(t)
	now := time.Now()
	s := newReader(reg, func() time.Time { return now })
	bob := callerauth.WithCaller(ctx, "bob")
	reads := func(id int64) int32 {
		before := reg.gets.Load()
		if _, err := s.visible(bob, id); status.Code(err) != codes.NotFound {
			t.Fatalf("task %d: %v, want NotFound", id, err)
		}
		return reg.gets.Load() - before
	}
	// Alice's reads keep her record in the cache.
	if _, err := s.visible(callerauth.WithCaller(ctx, "alice"), alices); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for _, id := range []int64{alices, 2002, alices, 2002} {
			if n := reads(id); n != 1 {
				t.Errorf("round %d, task %d: %d registry reads, want 1", round, id, n)
			}
		}
		now = now.Add(1500 * time.Millisecond) // past the absence's second
	}
}

// BenchmarkRefusals times bob's refused reads of alice's task and of ids
// that do not exist, as a scan of ids makes them (which should match),
// beside alice's own read of her task from the cache (the baseline: what a
// refusal costs beyond it).
func BenchmarkRefusals(b *testing.B) {
	ctx := context.Background()
	reg := alicesRegistry(b)
	s := newReader(reg, time.Now)
	alice, bob := callerauth.WithCaller(ctx, "alice"), callerauth.WithCaller(ctx, "bob")
	for _, bc := range []struct {
		name string
		ctx  context.Context
		id   int64
		// next is the id of each read: 0 keeps id, 1 takes a new one
		// each time (ids scanned, never cached).
		next int64
	}{{"baseline: alice's own task", alice, alices, 0}, {"bob: alice's task", bob, alices, 0}, {"bob: a new unknown id each time", bob, 1 << 40, 1}} {
		// Across the runs b.Run makes, scanned ids keep growing.
		id := bc.id
		b.Run(bc.name, func(b *testing.B) {
			_, _ = s.visible(bc.ctx, id)
			before := reg.gets.Load()
			for b.Loop() {
				id += bc.next
				_, _ = s.visible(bc.ctx, id)
			}
			b.ReportMetric(float64(reg.gets.Load()-before)/float64(b.N), "reads/op")
		})
	}
}
