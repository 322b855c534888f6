package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/testserver"
)

const rid = "123e4567-e89b-12d3-a456-426614174000"

func created(env *testserver.Env) int64 {
	return env.Emulator.Stats().Actions["ExportLicenseDetail"].TasksCreated
}

func TestRetriedCreateReturnsTheFirstTask(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	ctx := context.Background()
	req := &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"1"}}}, RequestId: rid}
	first, err := env.Client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := env.Client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetTask().GetTaskId() != first.GetTask().GetTaskId() || again.GetUpstreamRequestId() != first.GetUpstreamRequestId() {
		t.Fatalf("retry answered task %s (upstream %s), first was %s (%s)", again.GetTask().GetTaskId(), again.GetUpstreamRequestId(),
			first.GetTask().GetTaskId(), first.GetUpstreamRequestId())
	}
	if got := again.GetTask(); got.GetRequestId() != rid || len(got.GetParameters().GetFilters()) != 1 {
		t.Fatalf("retry answered %v, want the request id and parameters", got)
	}
	if n := created(env); n != 1 {
		t.Fatalf("the cloud created %d tasks, want 1", n)
	}
	got, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: first.GetTask().GetTaskId()})
	if err != nil || got.GetTask().GetRequestId() != rid || got.GetTask().GetParameters().GetFilters()[0].GetValues()[0] != "1" {
		t.Fatalf("GetExportTask answered %v (%v), want the registry's request id and parameters", got.GetTask(), err)
	}

	// The same request id with other parameters is refused, over REST too.
	_, err = env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{IsHistory: true, RequestId: rid})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("reuse with other parameters: %v, want InvalidArgument", err)
	}
	info := apierror.Info(err)
	if info.GetReason() != "REQUEST_ID_REUSED" || info.GetMetadata()["task_id"] != first.GetTask().GetTaskId() {
		t.Fatalf("reuse error info %v", info)
	}
	if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{"isHistory":true,"requestId":"`+rid+`"}`); r.Status != http.StatusBadRequest {
		t.Fatalf("REST reuse: HTTP %d %s", r.Status, r.Body)
	}
	if n := created(env); n != 1 {
		t.Fatalf("the cloud created %d tasks, want 1", n)
	}
}

func TestConcurrentDuplicateCreatesMakeOneUpstreamCall(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	const callers = 16
	ids := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{RequestId: rid})
				ids[i], errs[i] = res.GetTask().GetTaskId(), err
				return
			}
			stream, err := env.Client.ExportLicenseDetailAndWatch(context.Background(), &cwpexportv1.ExportLicenseDetailAndWatchRequest{RequestId: rid})
			if err == nil {
				var m *cwpexportv1.ExportLicenseDetailAndWatchResponse
				m, err = stream.Recv()
				ids[i] = m.GetTask().GetTaskId()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || ids[i] != ids[0] || ids[0] == "" {
			t.Fatalf("caller %d: task %q err %v; caller 0: task %q", i, ids[i], errs[i], ids[0])
		}
	}
	if n := created(env); n != 1 {
		t.Fatalf("the cloud created %d tasks for %d identical requests, want 1", n, callers)
	}
}

func TestListPagesNewestFirstWithFilterAndConcurrentInserts(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	ctx := context.Background()
	var want []string
	for range 7 {
		res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{res.GetTask().GetTaskId()}, want...)
	}
	var got []string
	token := ""
	for {
		page, err := env.Client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range page.GetTasks() {
			got = append(got, task.GetTaskId())
		}
		// A task created between pages is newer: it shifts no later page.
		if _, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
			t.Fatal(err)
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages listed %v, want %v", got, want)
	}

	// Finish the oldest task: the state filter sees it once the service
	// has observed it (any poll updates the registry; this Get makes one
	// sooner than the registry's background pace).
	oldest, _ := strconv.ParseInt(want[len(want)-1], 10, 64)
	if err := env.Emulator.FinishTask(oldest); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past Freshness
	if _, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: want[len(want)-1]}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the registry to record FINISHED", func() bool {
		r := env.Do(t, http.MethodGet, "/v1/export-tasks?state=EXPORT_TASK_STATE_FINISHED", "")
		tasks, _ := r.JSON(t)["tasks"].([]any)
		return r.Status == http.StatusOK && len(tasks) == 1 && tasks[0].(map[string]any)["taskId"] == want[len(want)-1]
	})

	for _, q := range []string{"pageSize=1001", "pageSize=-1", "pageToken=garbage", "state=7"} {
		if r := env.Do(t, http.MethodGet, "/v1/export-tasks?"+q, ""); r.Status != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %s, want 400", q, r.Status, r.Body)
		}
	}
	page, err := env.Client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 1, PageToken: page.GetNextPageToken(), State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a token used with another state filter: %v, want InvalidArgument", err)
	}
}

// finished creates a task and waits until the service reports it FINISHED.
func finished(t *testing.T, env *testserver.Env, filters ...*cwpexportv1.Filter) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{Filters: filters})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	last := msgs[len(msgs)-1]
	if last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("task ended %v", last.GetTask())
	}
	return last.GetTask().GetTaskId()
}

// downloadGRPC reads a DownloadExport stream, checking offsets and the
// final SHA-256.
func downloadGRPC(t *testing.T, env *testserver.Env, id string) ([]byte, *cwpexportv1.DownloadExportResponse) {
	t.Helper()
	stream, err := env.Client.DownloadExport(context.Background(), &cwpexportv1.DownloadExportRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	var first, last *cwpexportv1.DownloadExportResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if first == nil {
			first = m
		}
		if m.GetOffset() != int64(len(body)) {
			t.Fatalf("chunk at offset %d, want %d", m.GetOffset(), len(body))
		}
		body = append(body, m.GetData()...)
		last = m
	}
	sum := sha256.Sum256(body)
	if last.GetSha256() != hex.EncodeToString(sum[:]) || last.GetTotalSize() != int64(len(body)) {
		t.Fatalf("last message %v; received %d bytes with SHA-256 %x", last, len(body), sum)
	}
	return body, first
}

func TestDownloadIsByteExactOverGRPCAndREST(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 100 * time.Millisecond, Records: 3000}, App: fastApp()})
	id := finished(t, env)
	taskID, _ := strconv.ParseInt(id, 10, 64)
	file, err := env.Emulator.TaskFile(taskID)
	if err != nil {
		t.Fatal(err)
	}

	body, first := downloadGRPC(t, env, id)
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != file.SHA256 || int64(len(body)) != file.Size {
		t.Fatalf("gRPC: %d bytes %x, the emulator's file is %d bytes %s", len(body), sum, file.Size, file.SHA256)
	}
	if first.GetFileName() != "cwp-license-detail-"+id+".csv" || first.GetContentType() != "text/csv" || first.GetTotalSize() != file.Size {
		t.Fatalf("first message %v", first)
	}

	r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id+":download", "")
	sum = sha256.Sum256(r.Body)
	if r.Status != http.StatusOK || hex.EncodeToString(sum[:]) != file.SHA256 {
		t.Fatalf("REST: HTTP %d, %d bytes %x, want %d bytes %s", r.Status, len(r.Body), sum, file.Size, file.SHA256)
	}
	if r.Header.Get("Content-Type") != "text/csv" || r.Header.Get("Content-Length") != strconv.FormatInt(file.Size, 10) ||
		r.Header.Get("Content-Disposition") != `attachment; filename=cwp-license-detail-`+id+`.csv` {
		t.Fatalf("REST headers %v", r.Header)
	}
}

func TestDownloadRefreshesAnExpiredURL(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 100 * time.Millisecond, DownloadTTL: 300 * time.Millisecond}, App: fastApp()})
	id := finished(t, env)
	time.Sleep(400 * time.Millisecond) // the URL the service holds expires
	body, _ := downloadGRPC(t, env, id)
	taskID, _ := strconv.ParseInt(id, 10, 64)
	if file, _ := env.Emulator.TaskFile(taskID); file.Size != int64(len(body)) {
		t.Fatalf("downloaded %d bytes, the file has %d", len(body), file.Size)
	}
	if n := env.Emulator.Stats().ExpiredDownloads; n < 1 {
		t.Fatalf("the emulator refused %d expired URLs; the test did not exercise the refresh", n)
	}
	time.Sleep(400 * time.Millisecond)
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id+":download", ""); r.Status != http.StatusOK || int64(len(r.Body)) != int64(len(body)) {
		t.Fatalf("REST after expiry: HTTP %d, %d bytes", r.Status, len(r.Body))
	}
}

func TestDownloadOfAPendingTaskFails(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	stream, err := env.Client.DownloadExport(context.Background(), &cwpexportv1.DownloadExportRequest{TaskId: id})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition {
		t.Fatalf("download of a pending task: %v, want FailedPrecondition", err)
	}
	r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id+":download", "")
	if r.Status != http.StatusBadRequest || r.JSON(t)["message"] == nil {
		t.Fatalf("REST: HTTP %d %s, want 400 with a JSON error", r.Status, r.Body)
	}
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks/abc:download", ""); r.Status != http.StatusBadRequest {
		t.Fatalf("REST bad id: HTTP %d", r.Status)
	}
}

// TestRetryAfterADeadProcessNeverCreatesTwice: a process that died during
// a creation's cloud call leaves a creation without a task; once its lease
// has run out the outcome is unknown, and a retry with the same request id
// is told so rather than create a second task.
func TestRetryAfterADeadProcessNeverCreatesTwice(t *testing.T) {
	dir := t.TempDir()
	store, err := taskstore.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r, fresh, err := store.Reserve(context.Background(), taskstore.Task{RequestID: rid, Fingerprint: fingerprintOfEmptyRequest(t), Parameters: "{}", Owner: "dead-process", Created: now.Add(-time.Minute)}, -time.Second)
	if err != nil || !fresh {
		t.Fatalf("reserve: %v %v", fresh, err)
	}
	// It died after the mark that its cloud call starts.
	if err := store.CallStarting(context.Background(), r.ID, r.Owner, -time.Second); err != nil {
		t.Fatal(err)
	}
	store.Close()
	o := fastApp()
	o.DataDir = dir
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	_, err = env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{RequestId: rid})
	if st := status.Convert(err); st.Code() != codes.Aborted || reason(err) != "CREATION_OUTCOME_UNKNOWN" {
		t.Fatalf("retry of a creation whose process died: %v, want Aborted CREATION_OUTCOME_UNKNOWN", err)
	}
	if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{"requestId":"`+rid+`"}`); r.Status != http.StatusConflict {
		t.Fatalf("REST: HTTP %d %s, want 409", r.Status, r.Body)
	}
	if n := created(env); n != 0 {
		t.Fatalf("the cloud created %d tasks", n)
	}
	// A new request id is a new export.
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{RequestId: "123e4567-e89b-12d3-a456-426614174999"}); err != nil {
		t.Fatal(err)
	}
}

