package exports

import (
	"context"
	"testing"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A created task is never answered as an error for want of its record: the
// write is tried again, and a caller retrying after an error would create a
// second export.
func TestACreatedTaskIsRecordedThroughRegistryFailures(t *testing.T) {
	f := newFixture(Options{})
	f.reg.failures["Complete"] = 3
	task, _, err := f.saga.Create(context.Background(), request("", "2026-01"))
	if err != nil {
		t.Fatalf("creation whose record failed three times: %v; want its task", err)
	}
	row, ok, _ := f.reg.Get(context.Background(), 1001)
	if task.GetTaskId() != "1001" || !ok || row.InFlight || f.cloud.count() != 1 {
		t.Errorf("task %s, recorded %v (%+v), %d cloud calls; want task 1001 recorded after one call", task.GetTaskId(), ok, row, f.cloud.count())
	}
	if f.reg.count("Complete") != 4 {
		t.Errorf("Complete tried %d times, want 4", f.reg.count("Complete"))
	}
}

// A record slower than the caller's deadline still answers the caller with
// its task, before the deadline; the record follows.
func TestACallerGetsItsTaskWhileItsRecordIsSlow(t *testing.T) {
	f := newFixture(Options{})
	gate := make(chan struct{})
	f.reg.gates["Complete"] = gate
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	task, _, err := f.saga.Create(ctx, request("r1", "2026-01"))
	if err != nil || task.GetTaskId() != "1001" {
		t.Fatalf("creation whose record outlasts the deadline: %v, %v; want task 1001", task, err)
	}
	if ctx.Err() != nil {
		t.Errorf("the answer came after the caller's deadline")
	}
	close(gate)
	f.saga.WaitCreations()
	if row, ok, _ := f.reg.Get(context.Background(), 1001); !ok || row.RequestID != "r1" {
		t.Errorf("the task was not recorded once the registry answered: %+v %v", row, ok)
	}
	// A retry of the request id gets the same task.
	again, _, err := f.saga.Create(context.Background(), request("r1", "2026-01"))
	if err != nil || again.GetTaskId() != "1001" || f.cloud.count() != 1 {
		t.Errorf("retry: %v, %v after %d cloud calls; want task 1001 and one call", again, err, f.cloud.count())
	}
}

// The cloud call starts only once the registry holds the mark that it may
// have started, and after the budget's slot.
func TestTheCloudCallStartsOnlyOnceMarked(t *testing.T) {
	f := newFixture(Options{})
	f.cloud.answer = func(int) error {
		for _, r := range f.reg.openRows() {
			if !r.CallStarted {
				t.Errorf("cloud called while creation %s was not marked as started", r.ID)
			}
		}
		if f.budget.admits == 0 {
			t.Errorf("cloud called before the budget admitted it")
		}
		return nil
	}
	if _, _, err := f.saga.Create(context.Background(), request("r1", "2026-01")); err != nil {
		t.Fatal(err)
	}
	if f.reg.count("CallStarting") != 1 {
		t.Errorf("marked %d times, want 1", f.reg.count("CallStarting"))
	}
}

// A creation that was refused a place in the budget was never marked:
// nothing of it reached the cloud.
func TestALateCreationIsNeverMarked(t *testing.T) {
	f := newFixture(Options{})
	f.budget.late = time.Second
	if _, _, err := f.saga.Create(context.Background(), request("r1", "2026-01")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("late creation: %v", err)
	}
	if f.reg.count("CallStarting") != 0 || f.cloud.count() != 0 {
		t.Errorf("marked %d times, %d cloud calls; want none", f.reg.count("CallStarting"), f.cloud.count())
	}
}

// A process that stopped while its creation waited for the budget burned
// no request id: the retry creates the task. One that stopped after the mark
// answers CREATION_OUTCOME_UNKNOWN, without a cloud call.
func TestARequestQueuedWhenItsProcessStoppedRunsAgain(t *testing.T) {
	f := newFixture(Options{})
	f.reg.abandoned("", "queued", false)
	f.reg.abandoned("", "calling", true)
	task, _, err := f.saga.Create(context.Background(), request("queued", "2026-01"))
	if err != nil || task.GetTaskId() != "1001" || f.cloud.count() != 1 {
		t.Fatalf("retry of a request stopped in the queue: %v, %v after %d cloud calls; want its task", task, err, f.cloud.count())
	}
	_, _, err = f.saga.Create(context.Background(), request("calling", "2026-01"))
	if status.Code(err) != codes.Aborted || apierror.Reason(err) != cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN || f.cloud.count() != 1 {
		t.Errorf("retry of a request stopped during its call: %v after %d cloud calls; want Aborted %s and no call",
			err, f.cloud.count(), cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN)
	}
}

// A mark that could not be written means no call: the creation is
// released and the caller told the registry failed.
func TestAFailedMarkMakesNoCall(t *testing.T) {
	f := newFixture(Options{})
	f.reg.failures["CallStarting"] = 1
	if _, _, err := f.saga.Create(context.Background(), request("r1", "2026-01")); status.Code(err) != codes.Unavailable {
		t.Fatalf("mark failed: %v, want Unavailable", err)
	}
	if f.cloud.count() != 0 || len(f.reg.openRows()) != 0 {
		t.Errorf("%d cloud calls, open rows %+v; want no call and the creation released", f.cloud.count(), f.reg.openRows())
	}
}
