package exports_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
	"github.com/cwpexport/cwpexport/server/tracker/trackertest"
)

// failingObserve is the registry on SQLite whose next writes of an
// observation fail, as when its disk or database is briefly unavailable.
type failingObserve struct {
	*taskstore.Store
	failures atomic.Int32
}

func (f *failingObserve) Observe(ctx context.Context, o taskstore.Observation) error {
	if f.failures.Add(-1) >= 0 {
		return errors.New("injected: the registry is unavailable")
	}
	return f.Store.Observe(ctx, o)
}

// TestAFailedRecordOfAnEndingIsRetried: the registry's write of a task's
// ending fails; the task stays followed, and a later follow pass records
// the ending.
func TestAFailedRecordOfAnEndingIsRetried(t *testing.T) {
	const id, key = "AKIDobserved000000000000000000000000", "observed-secret-key-0123456789abcd"
	emu, addr := trackertest.StartEmulator(t, emulator.Options{Credentials: map[string]string{id: key}, PendingFor: -1})
	cl := cloud.New(cloud.Config{Credential: common.NewCredential(id, key), Endpoint: addr, Scheme: "HTTP", Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := taskstore.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	reg := &failingObserve{Store: store}

	saga, tr := exports.New(exports.Options{Cloud: cl, Registry: reg, FollowPass: 200 * time.Millisecond}, tracker.Options{
		Scheduler: tracker.NewLocal(tracker.LocalOptions{Cloud: cl, Budget: budget.MustNew(budget.Options{Rate: 20}),
			Pacing: tracker.Pacing{MinInterval: 100 * time.Millisecond, BackgroundInterval: 100 * time.Millisecond}}),
	})
	done := make(chan struct{}, 2)
	go func() { tr.Run(ctx); done <- struct{}{} }()

	created, err := cl.ExportLicenseDetail(ctx, cloud.ExportParams{})
	if err != nil {
		t.Fatal(err)
	}
	row, _, err := store.Reserve(ctx, taskstore.Task{Owner: "test", Created: time.Now()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := tr.Now()
	row.TaskID, row.State, row.Created, row.Observed, row.Changed = created.TaskID, taskstore.StatePending, now, now, now
	if err := store.Complete(ctx, row.ID, "test", row); err != nil {
		t.Fatal(err)
	}
	if err := emu.FinishTask(created.TaskID); err != nil {
		t.Fatal(err)
	}
	reg.failures.Store(1)
	go func() { saga.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	end := time.Now().Add(30 * time.Second)
	for {
		got, _, err := store.Get(ctx, created.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == taskstore.StateFinished {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the registry still says %q after its write of the ending failed once (%d polls)", got.State, emu.Stats().TaskPolls(created.TaskID))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if reg.failures.Load() >= 0 {
		t.Fatal("the registry's write never failed: the test proves nothing")
	}
}
