package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// Span names of one export.
const (
	exportMethod        = "cwpexport.v1.LicenseExportService/ExportLicenseDetail"
	exportAndWatchRPC   = "cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch"
	getMethod           = "cwpexport.v1.LicenseExportService/GetExportTask"
	createBudgetSpan    = "budget " + cloud.ActionExportLicenseDetail
	createCallSpan      = "cwp " + cloud.ActionExportLicenseDetail
	pollSpan            = "poll " + cloud.ActionExportTasks
	pollCallSpan        = "cwp " + cloud.ActionExportTasks
	callerTraceID       = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID        = "00f067aa0ba902b7"
	callerTraceparent   = "00-" + callerTraceID + "-" + callerSpanID + "-01"
	refusedTraceID      = "1af7651916cd43dd8448eb211c80319c"
	restExportSpanName  = "POST /v1/license-detail:export"
	restExportRouteAttr = "/v1/license-detail:export"
)

// traced starts the service with an in-memory span recorder as its
// tracer's only processor, and its logs as JSON in logs.
func traced(t *testing.T, logs *lockedBuffer) (*testserver.Env, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	o := fastApp()
	o.TracerProvider = tp
	if logs != nil {
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 500 * time.Millisecond}, App: o})
	return env, rec
}

// ended waits until the recorder holds an ended span that match accepts,
// and returns all ended spans then. Spans end after the answer is sent:
// a caller can see the answer before its span is recorded.
func ended(t *testing.T, rec *tracetest.SpanRecorder, match func(sdktrace.ReadOnlySpan) bool) []sdktrace.ReadOnlySpan {
	t.Helper()
	return endedN(t, rec, 1, match)
}

// endedN waits until the recorder holds n ended spans that match accepts,
// and returns all ended spans then.
func endedN(t *testing.T, rec *tracetest.SpanRecorder, n int, match func(sdktrace.ReadOnlySpan) bool) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := rec.Ended()
		found := 0
		for _, s := range spans {
			if match(s) {
				found++
			}
		}
		if found >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d spans wanted ended within 10s; ended: %s", found, n, names(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func named(name string, kind trace.SpanKind) func(sdktrace.ReadOnlySpan) bool {
	return func(s sdktrace.ReadOnlySpan) bool { return s.Name() == name && s.SpanKind() == kind }
}

// only returns the one span of the trace that match accepts, failing the
// test unless there is exactly one.
func only(t *testing.T, spans []sdktrace.ReadOnlySpan, tid trace.TraceID, what string, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid && match(s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %s in trace %s, want 1; ended: %s", len(found), what, tid, names(spans))
	}
	return found[0]
}

func names(spans []sdktrace.ReadOnlySpan) string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	return strings.Join(n, ", ")
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func childOf(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	if child.Parent().SpanID() != parent.SpanContext().SpanID() || child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("%q (%s) is under %s, want under %q (%s)", child.Name(), child.SpanKind(), child.Parent().SpanID(), parent.Name(), parent.SpanContext().SpanID())
	}
}

