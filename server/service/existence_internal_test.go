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
	"github.com/cwpexport/cwpexport/server/taskstore"
)

// countingRegistry counts the reads of a real registry.
type countingRegistry struct {
	Registry
	gets atomic.Int32
}

func (r *countingRegistry) Get(ctx context.Context, id int64) (taskstore.Task, bool, error) {
	r.gets.Add(1)
	return r.Registry.Get(ctx, id)
}

// TestRefusalsTakeTheSamePath: bob's reads of alice's task and of an id
// that does not exist are both refused NotFound after one registry read
// each, however often they are repeated and whatever the cache holds, so
// that their timing does not tell which one exists.
func TestRefusalsTakeTheSamePath(t *testing.T) {
	ctx := context.Background()
	store, err := taskstore.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const alices = 1001
	if err := store.Insert(ctx, taskstore.Task{TaskID: alices, Creator: "alice", Fingerprint: "f", Parameters: "{}", Created: time.Now(), State: taskstore.StatePending}); err != nil {
		t.Fatal(err)
	}
	reg := &countingRegistry{Registry: store}
	policy, _ := access.NewPolicy(nil, nil)
	now := time.Now()
	s := New(Options{Registry: reg, Access: access.NewLive(policy), Now: func() time.Time { return now }})
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
