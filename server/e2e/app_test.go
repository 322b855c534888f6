package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/testserver"
)

const (
	stateFinished = "EXPORT_TASK_STATE_FINISHED"
	statePending  = "EXPORT_TASK_STATE_PENDING"
)

// fastApp is the service's configuration for tests: short intervals, and a
// per-caller read rate that lets tests poll for a state.
func fastApp() app.Options {
	return app.Options{MinPollInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond, Freshness: 50 * time.Millisecond, ReadsPerCaller: 1000, ReadBurst: 1000}
}

func start(t *testing.T) *testserver.Env {
	return testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 500 * time.Millisecond}, App: fastApp()})
}

func TestExportThenWatchOverGRPC(t *testing.T) {
	env := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{
		Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"1"}}},
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if res.GetTask().GetTaskId() == "" || res.GetUpstreamRequestId() == "" || res.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING {
		t.Fatalf("export answered %v", res)
	}
	stream, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: res.GetTask().GetTaskId()})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	if len(msgs) < 2 {
		t.Fatalf("got %d messages, want a snapshot and a final state", len(msgs))
	}
	if k := msgs[0].GetKind(); k != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT {
		t.Errorf("first message kind %v, want SNAPSHOT", k)
	}
	last := msgs[len(msgs)-1]
	if last.GetKind() != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_STATE_CHANGED || last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("last message %v, want STATE_CHANGED to FINISHED", last)
	}
	if last.GetProgress().GetPollCount() < 1 {
		t.Errorf("final progress reports %d polls", last.GetProgress().GetPollCount())
	}
	for _, m := range msgs[1 : len(msgs)-1] {
		if m.GetKind() != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_HEARTBEAT || m.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING {
			t.Errorf("middle message %v, want a PENDING heartbeat", m)
		}
		if m.GetProgress().GetWatchElapsed() == nil || m.GetProgress().GetNextPollTime() == nil {
			t.Errorf("heartbeat lacks observed progress: %v", m.GetProgress())
		}
	}
	csv := download(t, last.GetTask().GetDownloadUrl())
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "LicenseId,LicenseType,") {
		t.Fatalf("download is not a CSV with rows: %.200q", csv)
	}
	for _, l := range lines[1:] {
		if f := strings.Split(l, ","); f[1] != "1" {
			t.Fatalf("row %q does not match the LicenseType=1 filter", l)
		}
	}
}

func download(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: HTTP %d", resp.StatusCode)
	}
	return string(b)
}