// One REST export is one trace: the REST span, the gateway's gRPC call and
// its handling, the wait for the export budget, and the cloud call with the
// cloud's RequestId and the task it created. The call log line of the
// gRPC handling carries the trace and span ids.
func TestTraceOfOneRESTExport(t *testing.T) {
	var logs lockedBuffer
	env, rec := traced(t, &logs)
	res := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{"filters":[{"name":"LicenseType","values":["1"]}]}`)
	if res.Status != http.StatusOK {
		t.Fatalf("export: %d %s", res.Status, res.Body)
	}
	var answer struct {
		Task              struct{ TaskID string }
		UpstreamRequestID string
	}
	if err := json.Unmarshal(res.Body, &answer); err != nil || answer.Task.TaskID == "" || answer.UpstreamRequestID == "" {
		t.Fatalf("answer %s: %v", res.Body, err)
	}

	// The gRPC server's span may end after the gateway has its answer, and
	// the REST span with it: wait for both.
	isREST, isGRPC := named(restExportSpanName, trace.SpanKindServer), named(exportMethod, trace.SpanKindServer)
	spans := endedN(t, rec, 2, func(s sdktrace.ReadOnlySpan) bool { return isREST(s) || isGRPC(s) })
	var rest sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == restExportSpanName {
			rest = s
		}
	}
	tid := rest.SpanContext().TraceID()
	if rest.Parent().IsValid() {
		t.Errorf("the REST span has a parent %v, though the caller sent no trace context", rest.Parent())
	}
	if r := spanAttr(rest, "http.route").AsString(); r != restExportRouteAttr {
		t.Errorf("http.route %q, want %q", r, restExportRouteAttr)
	}
	gwCall := only(t, spans, tid, "gRPC client", named(exportMethod, trace.SpanKindClient))
	handling := only(t, spans, tid, "gRPC server", named(exportMethod, trace.SpanKindServer))
	wait := only(t, spans, tid, "budget", named(createBudgetSpan, trace.SpanKindInternal))
	call := only(t, spans, tid, "cloud", named(createCallSpan, trace.SpanKindClient))
	childOf(t, gwCall, rest)
	childOf(t, handling, gwCall)
	childOf(t, wait, handling)
	childOf(t, call, handling)
	if call.StartTime().Before(wait.EndTime()) {
		t.Errorf("the cloud call started at %v, before the budget wait ended at %v", call.StartTime(), wait.EndTime())
	}
	if got := spanAttr(call, cloud.AttrRequestID).AsString(); got != answer.UpstreamRequestID {
		t.Errorf("the cloud span's RequestId %q, the answer's %q", got, answer.UpstreamRequestID)
	}
	if got := spanAttr(call, cloud.AttrTaskID).AsInt64(); answer.Task.TaskID != itoa(got) {
		t.Errorf("the cloud span's task %d, the answer's %s", got, answer.Task.TaskID)
	}
	if got := spanAttr(call, cloud.AttrOutcome).AsString(); got != cloud.OutcomeSuccess {
		t.Errorf("outcome %q", got)
	}
	if got := spanAttr(wait, budget.AttrAction).AsString(); got != cloud.ActionExportLicenseDetail {
		t.Errorf("budget span action %q", got)
	}

	// The call line of the gRPC handling, logged within its span.
	line := findLog(t, &logs, func(m map[string]any) bool { return m["msg"] == "call" && m["method"] == "/"+exportMethod })
	if line["trace_id"] != tid.String() || line["span_id"] != handling.SpanContext().SpanID().String() {
		t.Errorf("call line %v, want trace_id %s span_id %s", line, tid, handling.SpanContext().SpanID())
	}
}

// A caller's W3C trace context is continued, over REST headers and over
// gRPC metadata.
func TestCallerTraceContextContinued(t *testing.T) {
	var logs lockedBuffer
	env, rec := traced(t, &logs)
	req, err := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", callerTraceparent)
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	spans := ended(t, rec, named(restExportSpanName, trace.SpanKindServer))
	tid, _ := trace.TraceIDFromHex(callerTraceID)
	rest := only(t, spans, tid, "REST", named(restExportSpanName, trace.SpanKindServer))
	if !rest.Parent().IsRemote() || rest.Parent().SpanID().String() != callerSpanID {
		t.Errorf("REST span's parent %v, want the caller's span %s", rest.Parent(), callerSpanID)
	}
	only(t, spans, tid, "cloud", named(createCallSpan, trace.SpanKindClient))

	const grpcTraceID = "0af7651916cd43dd8448eb211c80319c"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+grpcTraceID+"-b7ad6b7169203331-01")
	if _, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatal(err)
	}
	gtid, _ := trace.TraceIDFromHex(grpcTraceID)
	spans = ended(t, rec, func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanContext().TraceID() == gtid && s.SpanKind() == trace.SpanKindServer
	})
	handling := only(t, spans, gtid, "gRPC server", named(exportMethod, trace.SpanKindServer))
	if !handling.Parent().IsRemote() || handling.Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("gRPC span's parent %v, want the caller's span", handling.Parent())
	}
	childOf(t, only(t, spans, gtid, "cloud", named(createCallSpan, trace.SpanKindClient)), handling)

	// A request the gateway refuses itself is traced and logged in the
	// caller's trace too.
	req, err = http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+refusedTraceID+"-00f067aa0ba902b7-01")
	if resp, err = env.HTTP.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("a POST without Content-Type: %d", resp.StatusCode)
	}
	line := findLog(t, &logs, func(m map[string]any) bool { return m["msg"] == "call" && m["http_status"] == float64(415) })
	if line["trace_id"] != refusedTraceID {
		t.Errorf("the refusal's call line %v, want trace_id %s", line, refusedTraceID)
	}
}

// Each poll is a root span with the cloud call under it; the watch that
// reports FINISHED links to the poll that observed it, and to no other.
func TestWatchLinksThePollThatSawFinished(t *testing.T) {
	env, rec := traced(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	if len(msgs) == 0 || msgs[len(msgs)-1].GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("the watch ended with %v, want FINISHED", msgs)
	}
	id := msgs[0].GetTask().GetTaskId()

	spans := ended(t, rec, named(exportAndWatchRPC, trace.SpanKindServer))
	var watch sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == exportAndWatchRPC && s.SpanKind() == trace.SpanKindServer {
			watch = s
		}
	}
	// The creation is part of the watch's trace.
	only(t, spans, watch.SpanContext().TraceID(), "budget", named(createBudgetSpan, trace.SpanKindInternal))
	childOf(t, only(t, spans, watch.SpanContext().TraceID(), "cloud", named(createCallSpan, trace.SpanKindClient)), watch)

	links := watch.Links()
	if len(links) != 1 {
		t.Fatalf("the watch has %d links, want 1 (the poll that saw FINISHED; PENDING came from the creation)", len(links))
	}
	link := links[0]
	la := map[string]string{}
	for _, kv := range link.Attributes {
		la[string(kv.Key)] = kv.Value.AsString()
	}
	if la[cloud.AttrTaskStatus] != "FINISHED" || la["cwpexport.watch.kind"] != "WATCH_EVENT_KIND_STATE_CHANGED" {
		t.Errorf("link attributes %v", la)
	}
	poll := only(t, spans, link.SpanContext.TraceID(), "poll", named(pollSpan, trace.SpanKindInternal))
	if poll.SpanContext().SpanID() != link.SpanContext.SpanID() {
		t.Errorf("the link names span %s, the poll is %s", link.SpanContext.SpanID(), poll.SpanContext().SpanID())
	}
	if poll.Parent().IsValid() || poll.SpanContext().TraceID() == watch.SpanContext().TraceID() {
		t.Errorf("the poll is under %v in trace %s: want a root of its own", poll.Parent(), poll.SpanContext().TraceID())
	}
	if got := itoa(spanAttr(poll, cloud.AttrTaskID).AsInt64()); got != id || !spanAttr(poll, "cwpexport.poll.changed").AsBool() {
		t.Errorf("poll of task %s changed=%v, want task %s changed", got, spanAttr(poll, "cwpexport.poll.changed").AsBool(), id)
	}
	pollCall := only(t, spans, poll.SpanContext().TraceID(), "poll's cloud call", named(pollCallSpan, trace.SpanKindClient))
	childOf(t, pollCall, poll)
	if st, rid := spanAttr(pollCall, cloud.AttrTaskStatus).AsString(), spanAttr(pollCall, cloud.AttrRequestID).AsString(); st != "FINISHED" || rid == "" || rid != msgs[len(msgs)-1].GetTask().GetLastUpstreamRequestId() {
		t.Errorf("the poll's cloud call saw %q with RequestId %q, want FINISHED with the final message's RequestId", st, rid)
	}
}

// Health probes are not traced, over gRPC or REST.
func TestHealthChecksNotTraced(t *testing.T) {
	env, rec := traced(t, nil) // Start waits for /healthz
	resp, err := env.HTTP.Get(env.RESTURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := env.Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: "abc"}); err == nil {
		t.Fatal("an invalid task id was accepted")
	}
	spans := ended(t, rec, named(getMethod, trace.SpanKindServer))
	for _, s := range spans {
		if strings.Contains(s.Name(), "Health") || strings.Contains(s.Name(), "healthz") {
			t.Errorf("a health check was traced: %q", s.Name())
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// findLog returns the first JSON log line that match accepts, waiting for
// it: a call line is written after the answer.
func findLog(t *testing.T, logs *lockedBuffer, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such log line within 10s: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// REST spans are named by their route, whether grpc-gateway or the
// Server-Sent Events handler answers: a name of few values for any task.
func TestRESTSpansNamedByRoute(t *testing.T) {
	env, rec := traced(t, nil)
	res := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{}`)
	var answer struct{ Task struct{ TaskID string } }
	if err := json.Unmarshal(res.Body, &answer); err != nil || answer.Task.TaskID == "" {
		t.Fatalf("export: %d %s", res.Status, res.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path := "/v1/export-tasks/" + answer.Task.TaskID + ":watch"
	if code, lines := env.Stream(t, ctx, http.MethodGet, path, ""); code != http.StatusOK || len(lines) == 0 {
		t.Fatalf("NDJSON watch: %d, %d lines", code, len(lines))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.RESTURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(string(body), "event: end") {
		t.Fatalf("event stream: %s %q", resp.Header.Get("Content-Type"), body)
	}
	const name = "GET /v1/export-tasks/{task_id}:watch"
	isWatch := func(s sdktrace.ReadOnlySpan) bool { return s.Name() == name }
	for _, s := range endedN(t, rec, 2, isWatch) {
		if !isWatch(s) {
			continue
		}
		if r := spanAttr(s, "http.route").AsString(); r != "/v1/export-tasks/{task_id}:watch" || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("%q: route %q kind %v", s.Name(), r, s.SpanKind())
		}
	}
}
