package exports

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

func request(rid, month string) Request {
	return Request{Parameters: &cwpexportv1.ExportParameters{ExportMonth: month}, Cloud: cloud.ExportParams{ExportMonth: month}, RequestID: rid}
}

func TestCreationIsRecordedFollowedAndCached(t *testing.T) {
	f := newFixture(Options{})
	task, rid, err := f.saga.Create(context.Background(), request("", "2026-01"))
	if err != nil {
		t.Fatal(err)
	}
	if task.GetTaskId() != "1001" || rid != "req-1" || task.GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING {
		t.Errorf("got task %v, request id %q", task, rid)
	}
	row, ok, _ := f.reg.Get(context.Background(), 1001)
	if !ok || row.InFlight || row.State != taskstore.StatePending || row.CreateRequestID != "req-1" {
		t.Errorf("registry row %+v (found %v), want a pending task created by req-1", row, ok)
	}
	if len(f.tracker.created) != 1 || len(f.tracker.followed) != 1 {
		t.Errorf("tracker told created %v, followed %v; want the task once each", f.tracker.created, f.tracker.followed)
	}
	// The creation cached the record: a read does not query the registry.
	gets := f.reg.count("Get")
	rec, err := f.saga.Record(context.Background(), 1001)
	if err != nil || !rec.Recorded || rec.Params.GetExportMonth() != "2026-01" {
		t.Errorf("Record = %+v, %v", rec, err)
	}
	if f.reg.count("Get") != gets {
		t.Errorf("a read of a task just created queried the registry")
	}
}

func TestRequestIDRetryGetsTheSameTaskWithoutASecondCloudCall(t *testing.T) {
	f := newFixture(Options{})
	ctx := context.Background()
	first, _, err := f.saga.Create(ctx, request("r1", "2026-01"))
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := f.saga.Create(ctx, request("r1", "2026-01"))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetTaskId() != first.GetTaskId() || f.cloud.count() != 1 {
		t.Errorf("retry answered task %s (first %s) after %d cloud calls; want the same task, one call", again.GetTaskId(), first.GetTaskId(), f.cloud.count())
	}
	_, _, err = f.saga.Create(ctx, request("r1", "2026-02"))
	if status.Code(err) != codes.InvalidArgument || apierror.Reason(err) != cwpexportv1.ErrorReason_REQUEST_ID_REUSED {
		t.Errorf("other parameters under the same request id: %v, want InvalidArgument %s", err, cwpexportv1.ErrorReason_REQUEST_ID_REUSED)
	}
	// Another caller's request id is its own.
	other := callerauth.WithCaller(ctx, "bob")
	if _, _, err := f.saga.Create(other, request("r1", "2026-02")); err != nil {
		t.Fatal(err)
	}
}

func TestARefusedCreationIsReleasedAndMayBeRetried(t *testing.T) {
	f := newFixture(Options{})
	f.cloud.answer = func(call int) error {
		if call == 1 {
			return &cloud.Error{Code: "InvalidParameterValue", Message: "no"}
		}
		return nil
	}
	ctx := context.Background()
	if _, _, err := f.saga.Create(ctx, request("r1", "2026-01")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("refused creation: %v, want InvalidArgument", err)
	}
	if f.reg.count("Release") != 1 {
		t.Errorf("the refused creation was released %d times, want 1", f.reg.count("Release"))
	}
	if _, _, err := f.saga.Create(ctx, request("r1", "2026-01")); err != nil || f.cloud.count() != 2 {
		t.Errorf("retry after a refusal: %v after %d cloud calls; want a new creation", err, f.cloud.count())
	}
}

func TestAnUnclearFailureLeavesTheOutcomeUnknownForGood(t *testing.T) {
	f := newFixture(Options{})
	f.cloud.answer = func(int) error { return &cloud.Error{Code: cloud.CodeNetwork, Message: "reset"} }
	ctx := context.Background()
	_, _, err := f.saga.Create(ctx, request("r1", "2026-01"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("unclear failure: %v, want the cloud failure's Unavailable", err)
	}
	if f.reg.count("Unknown") != 1 || f.reg.count("Release") != 0 {
		t.Errorf("Unknown recorded %d times, Release %d; want 1 and 0", f.reg.count("Unknown"), f.reg.count("Release"))
	}
	_, _, err = f.saga.Create(ctx, request("r1", "2026-01"))
	if status.Code(err) != codes.Aborted || apierror.Reason(err) != cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN || f.cloud.count() != 1 {
		t.Errorf("retry: %v after %d cloud calls; want Aborted %s and no second call", err, f.cloud.count(), cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN)
	}
}

func TestNoCloudCallWithoutARegistry(t *testing.T) {
	f := newFixture(Options{})
	f.reg.fail = errRegistryDown
	_, _, err := f.saga.Create(context.Background(), request("", "2026-01"))
	if status.Code(err) != codes.Unavailable || apierror.Reason(err) != cwpexportv1.ErrorReason_REGISTRY_FAILED || f.cloud.count() != 0 {
		t.Errorf("registry down: %v after %d cloud calls; want Unavailable %s and no call", err, f.cloud.count(), cwpexportv1.ErrorReason_REGISTRY_FAILED)
	}
}

func TestAThrottledCreationTriesAgainInTheBudget(t *testing.T) {
	f := newFixture(Options{})
	f.cloud.answer = func(call int) error {
		if call == 1 {
			return &cloud.Error{Code: "RequestLimitExceeded"}
		}
		return nil
	}
	if _, _, err := f.saga.Create(context.Background(), request("", "2026-01")); err != nil {
		t.Fatal(err)
	}
	if f.cloud.count() != 2 || f.budget.admits != 1 || f.budget.again != 1 || f.budget.throttle != 1 {
		t.Errorf("cloud calls %d, Admit %d, Again %d, Throttled %d; want 2, 1, 1, 1", f.cloud.count(), f.budget.admits, f.budget.again, f.budget.throttle)
	}
}

func TestABudgetTooLateAnswersResourceExhaustedAndReleases(t *testing.T) {
	f := newFixture(Options{})
	f.budget.late = 3 * time.Second
	_, _, err := f.saga.Create(context.Background(), request("r1", "2026-01"))
	if status.Code(err) != codes.ResourceExhausted || apierror.Reason(err) != cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED {
		t.Errorf("late budget: %v, want ResourceExhausted %s", err, cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED)
	}
	if f.cloud.count() != 0 || f.reg.count("Release") != 1 {
		t.Errorf("cloud calls %d, releases %d; want 0 and 1", f.cloud.count(), f.reg.count("Release"))
	}
}

func TestPollsAreRecordedAndEndedTasksNoLongerFollowed(t *testing.T) {
	f := newFixture(Options{})
	ctx := context.Background()
	if _, _, err := f.saga.Create(ctx, request("", "2026-01")); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.saga.Polled(tracker.Snapshot{TaskID: 1001, State: cloud.StatusFinished, DownloadURL: "https://x/f.csv", Observed: now, Changed: now}, true)
	row, _, _ := f.reg.Get(ctx, 1001)
	if row.State != taskstore.StateFinished || row.DownloadURL != "https://x/f.csv" {
		t.Errorf("registry row after a FINISHED poll: %+v", row)
	}
	if len(f.tracker.dropped) != 1 {
		t.Errorf("unfollowed %v, want the ended task", f.tracker.dropped)
	}
	rec, _ := f.saga.Record(ctx, 1001)
	if rec.Final.GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Errorf("the record read after the end: %v, want its final state from the registry", rec.Final)
	}
}

