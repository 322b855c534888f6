package service_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestBudgetStatusCountsTheCloudCalls makes the cloud throttle the first two
// polls of an export, follows the export to FINISHED, and compares the
// budget status with what the emulator received.
func TestBudgetStatusCountsTheCloudCalls(t *testing.T) {
	env := testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{
			PendingFor: 1500 * time.Millisecond,
			Faults:     []emulator.Fault{{Kind: emulator.FaultRequestLimitExceeded, Action: cloud.ActionExportTasks, Count: 2}},
		},
		App: app.Options{ReadRate: 7, CreateRate: 9, MinPollInterval: 100 * time.Millisecond},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	created, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	// The registry follows the new task at once: it shares the read budget.
	st, err := env.Client.GetBudgetStatus(ctx, &cwpexportv1.GetBudgetStatusRequest{})
	if err != nil {
		t.Fatalf("GetBudgetStatus: %v", err)
	}
	if st.GetReadBudgetTasks() != 1 {
		t.Errorf("read_budget_tasks = %d with one pending task, want 1", st.GetReadBudgetTasks())
	}

	stream, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: created.GetTask().GetTaskId()})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	if last := msgs[len(msgs)-1]; last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("watch ended with %v", last.GetTask().GetState())
	}
	// Whole seconds only: wait until the second of the last call is over.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))

	cloudSaw := env.Emulator.Stats().Actions
	for _, via := range []string{"gRPC", "REST"} {
		if via == "gRPC" {
			st, err = env.Client.GetBudgetStatus(ctx, &cwpexportv1.GetBudgetStatusRequest{})
			if err != nil {
				t.Fatalf("GetBudgetStatus: %v", err)
			}
		} else {
			r := env.Do(t, "GET", "/v1/budget", "")
			if r.Status != 200 {
				t.Fatalf("GET /v1/budget answered %d: %s", r.Status, r.Body)
			}
			st = &cwpexportv1.GetBudgetStatusResponse{}
			if err := protojson.Unmarshal(r.Body, st); err != nil {
				t.Fatalf("GET /v1/budget: %v: %s", err, r.Body)
			}
		}
		if len(st.GetActions()) != 2 {
			t.Fatalf("%s: %d actions, want 2", via, len(st.GetActions()))
		}
		for i, want := range []struct {
			action     string
			configured float64
		}{{cloud.ActionExportTasks, 7}, {cloud.ActionExportLicenseDetail, 9}} {
			a := st.GetActions()[i]
			calls := 0
			for _, n := range a.GetCallsPerSecond() {
				calls += int(n)
			}
			saw := cloudSaw[want.action]
			// The throttled reads lowered the read budget; creations were not
			// throttled.
			effectiveOK := a.GetEffectiveRate() == want.configured
			if want.action == cloud.ActionExportTasks {
				effectiveOK = a.GetEffectiveRate() < want.configured && a.GetEffectiveRate() >= want.configured/8
			}
			if a.GetAction() != want.action || a.GetConfiguredRate() != want.configured || !effectiveOK || a.GetCloudQuota() != 20 {
				t.Errorf("%s: actions[%d] = %s configured %v effective %v quota %v; want %s %v, effective lowered only by throttles, quota 20", via, i,
					a.GetAction(), a.GetConfiguredRate(), a.GetEffectiveRate(), a.GetCloudQuota(), want.action, want.configured)
			}
			if len(a.GetCallsPerSecond()) != budget.CallWindow {
				t.Errorf("%s: %s has %d seconds, want %d", via, want.action, len(a.GetCallsPerSecond()), budget.CallWindow)
			}
			if int64(calls) != saw.Requests || int64(a.GetThrottledCalls()) != saw.Errors["RequestLimitExceeded"] {
				t.Errorf("%s: %s counted %d calls, %d throttled; the cloud received %d, throttled %d", via, want.action,
					calls, a.GetThrottledCalls(), saw.Requests, saw.Errors["RequestLimitExceeded"])
			}
		}
		if st.GetActions()[0].GetThrottledCalls() != 2 || st.GetActions()[1].GetThrottledCalls() != 0 {
			t.Errorf("%s: throttled %d and %d, want 2 and 0", via, st.GetActions()[0].GetThrottledCalls(), st.GetActions()[1].GetThrottledCalls())
		}
		if st.GetReadBudgetTasks() != 0 {
			t.Errorf("%s: read_budget_tasks = %d after the task finished, want 0", via, st.GetReadBudgetTasks())
		}
		if end := st.GetWindowEndTime().AsTime(); end.Nanosecond() != 0 || time.Since(end) < 0 {
			t.Errorf("%s: window ends at %v, want a whole second not in the future", via, end)
		}
	}

	// The REST answer uses the API's JSON names.
	var doc map[string]any
	if err := json.Unmarshal(env.Do(t, "GET", "/v1/budget", "").Body, &doc); err != nil || doc["readBudgetTasks"] == nil || doc["windowEndTime"] == nil {
		t.Errorf("GET /v1/budget JSON: %v %v", doc, err)
	}
	if r := env.Do(t, "GET", "/v1/budget?window=5", ""); r.Status != 400 {
		t.Errorf("GET /v1/budget?window=5 answered %d, want 400", r.Status)
	}
}
