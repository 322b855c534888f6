package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// faultCase is what the service answers while the cloud has one fault.
type faultCase struct {
	fault emulator.Fault
	// create is the status of an export while ExportLicenseDetail faults;
	// created is how many tasks that export leaves in the cloud.
	create  codes.Code
	created int64
	// read is the status of a GetExportTask whose polls fault until its
	// deadline.
	read codes.Code
	// transient: watches keep their stream through the fault, report it
	// in heartbeats (unless the fault only slows answers) and finish once
	// it clears; otherwise they end with read.
	transient bool
	slowOnly  bool
}

var faultCases = []faultCase{
	// The cloud acts on a request it received even when the caller has
	// gone, as a real server does: the slow export is created, and
	// recorded by the service, after its caller's deadline.
	{fault: emulator.Fault{Kind: emulator.FaultLatency, Delay: 3 * time.Second},
		create: codes.DeadlineExceeded, created: 1, read: codes.DeadlineExceeded, transient: true, slowOnly: true},
	{fault: emulator.Fault{Kind: emulator.FaultHTTPError}, create: codes.Unavailable, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultHTTPErrorNoBody}, create: codes.Unavailable, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultReset}, create: codes.Unavailable, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultTruncated}, create: codes.Unavailable, created: 1, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultMalformed}, create: codes.Unavailable, created: 1, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultInternalError}, create: codes.Unavailable, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultServiceUnavailable}, create: codes.Unavailable, read: codes.Unavailable, transient: true},
	{fault: emulator.Fault{Kind: emulator.FaultRequestLimitExceeded}, create: codes.ResourceExhausted, read: codes.ResourceExhausted, transient: true},
	// A clock far off makes every signature look expired: the service's
	// credentials are rejected, which callers cannot fix.
	{fault: emulator.Fault{Kind: emulator.FaultClockSkew}, create: codes.Internal, read: codes.Internal},
}

// Timing of the matrix. The caller deadlines are far below the latency
// fault's delay, and far above what a failing poll takes on a loaded
// machine; the slack only bounds a REST client that the service never
// answers.
const (
	callerDeadline = 1500 * time.Millisecond
	deadlineSlack  = 5 * time.Second
	taskPending    = 700 * time.Millisecond
)

// TestFaultMatrix: every fault kind × {export, get, watch, export-and-watch}
// × {gRPC, REST}.
func TestFaultMatrix(t *testing.T) {
	for _, fc := range faultCases {
		t.Run(string(fc.fault.Kind), func(t *testing.T) {
			t.Parallel()
			env := testserver.Start(t, testserver.Config{
				Emulator: emulator.Options{PendingFor: taskPending},
				App: app.Options{
					MinPollInterval: 50 * time.Millisecond, MaxPollBackoff: 150 * time.Millisecond,
					Heartbeat: 80 * time.Millisecond, Freshness: 20 * time.Millisecond,
				},
			})
			for _, tr := range []transport{grpcTransport{env}, restTransport{env}} {
				t.Run(tr.name()+"/export", func(t *testing.T) { matrixExport(t, env, tr, fc) })
				t.Run(tr.name()+"/get", func(t *testing.T) { matrixGet(t, env, tr, fc) })
				t.Run(tr.name()+"/watch", func(t *testing.T) { matrixWatch(t, env, tr, fc, false) })
				t.Run(tr.name()+"/export-and-watch", func(t *testing.T) { matrixWatch(t, env, tr, fc, true) })
			}
		})
	}
}

func inject(t *testing.T, env *testserver.Env, fc faultCase, action string) {
	t.Helper()
	f := fc.fault
	f.Action = action
	if err := env.Emulator.InjectFault(f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Emulator.ClearFaults)
}

func tasksCreated(env *testserver.Env) int64 {
	return env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail].TasksCreated
}

// createTask starts a healthy export and returns its id.
func createTask(t *testing.T, env *testserver.Env) string {
	t.Helper()
	res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatalf("healthy export: %v", err)
	}
	return res.GetTask().GetTaskId()
}

// answer is a call's status: its code, and whether the service made it
// (it carries the service's ErrorInfo), which proves that the service
// answered before the caller's deadline rather than the caller's own
// client giving up.
type answer struct {
	code    codes.Code
	service bool
}

func checkAnswer(t *testing.T, what string, got answer, want codes.Code) {
	t.Helper()
	if got.code != want {
		t.Errorf("%s answered %v, want %v", what, got.code, want)
	}
	if got.code != codes.OK && !got.service {
		t.Errorf("%s: the caller's client gave up (%v) before the service answered", what, got.code)
	}
}

// fromStatus is the answer of a gRPC status.
func fromStatus(st *status.Status) answer {
	return answer{code: st.Code(), service: apierror.Info(st.Err()) != nil}
}

// waitForCreations waits until the emulator has answered every creation
// request sent so far (a creation's cloud call outlives its caller).
func waitForCreations(t *testing.T, env *testserver.Env, requests int64) {
	t.Helper()
	testutil.WaitFor(t, "the cloud to answer the export", func() bool {
		return env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail].Requests >= requests
	})
}

