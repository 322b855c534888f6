package budget

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// counter counts calls in one Window per action.
type counter map[string]*Window

func (c counter) CloudCalls(action string, now time.Time) ([]int32, int32) {
	return c[action].Calls(now)
}

func TestStatusReportsBothActionsFromTheirEnginesAndWindows(t *testing.T) {
	now := time.Unix(1_800_000_000, 300_000_000)
	calls := counter{cloud.ActionExportTasks: {}, cloud.ActionExportLicenseDetail: {}}
	calls[cloud.ActionExportTasks].Add(now.Add(-time.Second), true)
	r := &Reporter{Calls: calls, Read: MustNew(Options{Rate: 7}), Create: MustNew(Options{Rate: 9}), Tasks: func() int { return 3 }}
	st := r.Status(now)
	if len(st.Actions) != 2 || st.ReadTasks != 3 || !st.WindowEnd.Equal(now.Truncate(time.Second)) {
		t.Fatalf("status %+v", st)
	}
	read, create := st.Actions[0], st.Actions[1]
	if read.Action != cloud.ActionExportTasks || read.Configured != 7 || read.CloudQuota != CloudQuota ||
		read.CallsPerSecond[CallWindow-1] != 1 || read.Throttled != 1 {
		t.Errorf("read budget %+v", read)
	}
	if create.Action != cloud.ActionExportLicenseDetail || create.Configured != 9 || create.Effective != 9 {
		t.Errorf("create budget %+v", create)
	}
}

func TestAdmissionTooLateNamesTheLimitThatBinds(t *testing.T) {
	b := MustNew(Options{Rate: 1})
	a := Admission{Engine: b, CallTime: 100 * time.Millisecond, QueueWait: 30 * time.Second}
	ctx := context.Background()
	if err := a.Admit(ctx, time.Now().Add(time.Minute), false); err != nil {
		t.Fatal(err) // the first call starts at once
	}
	err := a.Admit(ctx, time.Now(), false) // the queue's end has come
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "within the 30s an export may wait") {
		t.Errorf("past the queue's bound: %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = a.Admit(dctx, time.Now().Add(time.Minute), false)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "before the call's deadline") {
		t.Errorf("past the caller's deadline: %v", err)
	}
}
