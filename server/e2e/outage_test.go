package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/pgtest"
)

// TestFleetReadsDuringACloudOutage: while the cloud fails every
// ExportTasks, a plain GET (no deadline) of a task the fleet observed
// answers, on another replica, what the fleet last observed and when,
// instead of waiting for the cloud; once the cloud recovers, the task's
// end is read.
func TestFleetReadsDuringACloudOutage(t *testing.T) {
	envs := replicas(t, 2, pgtest.DSN(t))
	res, err := envs[0].Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	taskID := mustParse(t, id)
	// A read of a task older than -freshness polls it.
	testutil.WaitFor(t, "a poll", func() bool {
		_ = envs[0].Do(t, http.MethodGet, "/v1/export-tasks/"+id, "")
		return envs[0].Emulator.Stats().TaskPolls(taskID) >= 1
	})
	if err := envs[0].Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultServiceUnavailable, Action: cloud.ActionExportTasks}); err != nil {
		t.Fatal(err)
	}
	// Past -freshness (fastApp: 50ms): a read asks the cloud.
	time.Sleep(200 * time.Millisecond)
	for _, env := range envs {
		r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id, "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET during the outage: HTTP %d %s", r.Status, r.Body)
		}
		task, _ := r.JSON(t)["task"].(map[string]any)
		if task["state"] != "EXPORT_TASK_STATE_PENDING" || task["observeTime"] == nil {
			t.Fatalf("GET during the outage answered %s; want the last observation, with its time", r.Body)
		}
	}
	envs[0].Emulator.ClearFaults()
	if err := envs[0].Emulator.FinishTask(taskID); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a GET to read the task's end", func() bool {
		r := envs[1].Do(t, http.MethodGet, "/v1/export-tasks/"+id, "")
		task, _ := r.JSON(t)["task"].(map[string]any)
		return r.Status == http.StatusOK && task["state"] == "EXPORT_TASK_STATE_FINISHED"
	})
}