func TestExportThenWatchOverREST(t *testing.T) {
	env := start(t)
	r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{"isHistory":true,"exportMonth":"2026-01","tags":[{"tagKey":"env"}]}`)
	if r.Status != http.StatusOK {
		t.Fatalf("export: HTTP %d %s", r.Status, r.Body)
	}
	body := r.JSON(t)
	task := body["task"].(map[string]any)
	id, _ := task["taskId"].(string)
	if id == "" || body["upstreamRequestId"] == "" || task["state"] != statePending {
		t.Fatalf("export answered %s", r.Body)
	}
	if p := task["parameters"].(map[string]any); p["exportMonth"] != "2026-01" || p["isHistory"] != true {
		t.Errorf("task parameters %v do not echo the request", p)
	}

	g := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id, "")
	if g.Status != http.StatusOK || g.JSON(t)["task"].(map[string]any)["taskId"] != id {
		t.Fatalf("get: HTTP %d %s", g.Status, g.Body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, lines := env.Stream(t, ctx, http.MethodGet, "/v1/export-tasks/"+id+":watch", "")
	if code != http.StatusOK || len(lines) < 2 {
		t.Fatalf("watch: HTTP %d, %d lines", code, len(lines))
	}
	first := lines[0]["result"].(map[string]any)
	if first["kind"] != "WATCH_EVENT_KIND_SNAPSHOT" {
		t.Errorf("first line %v", first)
	}
	last := lines[len(lines)-1]["result"].(map[string]any)
	lt := last["task"].(map[string]any)
	if lt["state"] != stateFinished || lt["downloadUrl"] == "" {
		t.Fatalf("last line %v, want FINISHED with a URL", last)
	}
	download(t, lt["downloadUrl"].(string))
}

func TestExportAndWatch(t *testing.T) {
	env := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("grpc", func(t *testing.T) {
		stream, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		msgs := testserver.RecvAll(t, stream.Recv)
		if len(msgs) < 2 || msgs[0].GetTask().GetTaskId() == "" || msgs[0].GetUpstreamRequestId() == "" {
			t.Fatalf("first message %v lacks the task id or the cloud's RequestId", msgs)
		}
		if got := msgs[len(msgs)-1].GetTask().GetState(); got != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
			t.Fatalf("last state %v", got)
		}
		for _, m := range msgs {
			if m.GetTask().GetTaskId() != msgs[0].GetTask().GetTaskId() {
				t.Fatalf("messages about different tasks: %v", msgs)
			}
		}
	})
	t.Run("rest", func(t *testing.T) {
		code, lines := env.Stream(t, ctx, http.MethodPost, "/v1/license-detail:exportAndWatch", `{"filters":[{"name":"LicenseType","values":["2"]}]}`)
		if code != http.StatusOK || len(lines) < 2 {
			t.Fatalf("HTTP %d, %d lines", code, len(lines))
		}
		first := lines[0]["result"].(map[string]any)
		if first["task"].(map[string]any)["taskId"] == "" || first["upstreamRequestId"] == "" {
			t.Fatalf("first line %v", first)
		}
		if s := lines[len(lines)-1]["result"].(map[string]any)["task"].(map[string]any)["state"]; s != stateFinished {
			t.Fatalf("last state %v", s)
		}
	})
}

// TestWatchMessagesCarryTheRecord: every message of a watch, and of an
// export-and-watch, tells what the registry holds of the task — its
// parameters, request id and creation time — as GetExportTask does.
func TestWatchMessagesCarryTheRecord(t *testing.T) {
	env := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	params := &cwpexportv1.ExportParameters{
		Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"1"}}},
		Tags:    []*cwpexportv1.Tag{{TagKey: "team", TagValue: "ops"}},
	}
	same := func(t *testing.T, what string, got, want *cwpexportv1.ExportTask) {
		t.Helper()
		if !proto.Equal(got.GetParameters(), want.GetParameters()) || got.GetRequestId() != want.GetRequestId() ||
			!proto.Equal(got.GetCreateTime(), want.GetCreateTime()) {
			t.Errorf("%s: parameters %v, request id %q, created %v; the registry holds %v, %q, %v", what,
				got.GetParameters(), got.GetRequestId(), got.GetCreateTime(), want.GetParameters(), want.GetRequestId(), want.GetCreateTime())
		}
	}

	t.Run("watch", func(t *testing.T) {
		res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{
			Filters: params.Filters, Tags: params.Tags, RequestId: "6f1c2b4e-8a0d-4c3e-9f57-2d1b0e6a7c11"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: res.GetTask().GetTaskId()})
		if err != nil {
			t.Fatal(err)
		}
		want := got.GetTask()
		if !proto.Equal(want.GetParameters(), params) || want.GetRequestId() == "" {
			t.Fatalf("GetExportTask answered %v", want)
		}
		stream, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: want.GetTaskId()})
		if err != nil {
			t.Fatal(err)
		}
		msgs := testserver.RecvAll(t, stream.Recv)
		if len(msgs) < 2 {
			t.Fatalf("%d messages", len(msgs))
		}
		for _, m := range msgs {
			same(t, m.GetKind().String(), m.GetTask(), want)
		}
		// The task has ended: GetExportTask answers from the registry, and
		// tells the times the stream's last message told.
		last := msgs[len(msgs)-1].GetTask()
		ended, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: want.GetTaskId()})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(ended.GetTask().GetUpdateTime(), last.GetUpdateTime()) || !proto.Equal(ended.GetTask().GetObserveTime(), last.GetObserveTime()) {
			t.Errorf("updated %v, observed %v after the stream's %v, %v", ended.GetTask().GetUpdateTime(), ended.GetTask().GetObserveTime(),
				last.GetUpdateTime(), last.GetObserveTime())
		}
	})
	t.Run("export and watch", func(t *testing.T) {
		stream, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{
			Filters: params.Filters, Tags: params.Tags, RequestId: "0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5"})
		if err != nil {
			t.Fatal(err)
		}
		msgs := testserver.RecvAll(t, stream.Recv)
		if len(msgs) < 2 {
			t.Fatalf("%d messages", len(msgs))
		}
		got, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: msgs[0].GetTask().GetTaskId()})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			same(t, m.GetKind().String(), m.GetTask(), got.GetTask())
		}
	})
}

func TestExportEndingInError(t *testing.T) {
	env := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{
		Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{"EMULATOR_FAIL"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	last := msgs[len(msgs)-1]
	if last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR || last.GetTask().GetErrorMessage() == "" || last.GetTask().GetDownloadUrl() != "" {
		t.Fatalf("last message %v, want ERROR with a message and no URL", last)
	}
}

// violationFields returns the fields of a status's BadRequest detail.
func violationFields(st *status.Status) []string {
	var fields []string
	for _, v := range apierror.Violations(st.Err()) {
		fields = append(fields, v.GetField())
	}
	return fields
}

func TestInvalidInputNeverReachesTheCloud(t *testing.T) {
	env := start(t)
	long := strings.Repeat("x", 300)
	cases := []struct {
		name   string
		req    *cwpexportv1.ExportLicenseDetailRequest
		rest   string
		fields []string
	}{
		{"unknown filter", &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "Bogus", Values: []string{"x"}}}},
			`{"filters":[{"name":"Bogus","values":["x"]}]}`, []string{"filters[0].name"}},
		{"no values", &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "Keywords"}}},
			`{"filters":[{"name":"Keywords"}]}`, []string{"filters[0].values"}},
		{"empty value", &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{""}}}},
			`{"filters":[{"name":"Keywords","values":[""]}]}`, []string{"filters[0].values[0]"}},
		{"license type", &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"1", "3"}}}},
			`{"filters":[{"name":"LicenseType","values":["1","3"]}]}`, []string{"filters[0].values[1]"}},
		{"long value", &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{long}}}},
			`{"filters":[{"name":"Keywords","values":["` + long + `"]}]}`, []string{"filters[0].values[0]"}},
		{"bad month", &cwpexportv1.ExportLicenseDetailRequest{IsHistory: true, ExportMonth: "2024-13"},
			`{"isHistory":true,"exportMonth":"2024-13"}`, []string{"export_month"}},
		{"month without history", &cwpexportv1.ExportLicenseDetailRequest{ExportMonth: "2024-05"},
			`{"exportMonth":"2024-05"}`, []string{"export_month"}},
		{"tag without key", &cwpexportv1.ExportLicenseDetailRequest{Tags: []*cwpexportv1.Tag{{TagValue: "v"}}},
			`{"tags":[{"tagValue":"v"}]}`, []string{"tags[0].tag_key"}},
		{"request id", &cwpexportv1.ExportLicenseDetailRequest{RequestId: "not-a-uuid"},
			`{"requestId":"not-a-uuid"}`, []string{"request_id"}},
		{"several at once", &cwpexportv1.ExportLicenseDetailRequest{ExportMonth: "May", Tags: []*cwpexportv1.Tag{{}}},
			`{"exportMonth":"May","tags":[{}]}`, []string{"tags[0].tag_key", "export_month"}},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/grpc", func(t *testing.T) {
			_, err := env.Client.ExportLicenseDetail(context.Background(), tc.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			if got := violationFields(st); fmt.Sprint(got) != fmt.Sprint(tc.fields) {
				t.Errorf("field violations %v, want %v", got, tc.fields)
			}
		})
		t.Run(tc.name+"/rest", func(t *testing.T) {
			r := env.Do(t, http.MethodPost, "/v1/license-detail:export", tc.rest)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("HTTP %d %s, want 400", r.Status, r.Body)
			}
			var fields []string
			for _, d := range r.JSON(t)["details"].([]any) {
				if vs, ok := d.(map[string]any)["fieldViolations"].([]any); ok {
					for _, v := range vs {
						fields = append(fields, v.(map[string]any)["field"].(string))
					}
				}
			}
			if fmt.Sprint(fields) != fmt.Sprint(tc.fields) {
				t.Errorf("field violations %v, want %v", fields, tc.fields)
			}
		})
	}
	for _, id := range []string{"abc", "-1", "0", "007", "1.5", "99999999999999999999", "9223372036854775808"} {
		t.Run("task id "+id, func(t *testing.T) {
			_, err := env.Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || fmt.Sprint(violationFields(st)) != "[task_id]" {
				t.Errorf("get %q: %v", id, err)
			}
			if r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id, ""); r.Status != http.StatusBadRequest {
				t.Errorf("REST get %q: HTTP %d", id, r.Status)
			}
		})
	}
	t.Run("rest bodies", func(t *testing.T) {
		for _, body := range []string{`{`, `{"filters":"x"}`, `{"unknownField":1}`, `[]`} {
			if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", body); r.Status != http.StatusBadRequest {
				t.Errorf("body %s: HTTP %d %s, want 400", body, r.Status, r.Body)
			}
		}
	})
	stats := env.Emulator.Stats()
	if n := stats.Actions[cloud.ActionExportLicenseDetail].Requests + stats.Actions[cloud.ActionExportTasks].Requests; n != 0 {
		t.Fatalf("invalid requests reached the cloud %d times", n)
	}
}

func TestUnknownTask(t *testing.T) {
	env := start(t)
	_, err := env.Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: "424242424"})
	st := status.Convert(err)
	if st.Code() != codes.NotFound {
		t.Fatalf("get: %v, want NotFound", err)
	}
	info := errorInfo(st)
	if info.GetReason() != "TASK_NOT_FOUND" || info.GetMetadata()["cloud_code"] != "ResourceNotFound" || info.GetMetadata()["cloud_request_id"] == "" {
		t.Errorf("error info %v", info)
	}
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks/424242424", ""); r.Status != http.StatusNotFound {
		t.Errorf("REST get: HTTP %d %s", r.Status, r.Body)
	}
	stream, err := env.Client.WatchExportTask(context.Background(), &cwpexportv1.WatchExportTaskRequest{TaskId: "424242425"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("watch: %v, want NotFound", err)
	}
	code, lines := env.Stream(t, context.Background(), http.MethodGet, "/v1/export-tasks/424242426:watch", "")
	if code != http.StatusNotFound && !(len(lines) == 1 && lines[0]["error"] != nil) {
		t.Errorf("REST watch: HTTP %d %v", code, lines)
	}
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo { return apierror.Info(st.Err()) }

// TestCloudFaults checks how the service reports a cloud that rejects its
// credentials, throttles it, or cannot be reached.
func TestCloudFaults(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name   string
		cfg    testserver.Config
		code   codes.Code
		http   int
		reason string
	}{
		{"wrong secret key", testserver.Config{App: app.Options{SecretID: testserver.SecretID, SecretKey: "wrong"}},
			codes.Internal, http.StatusInternalServerError, "UPSTREAM_CREDENTIALS_REJECTED"},
		{"unknown secret id", testserver.Config{App: app.Options{SecretID: "AKIDunknown", SecretKey: "k"}},
			codes.Internal, http.StatusInternalServerError, "UPSTREAM_CREDENTIALS_REJECTED"},
		{"session token the cloud rejects", testserver.Config{App: app.Options{SecretID: testserver.SecretID, SecretKey: testserver.SecretKey, SessionToken: "expired"}},
			codes.Internal, http.StatusInternalServerError, "UPSTREAM_CREDENTIALS_REJECTED"},
		{"unreachable cloud", testserver.Config{App: app.Options{Endpoint: deadAddr, Scheme: "HTTP"}},
			codes.Unavailable, http.StatusServiceUnavailable, "UPSTREAM_UNAVAILABLE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := testserver.Start(t, tc.cfg)
			_, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
			st := status.Convert(err)
			if st.Code() != tc.code || errorInfo(st).GetReason() != tc.reason {
				t.Fatalf("got %v (%v), want %v %s", err, errorInfo(st), tc.code, tc.reason)
			}
			if strings.Contains(st.Message(), testserver.SecretKey) || strings.Contains(st.Message(), "wrong") {
				t.Errorf("message leaks a credential: %q", st.Message())
			}
			if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{}`); r.Status != tc.http {
				t.Errorf("REST: HTTP %d %s, want %d", r.Status, r.Body, tc.http)
			}
			// Reads retry transient faults until the caller's deadline, then
			// answer with the last fault.
			gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = env.Client.GetExportTask(gctx, &cwpexportv1.GetExportTaskRequest{TaskId: "1"})
			if status.Code(err) != tc.code {
				t.Errorf("get: %v, want %v", err, tc.code)
			}
		})
	}

	t.Run("cloud throttles", func(t *testing.T) {
		// The service's own budget is above the emulator's limit, as when
		// other programs share the account.
		env := testserver.Start(t, testserver.Config{
			Emulator: emulator.Options{RateLimit: 2},
			App:      app.Options{CreateRate: 1000},
		})
		// A throttled creation is retried with backoff while the caller's
		// deadline allows (the cloud refused before creating anything);
		// then the caller is told of the throttling.
		var throttled, created int
		for range 8 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
			cancel()
			if st := status.Convert(err); st.Code() == codes.ResourceExhausted {
				throttled++
				if errorInfo(st).GetReason() != "UPSTREAM_RATE_LIMITED" {
					t.Errorf("reason %v", errorInfo(st))
				}
			} else if err != nil {
				t.Errorf("unexpected %v", err)
			} else {
				created++
			}
		}
		st := env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail]
		if n := st.Errors["RequestLimitExceeded"]; n == 0 || n < int64(throttled) {
			t.Fatalf("emulator throttled %d, callers saw %d", n, throttled)
		}
		if st.TasksCreated != int64(created) {
			t.Errorf("%d tasks created for %d successful calls", st.TasksCreated, created)
		}
	})
}

