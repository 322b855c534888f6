package service_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestTaskElapsedIsTheTasksAgeAndStopsAtItsEnd: a task's elapsed time
// counts from its creation time, and once the task ended it is the time
// from its creation to its observed end on every path (Get over gRPC and
// REST, a watch), with no next poll announced.
func TestTaskElapsedIsTheTasksAgeAndStopsAtItsEnd(t *testing.T) {
	env := testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{PendingFor: -1},
		App:      app.Options{MinPollInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond},
	})
	client := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	created := res.GetTask().GetCreateTime().AsTime()
	time.Sleep(100 * time.Millisecond) // a watch opened later sees an older task
	watch, err := client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	snap, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e, atLeast := snap.GetProgress().GetTaskElapsed().AsDuration(), before.Sub(created); e < atLeast {
		t.Errorf("a watch opened later says elapsed %s, want the task's age (at least %s)", e, atLeast)
	}

	n, _ := strconv.ParseInt(id, 10, 64)
	if err := env.Emulator.FinishTask(n); err != nil {
		t.Fatal(err)
	}
	var last *cwpexportv1.WatchExportTaskResponse
	for last = snap; last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED; {
		if last, err = watch.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	task := last.GetTask()
	want := task.GetUpdateTime().AsTime().Sub(task.GetCreateTime().AsTime())
	checkEnded := func(path string, p *cwpexportv1.Progress) {
		t.Helper()
		if e := p.GetTaskElapsed().AsDuration(); e != want {
			t.Errorf("%s: elapsed %s, want %s (creation to observed end)", path, e, want)
		}
		if p.GetNextPollTime() != nil {
			t.Errorf("%s: a FINISHED task announces a next poll at %s", path, p.GetNextPollTime().AsTime())
		}
	}
	checkEnded("the FINISHED message", last.GetProgress())

	// Later reads say the same, whatever the time now.
	time.Sleep(100 * time.Millisecond)
	got, err := client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	checkEnded("GetExportTask", got.GetProgress())
	again, err := client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := again.Recv()
	if err != nil {
		t.Fatal(err)
	}
	checkEnded("a watch of the ended task", msg.GetProgress())
	resp, err := env.HTTP.Get(env.RESTURL + "/v1/export-tasks/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rest struct {
		Progress struct {
			TaskElapsed  string `json:"taskElapsed"`
			NextPollTime string `json:"nextPollTime"`
		} `json:"progress"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rest); err != nil {
		t.Fatal(err)
	}
	if e := rest.Progress.TaskElapsed; e != durationText(want) || rest.Progress.NextPollTime != "" {
		t.Errorf("REST: taskElapsed %q nextPollTime %q, want %q and none", e, rest.Progress.NextPollTime, durationText(want))
	}
}

// durationText is a duration as protojson writes it.
func durationText(d time.Duration) string {
	b, _ := protojson.Marshal(durationpb.New(d))
	var s string
	_ = json.Unmarshal(b, &s)
	return s
}