// reason is the ErrorInfo reason of err's status.
func reason(err error) string { return errorInfo(status.Convert(err)).GetReason() }

// fingerprintOfEmptyRequest is the registry's fingerprint of a request
// without conditions: the SHA-256 of its (empty) protobuf encoding.
func fingerprintOfEmptyRequest(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256(nil)
	return hex.EncodeToString(sum[:])
}

// withPendingTask returns the test options with a data directory whose
// registry records task id as created at created and still pending.
func withPendingTask(t *testing.T, id int64, created time.Time) app.Options {
	t.Helper()
	dir := t.TempDir()
	store, err := taskstore.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Insert(context.Background(), taskstore.Task{TaskID: id, Fingerprint: "f", Parameters: "{}", Created: created, State: taskstore.StatePending, Observed: created, Changed: created}); err != nil {
		t.Fatal(err)
	}
	o := fastApp()
	o.DataDir = dir
	return o
}

// TestOldPendingTasksAreGivenUp: at start-up, a registry task still pending
// longer than MaxFollowAge after its creation is no longer followed, and the
// list says why.
func TestOldPendingTasksAreGivenUp(t *testing.T) {
	env := testserver.Start(t, testserver.Config{App: withPendingTask(t, 424242, time.Now().Add(-48*time.Hour))})
	var msg string
	testutil.WaitFor(t, "the task to be given up", func() bool {
		page, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{})
		if err != nil || len(page.GetTasks()) != 1 {
			t.Fatalf("list: %v %v", page, err)
		}
		msg = page.GetTasks()[0].GetErrorMessage()
		return msg != ""
	})
	// The seconds depend on how long the start took.
	if want := "the service stopped following this task: still PENDING after 48h0m"; len(msg) < len(want) || msg[:len(want)] != want {
		t.Fatalf("error message %q, want it to start with %q", msg, want)
	}
	if polls := env.Emulator.Stats().TaskPolls(424242); polls != 0 {
		t.Fatalf("the given-up task was polled %d times", polls)
	}
}