// TestCanceledWatchStopsPolling: once its only watcher leaves, a task is not
// polled at the watchers' pace any more (the registry's background interest
// polls it at most every 10s).
func TestCanceledWatchStopsPolling(t *testing.T) {
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: fastApp()})
	res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	fmt.Sscan(res.GetTask().GetTaskId(), &id)
	for _, transport := range []string{"grpc", "rest"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			before := env.Emulator.Stats().TaskPolls(id)
			if transport == "grpc" {
				stream, err := env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: res.GetTask().GetTaskId()})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
			} else {
				go env.Stream(t, ctx, http.MethodGet, "/v1/export-tasks/"+res.GetTask().GetTaskId()+":watch", "")
			}
			testutil.WaitFor(t, "polls while watched", func() bool { return env.Emulator.Stats().TaskPolls(id) >= before+2 })
			cancel()
			testutil.WaitFor(t, "the watcher to leave", func() bool { return env.Server.Tracker().Stats().Watchers == 0 })
			stopped := env.Emulator.Stats().TaskPolls(id)
			time.Sleep(500 * time.Millisecond) // five poll intervals
			if after := env.Emulator.Stats().TaskPolls(id); after > stopped+1 {
				t.Fatalf("polls went on after the watcher left: %d -> %d", stopped, after)
			}
		})
	}
}

func TestHealthReflectionAndOpenAPI(t *testing.T) {
	env := start(t)
	hc := grpc_health_v1.NewHealthClient(env.Conn)
	for _, svc := range []string{"", cwpexportv1.LicenseExportService_ServiceDesc.ServiceName} {
		res, err := hc.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{Service: svc})
		if err != nil || res.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", svc, res, err)
		}
	}
	if r := env.Do(t, http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("/healthz: HTTP %d", r.Status)
	}
	r := env.Do(t, http.MethodGet, "/openapi.json", "")
	if r.Status != http.StatusOK || r.JSON(t)["paths"].(map[string]any)["/v1/license-detail:export"] == nil {
		t.Errorf("/openapi.json: HTTP %d", r.Status)
	}
}
