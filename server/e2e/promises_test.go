package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// These tests hold the service to its promises under ambiguous failures:
// each reproduces a way the cloud, the disk or a caller can break one.

// TestAmbiguousCreationIsNeverRepeated: when the cloud may have created the
// task but its answer was lost (the connection reset after the request was
// sent, or the answer was unreadable), a retry with the same request_id is
// told that the outcome is unknown — over gRPC and REST — and never makes a
// second cloud task.
func TestAmbiguousCreationIsNeverRepeated(t *testing.T) {
	for _, f := range []emulator.Fault{
		{Kind: emulator.FaultReset, AfterAction: true},
		{Kind: emulator.FaultTruncated},
		{Kind: emulator.FaultMalformed},
	} {
		t.Run(string(f.Kind), func(t *testing.T) {
			env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
			f.Action, f.Count = cloud.ActionExportLicenseDetail, 1
			if err := env.Emulator.InjectFault(f); err != nil {
				t.Fatal(err)
			}
			id := uuid.NewString()
			req := &cwpexportv1.ExportLicenseDetailRequest{RequestId: id}
			_, err := env.Client.ExportLicenseDetail(context.Background(), req)
			if status.Code(err) != codes.Unavailable || errorInfo(status.Convert(err)).GetMetadata()["creation_outcome"] != "unknown" {
				t.Fatalf("the faulted export: %v, want Unavailable with creation_outcome unknown", err)
			}
			if n := created(env); n != 1 {
				t.Fatalf("the cloud created %d tasks before the answer was lost, want 1", n)
			}
			for range 2 {
				_, err = env.Client.ExportLicenseDetail(context.Background(), req)
				if status.Code(err) != codes.Aborted || errorInfo(status.Convert(err)).GetReason() != "CREATION_OUTCOME_UNKNOWN" {
					t.Fatalf("retry: %v, want Aborted CREATION_OUTCOME_UNKNOWN", err)
				}
			}
			if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{"requestId":"`+id+`"}`); r.Status != http.StatusConflict {
				t.Fatalf("REST retry: HTTP %d %s, want 409", r.Status, r.Body)
			}
			if n := created(env); n != 1 {
				t.Fatalf("retries made the cloud create %d tasks, want the first one only", n)
			}
		})
	}
}

// TestCreationOutlivesItsCaller: a caller that gives up while the cloud
// creates its export does not cancel the cloud call; the task is recorded,
// a retry with the same request_id gets it (or CREATION_IN_PROGRESS while
// the cloud is still at work), and the cloud holds one task.
func TestCreationOutlivesItsCaller(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	if err := env.Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: cloud.ActionExportLicenseDetail, Delay: 2 * time.Second, Count: 2}); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	req := &cwpexportv1.ExportLicenseDetailRequest{RequestId: id}
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := env.Client.ExportLicenseDetail(short, req)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded || errorInfo(status.Convert(err)) == nil {
		t.Fatalf("export with a 300ms deadline while the cloud takes 2s: %v, want the service's DeadlineExceeded", err)
	}
	// A retry while the cloud is still at work.
	short, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = env.Client.ExportLicenseDetail(short, req)
	cancel()
	if status.Code(err) != codes.Unavailable || errorInfo(status.Convert(err)).GetReason() != "CREATION_IN_PROGRESS" {
		t.Fatalf("retry while the first call is under way: %v, want Unavailable CREATION_IN_PROGRESS", err)
	}
	r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{"requestId":"`+id+`"}`)
	if r.Status != http.StatusOK && (r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "") {
		t.Fatalf("REST retry while the first call is under way: HTTP %d (Retry-After %q) %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	// A patient retry gets the task.
	long, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := env.Client.ExportLicenseDetail(long, req)
	if err != nil || res.GetTask().GetTaskId() == "" {
		t.Fatalf("a patient retry: %v %v", res, err)
	}
	if n := created(env); n != 1 {
		t.Fatalf("the cloud created %d tasks for one request_id", n)
	}

	// Without a request_id the task is recorded all the same.
	short, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = env.Client.ExportLicenseDetail(short, &cwpexportv1.ExportLicenseDetailRequest{IsHistory: true})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("export without a request_id: %v", err)
	}
	testutil.WaitFor(t, "the abandoned export to be recorded", func() bool {
		page, err := env.Client.ListExportTasks(long, &cwpexportv1.ListExportTasksRequest{})
		return err == nil && len(page.GetTasks()) == 2 && page.GetTasks()[0].GetParameters().GetIsHistory()
	})
	if n := created(env); n != 2 {
		t.Fatalf("the cloud holds %d tasks, the registry 2", n)
	}
}

// tinyDisk mounts a small file system of the test's own, so that a test can
// fill it: a real full disk, not a simulation. Mounting needs root (CI runs
// as root); elsewhere the test is skipped, loudly.
func tinyDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: this test mounts a small tmpfs to fill it, which needs root; run it as root (CI does)")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes to dir until its file system is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// TestNoCloudCallWithoutARegistryWrite: with the registry's disk full,
// exports with and without a request_id are refused with Unavailable and
// never reach the cloud: no task exists that the registry does not hold.
func TestNoCloudCallWithoutARegistryWrite(t *testing.T) {
	dir := tinyDisk(t, "2m")
	o := fastApp()
	o.DataDir = dir
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatalf("export before the disk filled up: %v", err)
	}
	fill(t, dir)
	ok, refused := 1, 0
	for i := range 10 {
		req := &cwpexportv1.ExportLicenseDetailRequest{}
		if i%2 == 1 {
			req.RequestId = uuid.NewString()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := env.Client.ExportLicenseDetail(ctx, req)
		cancel()
		switch {
		case err == nil:
			ok++
		case status.Code(err) == codes.Unavailable && errorInfo(status.Convert(err)).GetReason() == "REGISTRY_FAILED":
			refused++
		default:
			t.Errorf("export %d on a full disk: %v, want Unavailable REGISTRY_FAILED", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("the full disk refused no registry write: the test proves nothing")
	}
	if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{}`); r.Status != http.StatusServiceUnavailable {
		t.Errorf("REST export on a full disk: HTTP %d %s, want 503", r.Status, r.Body)
	}
	if n := created(env); n != int64(ok) {
		t.Fatalf("the cloud created %d tasks; the service recorded and answered %d", n, ok)
	}
}

// TestRegistryThatCannotBeWrittenStopsTheStart: the service refuses to
// start on a registry file it may not write (SQLite would open it
// read-only and the service would seem healthy) and says what to fix.
func TestRegistryThatCannotBeWrittenStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	store, err := taskstore.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	path := filepath.Join(dir, taskstore.FileName)
	if os.Geteuid() == 0 {
		// Root may write any file; an immutable one it may not either.
		if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
			t.Skipf("SKIPPED: cannot make the registry immutable here (%v: %s)", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("chattr", "-i", path).Run() })
	} else if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	_, err = app.New(app.Options{DataDir: dir, SecretID: testserver.SecretID, SecretKey: testserver.SecretKey, Endpoint: "127.0.0.1:1", Scheme: "HTTP", AllowPrivateCloud: true})
	if err == nil {
		t.Fatal("the service started on a registry it cannot write")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "registry") || !strings.Contains(err.Error(), "permissions") {
		t.Fatalf("the start-up error does not say what to fix: %v", err)
	}
}

// TestDownloadOfAPendingTaskAnswersTheCloudFailure: a download that needs
// the task's state while the cloud fails answers that failure's documented
// status before the caller's deadline, over gRPC and REST.
func TestDownloadOfAPendingTaskAnswersTheCloudFailure(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	if err := env.Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultHTTPError, Action: cloud.ActionExportTasks}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past Freshness
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	stream, err := env.Client.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: id})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unavailable || errorInfo(status.Convert(err)).GetReason() != "UPSTREAM_UNAVAILABLE" {
		t.Fatalf("gRPC download while the cloud fails: %v, want the service's Unavailable", err)
	}
	req, _ := http.NewRequest(http.MethodGet, env.RESTURL+"/v1/export-tasks/"+id+":download", nil)
	req.Header.Set("Grpc-Timeout", "1500m")
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("REST download while the cloud fails: HTTP %d, want 503", resp.StatusCode)
	}
}

// TestStreamRefusalsCarryRetryAfter: a REST stream refused before its first
// message with a RetryInfo (the export budget is full) carries Retry-After,
// as unary answers do.
func TestStreamRefusalsCarryRetryAfter(t *testing.T) {
	o := fastApp()
	o.CreateRate = 0.2 // one export every 5 s
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:exportAndWatch", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Grpc-Timeout", "1000m")
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("exportAndWatch over the budget: HTTP %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestEndedTasksAreAnsweredFromTheRegistry: after a restart, a task the
// registry records as FINISHED is read and watched without asking the
// cloud again.
func TestEndedTasksAreAnsweredFromTheRegistry(t *testing.T) {
	dir := t.TempDir()
	o := fastApp()
	o.DataDir = dir
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 100 * time.Millisecond}, App: o})
	id := finished(t, env)
	testutil.WaitFor(t, "the registry to record FINISHED", func() bool {
		page, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED})
		return err == nil && len(page.GetTasks()) == 1
	})
	env.Stop()

	env = testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 100 * time.Millisecond}, App: o})
	got, err := env.Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
	if err != nil || got.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED || got.GetTask().GetDownloadUrl() == "" {
		t.Fatalf("get after a restart: %v %v", got, err)
	}
	stream, err := env.Client.WatchExportTask(context.Background(), &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	if len(msgs) != 1 || msgs[0].GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("watch after a restart: %v", msgs)
	}
	if n := env.Emulator.Stats().Actions[cloud.ActionExportTasks].Requests; n != 0 {
		t.Fatalf("reads of a task recorded as FINISHED asked the cloud %d times", n)
	}
}

// TestTaskTheCloudForgotEnds: a recorded task the cloud answers
// ResourceNotFound for ends in ERROR with the reason, in the list and in
// reads, instead of staying PENDING.
func TestTaskTheCloudForgotEnds(t *testing.T) {
	env := testserver.Start(t, testserver.Config{App: withPendingTask(t, 777777, time.Now())})
	var msg string
	testutil.WaitFor(t, "the forgotten task to end in ERROR", func() bool {
		page, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR})
		if err != nil || len(page.GetTasks()) != 1 {
			return false
		}
		msg = page.GetTasks()[0].GetErrorMessage()
		return true
	})
	if !strings.Contains(msg, "no longer knows") {
		t.Fatalf("error message %q", msg)
	}
	got, err := env.Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: "777777"})
	if err != nil || got.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR {
		t.Fatalf("get of the forgotten task: %v %v", got, err)
	}
}

// TestWatchesOutlastASlowCloud: polls that take longer than the poll
// timeout are transient failures: every watch, gRPC and REST, stays open,
// reports them in heartbeats and sees the task finish.
func TestWatchesOutlastASlowCloud(t *testing.T) {
	o := fastApp()
	o.PollTimeout = 300 * time.Millisecond
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	if err := env.Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: cloud.ActionExportTasks, Delay: time.Second, Count: 3}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make([]string, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		stream, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
		if err != nil {
			results[0] = err.Error()
			return
		}
		failures := false
		for {
			m, err := stream.Recv()
			if err != nil {
				results[0] = fmt.Sprintf("ended with %v (failures reported: %v)", err, failures)
				return
			}
			failures = failures || m.GetProgress().GetConsecutivePollFailures() > 0
			if m.GetTask().GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
				results[0] = fmt.Sprintf("FINISHED (failures reported: %v)", failures)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		code, lines := env.Stream(t, ctx, http.MethodGet, "/v1/export-tasks/"+id+":watch", "")
		last := ""
		if len(lines) > 0 {
			last = fmt.Sprint(lines[len(lines)-1])
		}
		results[1] = fmt.Sprintf("HTTP %d, last line %s", code, last)
	}()
	testutil.WaitFor(t, "the slow polls to pass", func() bool { return len(env.Emulator.Faults().Active) == 0 })
	taskID := mustParse(t, id)
	if err := env.Emulator.FinishTask(taskID); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if results[0] != "FINISHED (failures reported: true)" {
		t.Errorf("gRPC watch: %s", results[0])
	}
	if !strings.Contains(results[1], "HTTP 200") || !strings.Contains(results[1], "EXPORT_TASK_STATE_FINISHED") {
		t.Errorf("REST watch: %s", results[1])
	}
}

func mustParse(t *testing.T, id string) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(id, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCreationsAdaptToASharedQuota: when other programs use most of the
// account's creation quota (the cloud admits 5 per second here), the
// service's creations slow down to what is left instead of being refused
// again and again, and all of them succeed.
func TestCreationsAdaptToASharedQuota(t *testing.T) {
	o := fastApp()
	o.CreateRate = 18
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1, RateLimit: 5}, App: o})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("an export failed: %v", err)
		}
	}
	st := env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail]
	refused := st.Errors["RequestLimitExceeded"]
	if st.TasksCreated != n {
		t.Fatalf("%d tasks created for %d exports", st.TasksCreated, n)
	}
	// Without adapting, 18 calls a second against 5 admitted had some 13
	// refused every second.
	if refused > n/5 {
		t.Fatalf("the cloud refused %d of %d creation calls: the budget did not adapt", refused, st.Requests)
	}
	t.Logf("%d creation calls, %d refused", st.Requests, refused)
}

// TestDownloadAfterTheStorageMoved: a finished task's recorded download
// URL names an endpoint that no longer answers (the cloud's storage moved:
// here the emulator restarted on another port, its tasks kept); the
// download asks the cloud for a new URL and gets the same bytes.
func TestDownloadAfterTheStorageMoved(t *testing.T) {
	o := fastApp()
	o.DataDir = t.TempDir()
	state := t.TempDir()
	cfg := testserver.Config{Emulator: emulator.Options{PendingFor: 100 * time.Millisecond, StateDir: state}, App: o}
	env := testserver.Start(t, cfg)
	id := finished(t, env)
	want, _ := downloadGRPC(t, env, id)
	testutil.WaitFor(t, "the registry to record FINISHED", func() bool {
		page, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED})
		return err == nil && len(page.GetTasks()) == 1
	})
	old := env.EmulatorAddr
	env.Stop()

	env = testserver.Start(t, cfg)
	if env.EmulatorAddr == old {
		t.Skip("the emulator got its old port again: nothing moved")
	}
	got, _ := downloadGRPC(t, env, id)
	if string(got) != string(want) {
		t.Fatalf("downloaded %d bytes after the storage moved, %d before", len(got), len(want))
	}
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id+":download", ""); r.Status != http.StatusOK || string(r.Body) != string(want) {
		t.Fatalf("REST download after the storage moved: HTTP %d, %d bytes", r.Status, len(r.Body))
	}
}
