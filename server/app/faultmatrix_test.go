package app_test

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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
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
	{fault: emulator.Fault{Kind: emulator.FaultLatency, Delay: 1500 * time.Millisecond},
		create: codes.DeadlineExceeded, read: codes.DeadlineExceeded, transient: true, slowOnly: true},
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
// fault's delay; the slack only absorbs scheduling on a loaded machine.
const (
	callerDeadline = 400 * time.Millisecond
	deadlineSlack  = 1500 * time.Millisecond
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

func checkDeadline(t *testing.T, took time.Duration) {
	t.Helper()
	if took > callerDeadline+deadlineSlack {
		t.Errorf("answered after %v; the caller's deadline was %v", took, callerDeadline)
	}
}

func matrixExport(t *testing.T, env *testserver.Env, tr transport, fc faultCase) {
	inject(t, env, fc, cloud.ActionExportLicenseDetail)
	before := tasksCreated(env)
	start := time.Now()
	code := tr.export(t, callerDeadline)
	checkDeadline(t, time.Since(start))
	if code != fc.create {
		t.Errorf("export answered %v, want %v", code, fc.create)
	}
	env.Emulator.ClearFaults()
	// A latency fault's request may still be in the emulator; it gives up
	// without acting once the caller has gone.
	time.Sleep(50 * time.Millisecond)
	if n := tasksCreated(env) - before; n != fc.created {
		t.Errorf("the faulted export created %d tasks in the cloud, want %d", n, fc.created)
	}
	before = tasksCreated(env)
	if code := tr.export(t, 5*time.Second); code != codes.OK {
		t.Errorf("export after the fault cleared answered %v", code)
	}
	if n := tasksCreated(env) - before; n != 1 {
		t.Errorf("a healthy export created %d tasks", n)
	}
}

func matrixGet(t *testing.T, env *testserver.Env, tr transport, fc faultCase) {
	id := createTask(t, env)
	inject(t, env, fc, cloud.ActionExportTasks)
	time.Sleep(30 * time.Millisecond) // past Freshness: Get must ask the cloud
	start := time.Now()
	code := tr.get(t, id, callerDeadline)
	checkDeadline(t, time.Since(start))
	if code != fc.read {
		t.Errorf("get answered %v, want %v", code, fc.read)
	}
	env.Emulator.ClearFaults()
	// A refusal is remembered for Freshness (20ms).
	time.Sleep(30 * time.Millisecond)
	if code := tr.get(t, id, 5*time.Second); code != codes.OK {
		t.Errorf("get after the fault cleared answered %v", code)
	}
}

// matrixWatch follows a task while its polls fault, then clears the fault.
func matrixWatch(t *testing.T, env *testserver.Env, tr transport, fc faultCase, create bool) {
	if create {
		// A faulted creation ends the stream with the export's status.
		inject(t, env, fc, cloud.ActionExportLicenseDetail)
		before := tasksCreated(env)
		start := time.Now()
		res := tr.exportAndWatch(t, callerDeadline, func(watchEvent) bool { return false })
		checkDeadline(t, time.Since(start))
		if res.code != fc.create || len(res.events) != 0 {
			t.Errorf("faulted export-and-watch answered %v after %d messages, want %v", res.code, len(res.events), fc.create)
		}
		env.Emulator.ClearFaults()
		time.Sleep(50 * time.Millisecond)
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
		if res.code != fc.read {
			t.Errorf("watch ended with %v after %d messages, want %v", res.code, len(res.events), fc.read)
		}
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
	code   codes.Code
	events []watchEvent
}

// transport calls the service over one protocol; codes are gRPC codes (for
// REST, read from the google.rpc.Status body, after checking the HTTP
// status agrees).
type transport interface {
	name() string
	export(t *testing.T, deadline time.Duration) codes.Code
	get(t *testing.T, id string, deadline time.Duration) codes.Code
	watch(t *testing.T, id string, deadline time.Duration, on func(watchEvent) bool) streamResult
	exportAndWatch(t *testing.T, deadline time.Duration, on func(watchEvent) bool) streamResult
}

type grpcTransport struct{ env *testserver.Env }

func (grpcTransport) name() string { return "grpc" }

func (g grpcTransport) export(t *testing.T, deadline time.Duration) codes.Code {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err := g.env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	return status.Code(err)
}

func (g grpcTransport) get(t *testing.T, id string, deadline time.Duration) codes.Code {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err := g.env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
	return status.Code(err)
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
			res.code = status.Code(err)
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
		return streamResult{code: status.Code(err)}
	}
	return recvAll(s.Recv, on)
}

func (g grpcTransport) exportAndWatch(t *testing.T, deadline time.Duration, on func(watchEvent) bool) streamResult {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := g.env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
	if err != nil {
		return streamResult{code: status.Code(err)}
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

func unaryCode(t *testing.T, resp *http.Response) codes.Code {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return codes.OK
	}
	// A unary call answers a google.rpc.Status; a stream that fails before
	// its first message wraps it in {"error": ...}.
	var st struct {
		Code  codes.Code
		Error *struct{ Code codes.Code }
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("HTTP %d without a google.rpc.Status body: %v", resp.StatusCode, err)
	}
	if st.Error != nil {
		st.Code = st.Error.Code
	}
	if want := runtime.HTTPStatusFromCode(st.Code); resp.StatusCode != want {
		t.Errorf("HTTP %d for %v, want %d", resp.StatusCode, st.Code, want)
	}
	return st.Code
}

func (r restTransport) export(t *testing.T, deadline time.Duration) codes.Code {
	return unaryCode(t, r.do(t, http.MethodPost, "/v1/license-detail:export", `{}`, deadline))
}

func (r restTransport) get(t *testing.T, id string, deadline time.Duration) codes.Code {
	return unaryCode(t, r.do(t, http.MethodGet, "/v1/export-tasks/"+id, "", deadline))
}

// stream reads newline-delimited {"result": ...} / {"error": ...} lines.
func (r restTransport) stream(t *testing.T, resp *http.Response, newMsg func() watchMsg, on func(watchEvent) bool) streamResult {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return streamResult{code: unaryCode(t, resp)}
	}
	var res streamResult
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Result json.RawMessage
			Error  *struct{ Code codes.Code }
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("stream line %q: %v", sc.Text(), err)
		}
		if line.Error != nil {
			res.code = line.Error.Code
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