func TestATaskTheCloudNoLongerKnowsEndsInError(t *testing.T) {
	f := newFixture(Options{})
	ctx := context.Background()
	if _, _, err := f.saga.Create(ctx, request("", "2026-01")); err != nil {
		t.Fatal(err)
	}
	lost := &cloud.Error{Code: "ResourceNotFound", Message: "gone"}
	f.saga.Polled(tracker.Snapshot{TaskID: 1001, Err: lost}, true)
	row, _, _ := f.reg.Get(ctx, 1001)
	if row.State != taskstore.StateError || row.EndReason != LostReason(lost) || len(f.tracker.dropped) != 1 {
		t.Errorf("row %+v, unfollowed %v; want ERROR with the lost reason, unfollowed", row, f.tracker.dropped)
	}
}

func TestThePassFollowsUnfinishedTasksAndAbandonsOldOnes(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	f := newFixture(Options{Now: func() time.Time { return now }, MaxFollowAge: time.Hour})
	ctx := context.Background()
	for _, row := range []taskstore.Task{
		{TaskID: 1, Created: now.Add(-time.Minute), State: taskstore.StatePending},
		{TaskID: 2, Created: now.Add(-2 * time.Hour), State: taskstore.StatePending},
	} {
		got, _, _ := f.reg.Reserve(ctx, row, time.Minute)
		_ = f.reg.Complete(ctx, got.ID, "", row)
	}
	f.saga.followPass(ctx)
	if len(f.tracker.followed) != 1 || f.tracker.followed[0] != 1 {
		t.Errorf("followed %v, want task 1", f.tracker.followed)
	}
	if len(f.tracker.dropped) != 1 || f.tracker.dropped[0] != 2 || f.reg.count("Abandon") != 1 {
		t.Errorf("unfollowed %v after %d abandons, want task 2 abandoned", f.tracker.dropped, f.reg.count("Abandon"))
	}
}

func TestTheRegistrysAbsenceStandsBriefly(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	f := newFixture(Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	for range 3 {
		if rec, err := f.saga.Record(ctx, 77); err != nil || rec.Recorded {
			t.Fatalf("Record of an unknown task: %+v, %v", rec, err)
		}
	}
	if n := f.reg.count("Get"); n != 1 {
		t.Errorf("three reads within %s queried the registry %d times, want once", absentFor, n)
	}
	now = now.Add(absentFor)
	_, _ = f.saga.Record(ctx, 77)
	if n := f.reg.count("Get"); n != 2 {
		t.Errorf("a read after %s queried the registry %d times in all, want twice", absentFor, n)
	}
	f.reg.fail = errRegistryDown
	if _, err := f.saga.Record(ctx, 78); !errors.Is(err, errRegistryDown) {
		t.Errorf("Record with the registry down: %v", err)
	}
}

func TestACallerBeyondItsShareIsRefusedBeforeTheRegistry(t *testing.T) {
	f := newFixture(Options{CallerShare: 0.01}) // 1 per second of the fake's 100, bursts of 1
	alice := callerauth.WithCaller(context.Background(), "alice")
	if _, _, err := f.saga.Create(alice, request("", "2026-01")); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.saga.Create(alice, request("", "2026-01"))
	if status.Code(err) != codes.ResourceExhausted || apierror.Reason(err) != cwpexportv1.ErrorReason_CALLER_SHARE_EXHAUSTED {
		t.Errorf("second creation within the second: %v, want ResourceExhausted %s", err, cwpexportv1.ErrorReason_CALLER_SHARE_EXHAUSTED)
	}
	if f.reg.count("Reserve") != 1 {
		t.Errorf("%d reservations, want only the admitted creation's", f.reg.count("Reserve"))
	}
	if _, _, err := f.saga.Create(callerauth.WithCaller(context.Background(), "bob"), request("", "2026-01")); err != nil {
		t.Errorf("another caller keeps its share: %v", err)
	}
}