func creationRequests(env *testserver.Env) int64 {
	return env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail].Requests
}

func matrixExport(t *testing.T, env *testserver.Env, tr transport, fc faultCase) {
	inject(t, env, fc, cloud.ActionExportLicenseDetail)
	before, requests := tasksCreated(env), creationRequests(env)
	checkAnswer(t, "export", tr.export(t, callerDeadline), fc.create)
	waitForCreations(t, env, requests+1)
	env.Emulator.ClearFaults()
	if n := tasksCreated(env) - before; n != fc.created {
		t.Errorf("the faulted export created %d tasks in the cloud, want %d", n, fc.created)
	}
	before = tasksCreated(env)
	if a := tr.export(t, 5*time.Second); a.code != codes.OK {
		t.Errorf("export after the fault cleared answered %v", a.code)
	}
	if n := tasksCreated(env) - before; n != 1 {
		t.Errorf("a healthy export created %d tasks", n)
	}
}

func matrixGet(t *testing.T, env *testserver.Env, tr transport, fc faultCase) {
	id := createTask(t, env)
	inject(t, env, fc, cloud.ActionExportTasks)
	time.Sleep(30 * time.Millisecond) // past Freshness: Get must ask the cloud
	checkAnswer(t, "get", tr.get(t, id, callerDeadline), fc.read)
	env.Emulator.ClearFaults()
	// A refusal is remembered for Freshness (20ms).
	time.Sleep(30 * time.Millisecond)
	if a := tr.get(t, id, 5*time.Second); a.code != codes.OK {
		t.Errorf("get after the fault cleared answered %v", a.code)
	}
}

// matrixWatch follows a task while its polls fault, then clears the fault.
func matrixWatch(t *testing.T, env *testserver.Env, tr transport, fc faultCase, create bool) {
	if create {
		// A faulted creation ends the stream with the export's status.
		inject(t, env, fc, cloud.ActionExportLicenseDetail)
		before, requests := tasksCreated(env), creationRequests(env)
		res := tr.exportAndWatch(t, callerDeadline, func(watchEvent) bool { return false })
		checkAnswer(t, "faulted export-and-watch", res.answer, fc.create)
		if len(res.events) != 0 {
			t.Errorf("faulted export-and-watch sent %d messages", len(res.events))
		}
		waitForCreations(t, env, requests+1)
		env.Emulator.ClearFaults()
		if n := tasksCreated(env) - before; n != fc.created {
			t.Errorf("the faulted export-and-watch created %d tasks, want %d", n, fc.created)
		}
	}
	before := tasksCreated(env)
	var id string
	if !create {
		id = createTask(t, env)
	}
	inject(t, env, fc, cloud.ActionExportTasks)
	troubleSeen := false
	onEvent := func(ev watchEvent) bool {
		if ev.failures > 0 && ev.lastErr != "" {
			troubleSeen = true
		}
		if ev.kind == "WATCH_EVENT_KIND_SNAPSHOT" && fc.slowOnly || ev.kind == "WATCH_EVENT_KIND_HEARTBEAT" && troubleSeen {
			env.Emulator.ClearFaults()
		}
		return true
	}
	var res streamResult
	if create {
		res = tr.exportAndWatch(t, 20*time.Second, onEvent)
	} else {
		res = tr.watch(t, id, 20*time.Second, onEvent)
	}
	if n := tasksCreated(env) - before; n != 1 {
		t.Errorf("%d tasks created for one export", n)
	}
	if !fc.transient {
		checkAnswer(t, fmt.Sprintf("watch after %d messages", len(res.events)), res.answer, fc.read)
		return
	}
	if res.code != codes.OK {
		t.Fatalf("watch ended with %v after %d messages, want a finished export", res.code, len(res.events))
	}
	if !fc.slowOnly && !troubleSeen {
		t.Errorf("no heartbeat reported the failing polls: %+v", res.events)
	}
	if last := res.events[len(res.events)-1]; last.state != "EXPORT_TASK_STATE_FINISHED" {
		t.Errorf("watch ended at %+v, want FINISHED", last)
	}
}

// watchEvent is the part of a watch message the matrix checks.
type watchEvent struct {
	kind, state string
	failures    int32
	lastErr     string
}

type streamResult struct {
	answer
	events []watchEvent
}

// transport calls the service over one protocol; codes are gRPC codes (for
// REST, read from the google.rpc.Status body, after checking the HTTP
// status agrees).
type transport interface {
	name() string
	export(t *testing.T, deadline time.Duration) answer
	get(t *testing.T, id string, deadline time.Duration) answer
	watch(t *testing.T, id string, deadline time.Duration, on func(watchEvent) bool) streamResult
	exportAndWatch(t *testing.T, deadline time.Duration, on func(watchEvent) bool) streamResult
}

type grpcTransport struct{ env *testserver.Env }

func (grpcTransport) name() string { return "grpc" }

func (g grpcTransport) export(t *testing.T, deadline time.Duration) answer {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err := g.env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	return fromStatus(status.Convert(err))
}

func (g grpcTransport) get(t *testing.T, id string, deadline time.Duration) answer {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err := g.env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
	return fromStatus(status.Convert(err))
}

type watchMsg interface {
	GetKind() cwpexportv1.WatchEventKind
	GetTask() *cwpexportv1.ExportTask
	GetProgress() *cwpexportv1.Progress
}

func recvAll[M watchMsg](recv func() (M, error), on func(watchEvent) bool) streamResult {
	var res streamResult
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return res
		}
		if err != nil {
			res.answer = fromStatus(status.Convert(err))
			return res
		}
		ev := watchEvent{kind: m.GetKind().String(), state: m.GetTask().GetState().String(),
			failures: m.GetProgress().GetConsecutivePollFailures(), lastErr: m.GetProgress().GetLastPollError()}
		res.events = append(res.events, ev)
		on(ev)
	}
}

func (g grpcTransport) watch(t *testing.T, id string, deadline time.Duration, on func(watchEvent) bool) streamResult {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := g.env.Client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		return streamResult{answer: fromStatus(status.Convert(err))}
	}
	return recvAll(s.Recv, on)
}

func (g grpcTransport) exportAndWatch(t *testing.T, deadline time.Duration, on func(watchEvent) bool) streamResult {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := g.env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
	if err != nil {
		return streamResult{answer: fromStatus(status.Convert(err))}
	}
	return recvAll(s.Recv, on)
}

type restTransport struct{ env *testserver.Env }

func (restTransport) name() string { return "rest" }

// do sends a REST request whose deadline the gateway passes on to the
// service (Grpc-Timeout), with a client-side bound a little later.
func (r restTransport) do(t *testing.T, method, path, body string, deadline time.Duration) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline+deadlineSlack)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, r.env.RESTURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Grpc-Timeout", fmt.Sprintf("%dm", deadline.Milliseconds()))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// restStatus decodes a google.rpc.Status JSON body into an answer.
func restStatus(t *testing.T, body []byte) answer {
	t.Helper()
	var p spb.Status
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &p); err != nil {
		t.Fatalf("not a google.rpc.Status: %v: %s", err, body)
	}
	return fromStatus(status.FromProto(&p))
}

func unaryCode(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return answer{code: codes.OK}
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// A unary call answers a google.rpc.Status; a stream that fails before
	// its first message wraps it in {"error": ...}.
	var wrapped struct{ Error json.RawMessage }
	if json.Unmarshal(body, &wrapped) == nil && wrapped.Error != nil {
		body = wrapped.Error
	}
	a := restStatus(t, body)
	if want := runtime.HTTPStatusFromCode(a.code); resp.StatusCode != want {
		t.Errorf("HTTP %d for %v, want %d", resp.StatusCode, a.code, want)
	}
	return a
}

func (r restTransport) export(t *testing.T, deadline time.Duration) answer {
	return unaryCode(t, r.do(t, http.MethodPost, "/v1/license-detail:export", `{}`, deadline))
}

func (r restTransport) get(t *testing.T, id string, deadline time.Duration) answer {
	return unaryCode(t, r.do(t, http.MethodGet, "/v1/export-tasks/"+id, "", deadline))
}

// stream reads newline-delimited {"result": ...} / {"error": ...} lines.
func (r restTransport) stream(t *testing.T, resp *http.Response, newMsg func() watchMsg, on func(watchEvent) bool) streamResult {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return streamResult{answer: unaryCode(t, resp)}
	}
	var res streamResult
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Result json.RawMessage
			Error  json.RawMessage
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("stream line %q: %v", sc.Text(), err)
		}
		if line.Error != nil {
			res.answer = restStatus(t, line.Error)
			return res
		}
		m := newMsg()
		if err := protojson.Unmarshal(line.Result, m.(proto.Message)); err != nil {
			t.Fatalf("stream result %s: %v", line.Result, err)
		}
		ev := watchEvent{kind: m.GetKind().String(), state: m.GetTask().GetState().String(),
			failures: m.GetProgress().GetConsecutivePollFailures(), lastErr: m.GetProgress().GetLastPollError()}
		res.events = append(res.events, ev)
		on(ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	return res
}

func (r restTransport) watch(t *testing.T, id string, deadline time.Duration, on func(watchEvent) bool) streamResult {
	return r.stream(t, r.do(t, http.MethodGet, "/v1/export-tasks/"+id+":watch", "", deadline),
		func() watchMsg { return &cwpexportv1.WatchExportTaskResponse{} }, on)
}

func (r restTransport) exportAndWatch(t *testing.T, deadline time.Duration, on func(watchEvent) bool) streamResult {
	return r.stream(t, r.do(t, http.MethodPost, "/v1/license-detail:exportAndWatch", `{}`, deadline),
		func() watchMsg { return &cwpexportv1.ExportLicenseDetailAndWatchResponse{} }, on)
}
