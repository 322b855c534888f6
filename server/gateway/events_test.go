package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// sseEvent is one event as the text/event-stream format defines it.
type sseEvent struct {
	ID, Event, Data string
	Retry           int
}

// eventReader parses a text/event-stream body field by field, so that
// the tests check the bytes on the wire rather than a library's reading.
type eventReader struct{ r *bufio.Reader }

// next returns the next event, or io.EOF when the body ends between events.
func (er eventReader) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := er.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && !seen && line == "" {
				return ev, io.EOF
			}
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if !seen {
				continue
			}
			ev.Data = strings.Join(data, "\n")
			return ev, nil
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			ev.Retry, _ = strconv.Atoi(value)
		}
	}
}

// openEvents sends a request asking for an event stream.
func openEvents(t *testing.T, ctx context.Context, env *testserver.Env, method, path, body string, header http.Header) (*http.Response, eventReader) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, env.RESTURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, eventReader{bufio.NewReader(resp.Body)}
}

// readAll reads events to the end of the body.
func readAll(t *testing.T, er eventReader) []sseEvent {
	t.Helper()
	var evs []sseEvent
	for {
		ev, err := er.next()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("read events: %v (after %d)", err, len(evs))
		}
		evs = append(evs, ev)
	}
}

// message is the part of a stream message the tests look at.
type message struct {
	Kind string `json:"kind"`
	Task struct {
		TaskID string `json:"taskId"`
		State  string `json:"state"`
	} `json:"task"`
	UpstreamRequestID *string `json:"upstreamRequestId"`
}

func decode[T any](t *testing.T, data string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("event data is not JSON: %v: %q", err, data)
	}
	return v
}

// createdID is the task id of an ExportLicenseDetail answer.
func createdID(t *testing.T, r testserver.Response) string {
	t.Helper()
	id := decode[message](t, string(r.Body)).Task.TaskID
	if r.Status != 200 || id == "" {
		t.Fatalf("export answered %d: %s", r.Status, r.Body)
	}
	return id
}

func fastEnv(t *testing.T, pending time.Duration, o app.Options) *testserver.Env {
	o.MinPollInterval, o.Heartbeat, o.Freshness = 100*time.Millisecond, 200*time.Millisecond, 50*time.Millisecond
	return testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: pending}, App: o})
}

// checkStream checks a whole stream's events: the retry hint first, a
// snapshot, heartbeats and state changes numbered in order under the task's
// id, the terminal message, then the end event.
func checkStream(t *testing.T, evs []sseEvent, taskID string, firstSeq int, final string) {
	t.Helper()
	if len(evs) < 2 {
		t.Fatalf("%d events, want at least a snapshot and the end: %+v", len(evs), evs)
	}
	if evs[0].Retry != 2000 || evs[0].Event != "snapshot" {
		t.Errorf("first event: retry %d, event %q; want 2000, snapshot", evs[0].Retry, evs[0].Event)
	}
	for i, ev := range evs[:len(evs)-1] {
		if want := taskID + ":" + strconv.Itoa(firstSeq+i); ev.ID != want {
			t.Errorf("event %d has id %q, want %q", i, ev.ID, want)
		}
		if i > 0 && ev.Retry != 0 {
			t.Errorf("event %d repeats the retry hint", i)
		}
		m := decode[message](t, ev.Data)
		if m.Task.TaskID != taskID || "WATCH_EVENT_KIND_"+strings.ToUpper(ev.Event) != m.Kind {
			t.Errorf("event %d (%s) carries kind %s of task %s", i, ev.Event, m.Kind, m.Task.TaskID)
		}
		if ev.Event == "heartbeat" && m.Task.State != "EXPORT_TASK_STATE_PENDING" {
			t.Errorf("heartbeat %d in state %s", i, m.Task.State)
		}
	}
	if last := decode[message](t, evs[len(evs)-2].Data); last.Task.State != final {
		t.Errorf("terminal message in state %s, want %s", last.Task.State, final)
	}
	end := evs[len(evs)-1]
	type endData struct{ TaskID, State string }
	if d := decode[endData](t, end.Data); end.Event != "end" || end.ID != taskID+":end" || d.TaskID != taskID || d.State != final {
		t.Errorf("last event = %+v, want end of task %s in %s", end, taskID, final)
	}
}

func TestEventStreamOfExportAndWatchAndOfWatch(t *testing.T) {
	env := fastEnv(t, 700*time.Millisecond, app.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	resp, er := openEvents(t, ctx, env, "POST", "/v1/license-detail:exportAndWatch", `{"filters":[{"name":"LicenseType","values":["1"]}]}`, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("exportAndWatch answered %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	evs := readAll(t, er)
	first := decode[message](t, evs[0].Data)
	taskID := first.Task.TaskID
	checkStream(t, evs, taskID, 1, "EXPORT_TASK_STATE_FINISHED")
	if first.UpstreamRequestID == nil || *first.UpstreamRequestID == "" {
		t.Errorf("the first exportAndWatch event lacks upstreamRequestId: %s", evs[0].Data)
	}
	kinds := map[string]int{}
	for _, ev := range evs {
		kinds[ev.Event]++
	}
	// 700ms pending with 200ms heartbeats: at least one heartbeat, one
	// change to FINISHED.
	if kinds["snapshot"] != 1 || kinds["state_changed"] != 1 || kinds["heartbeat"] < 1 || kinds["end"] != 1 {
		t.Errorf("event kinds %v", kinds)
	}

	// The same task watched over GET: a snapshot of the finished task.
	resp, er = openEvents(t, ctx, env, "GET", "/v1/export-tasks/"+taskID+":watch", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("watch answered %d", resp.StatusCode)
	}
	evs = readAll(t, er)
	checkStream(t, evs, taskID, 1, "EXPORT_TASK_STATE_FINISHED")
	if len(evs) != 2 {
		t.Errorf("watch of a finished task: %d events, want snapshot and end", len(evs))
	}
}

func TestEventStreamResumesByLastEventID(t *testing.T) {
	env := fastEnv(t, 1500*time.Millisecond, app.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The first connection is dropped after its first event.
	connCtx, drop := context.WithCancel(ctx)
	_, er := openEvents(t, connCtx, env, "POST", "/v1/license-detail:exportAndWatch", `{}`, nil)
	ev, err := er.next()
	if err != nil {
		t.Fatal(err)
	}
	drop()
	taskID := decode[message](t, ev.Data).Task.TaskID
	if ev.ID != taskID+":1" {
		t.Fatalf("first event id %q", ev.ID)
	}

	// Reconnecting the POST with Last-Event-ID resumes that task's watch
	// and never starts a second export, whatever the body says.
	resp, er := openEvents(t, ctx, env, "POST", "/v1/license-detail:exportAndWatch", `{"filters":[{"name":"Keywords","values":["other"]}]}`,
		http.Header{"Last-Event-Id": {ev.ID}})
	if resp.StatusCode != 200 {
		t.Fatalf("resume answered %d", resp.StatusCode)
	}
	evs := readAll(t, er)
	checkStream(t, evs, taskID, 2, "EXPORT_TASK_STATE_FINISHED")
	if m := decode[message](t, evs[0].Data); m.UpstreamRequestID == nil {
		t.Errorf("a resumed exportAndWatch stream carries another message type: %s", evs[0].Data)
	}
	if n := env.Emulator.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 1 {
		t.Fatalf("the cloud created %d tasks, want 1", n)
	}

	// GET resumes too; after the end event, a reconnect is told 204 (so
	// that EventSource stops reconnecting).
	last := evs[len(evs)-2].ID
	resp, er = openEvents(t, ctx, env, "GET", "/v1/export-tasks/"+taskID+":watch", "", http.Header{"Last-Event-Id": {last}})
	evs = readAll(t, er)
	n, _ := strconv.Atoi(strings.TrimPrefix(last, taskID+":"))
	checkStream(t, evs, taskID, n+1, "EXPORT_TASK_STATE_FINISHED")
	for _, method := range []string{"GET", "POST"} {
		path := "/v1/export-tasks/" + taskID + ":watch"
		if method == "POST" {
			path = "/v1/license-detail:exportAndWatch"
		}
		resp, _ = openEvents(t, ctx, env, method, path, `{}`, http.Header{"Last-Event-Id": {taskID + ":end"}})
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("%s %s after the end answered %d, want 204", method, path, resp.StatusCode)
		}
	}
	if n := env.Emulator.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 1 {
		t.Fatalf("the cloud created %d tasks, want 1", n)
	}
}

func TestEventStreamErrorsBeforeTheFirstEvent(t *testing.T) {
	env := fastEnv(t, 300*time.Millisecond, app.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	created := env.Do(t, "POST", "/v1/license-detail:export", `{}`)
	taskID := createdID(t, created)

	type violation struct{ Field string }
	type rpcStatus struct {
		Code    int
		Details []struct{ FieldViolations []violation }
	}
	for _, tc := range []struct {
		name, method, path, body, lastEventID string
		status, code                          int
		field                                 string
	}{
		{"invalid body", "POST", "/v1/license-detail:exportAndWatch", `{"exportMonth":"2026-13"}`, "", 400, 3, "export_month"},
		{"unknown body field", "POST", "/v1/license-detail:exportAndWatch", `{"bogus":1}`, "", 400, 3, ""},
		{"unknown task", "GET", "/v1/export-tasks/999999:watch", "", "", 404, 5, ""},
		{"invalid task id", "GET", "/v1/export-tasks/007:watch", "", "", 400, 3, "task_id"},
		{"malformed Last-Event-ID", "POST", "/v1/license-detail:exportAndWatch", `{}`, "yesterday", 400, 3, "Last-Event-ID"},
		{"Last-Event-ID of another task", "GET", "/v1/export-tasks/" + taskID + ":watch", "", "12:3", 400, 3, "Last-Event-ID"},
		{"Last-Event-ID of an unknown task", "POST", "/v1/license-detail:exportAndWatch", `{}`, "999999:3", 404, 5, ""},
	} {
		var h http.Header
		if tc.lastEventID != "" {
			h = http.Header{"Last-Event-Id": {tc.lastEventID}}
		}
		resp, _ := openEvents(t, ctx, env, tc.method, tc.path, tc.body, h)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: answered %d %s, want %d JSON: %s", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, body)
			continue
		}
		st := decode[rpcStatus](t, string(body))
		found := tc.field == ""
		for _, d := range st.Details {
			for _, v := range d.FieldViolations {
				found = found || v.Field == tc.field
			}
		}
		if st.Code != tc.code || !found {
			t.Errorf("%s: status %s, want code %d with a violation on %q", tc.name, body, tc.code, tc.field)
		}
	}
	// None of them reached the cloud's export action.
	if n := env.Emulator.Stats().Actions["ExportLicenseDetail"].Requests; n != 1 {
		t.Errorf("the cloud received %d exports, want 1", n)
	}
}

// TestEventStreamErrorAfterTheFirstEvent: a failure once the stream began
// is an error event carrying the google.rpc.Status, under the last
// message's id; a task that ends in ERROR is a normal end.
func TestEventStreamErrorAfterTheFirstEvent(t *testing.T) {
	env := fastEnv(t, time.Hour, app.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, er := openEvents(t, ctx, env, "POST", "/v1/license-detail:exportAndWatch", `{}`, nil)
	first, err := er.next()
	if err != nil {
		t.Fatal(err)
	}
	taskID := decode[message](t, first.Data).Task.TaskID
	id, _ := strconv.ParseInt(taskID, 10, 64)
	if err := env.Emulator.FailTask(id); err != nil {
		t.Fatal(err)
	}
	evs := readAll(t, er)
	if len(evs) < 2 || evs[len(evs)-1].Event != "end" || decode[message](t, evs[len(evs)-2].Data).Task.State != "EXPORT_TASK_STATE_ERROR" {
		t.Fatalf("a task the cloud failed ended with %+v", evs)
	}

	// The cloud starts refusing the service's signatures (a clock far
	// off): polls cannot recover, the watch ends with Internal.
	_, er = openEvents(t, ctx, env, "POST", "/v1/license-detail:exportAndWatch", `{}`, nil)
	first, err = er.next()
	if err != nil {
		t.Fatal(err)
	}
	taskID = decode[message](t, first.Data).Task.TaskID
	if err := env.Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultClockSkew, Action: "ExportTasks"}); err != nil {
		t.Fatal(err)
	}
	evs = append([]sseEvent{first}, readAll(t, er)...)
	last := evs[len(evs)-1]
	if last.Event != "error" || last.ID != evs[len(evs)-2].ID || !strings.HasPrefix(last.ID, taskID+":") {
		t.Fatalf("stream ended with %+v after %+v, want an error event under the last id", last, evs[len(evs)-2])
	}
	type errorInfo struct {
		Type   string `json:"@type"`
		Reason string
	}
	st := decode[struct {
		Code    int
		Message string
		Details []errorInfo
	}](t, last.Data)
	if st.Code != 13 || len(st.Details) == 0 || st.Details[0].Reason != "UPSTREAM_CREDENTIALS_REJECTED" {
		t.Errorf("error event data %s, want INTERNAL with reason UPSTREAM_CREDENTIALS_REJECTED", last.Data)
	}
}

func TestEventStreamOnlyForClientsThatAskForIt(t *testing.T) {
	env := fastEnv(t, 100*time.Millisecond, app.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	created := env.Do(t, "POST", "/v1/license-detail:export", `{}`)
	taskID := createdID(t, created)
	for _, tc := range []struct {
		accept []string
		sse    bool
	}{
		{nil, false},
		{[]string{"*/*"}, false},
		{[]string{"application/json"}, false},
		{[]string{"text/event-stream"}, true},
		{[]string{"text/event-stream;q=0.9, */*;q=0.1"}, true},
		{[]string{"application/json, text/event-stream"}, true},
		{[]string{"application/json", "text/event-stream"}, true},
		{[]string{"text/event-stream;q=0.5, application/json"}, false},
		{[]string{"text/event-stream;q=0"}, false},
		{[]string{"text/*"}, false},
		{[]string{"application/json;q=0.2, */*, text/event-stream;q=0.5"}, true},
	} {
		req, _ := http.NewRequestWithContext(ctx, "GET", env.RESTURL+"/v1/export-tasks/"+taskID+":watch", nil)
		req.Header["Accept"] = tc.accept
		resp, err := env.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ct := resp.Header.Get("Content-Type")
		isSSE := ct == "text/event-stream" && strings.HasPrefix(string(body), "retry: 2000\nid: "+taskID+":1\nevent: snapshot\n")
		isNDJSON := strings.HasPrefix(ct, "application/json") && strings.HasPrefix(string(body), `{"result":`)
		if resp.StatusCode != 200 || (tc.sse && !isSSE) || (!tc.sse && !isNDJSON) {
			t.Errorf("Accept %q: %d %s, want SSE %v: %.80s", tc.accept, resp.StatusCode, ct, tc.sse, body)
		}
	}
}

func TestEventStreamNeedsTheBearerToken(t *testing.T) {
	const token = "sse-token-0123456789abcdef"
	tokens, err := callerauth.ParseTokens("page " + token)
	if err != nil {
		t.Fatal(err)
	}
	env := fastEnv(t, 100*time.Millisecond, app.Options{Tokens: tokens})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, _ := openEvents(t, ctx, env, "POST", "/v1/license-detail:exportAndWatch", `{}`, nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || strings.Contains(string(body), token) {
		t.Fatalf("without a token: %d %s, want 401", resp.StatusCode, body)
	}
	resp, er := openEvents(t, ctx, env, "POST", "/v1/license-detail:exportAndWatch", `{}`, http.Header{"Authorization": {"Bearer " + token}})
	if resp.StatusCode != 200 {
		t.Fatalf("with the token: %d", resp.StatusCode)
	}
	evs := readAll(t, er)
	checkStream(t, evs, decode[message](t, evs[0].Data).Task.TaskID, 1, "EXPORT_TASK_STATE_FINISHED")
}

// TestEventStreamEndsWhenTheClientGoes: the watch is released (the tracker
// counts no watcher) once the client closes its connection.
func TestEventStreamEndsWhenTheClientGoes(t *testing.T) {
	env := fastEnv(t, time.Hour, app.Options{})
	created := env.Do(t, "POST", "/v1/license-detail:export", `{}`)
	taskID := createdID(t, created)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, er := openEvents(t, ctx, env, "GET", "/v1/export-tasks/"+taskID+":watch", "", nil)
	if _, err := er.next(); err != nil {
		t.Fatal(err)
	}
	if w := env.Server.Tracker().Stats().Watchers; w != 1 {
		t.Fatalf("%d watchers while the stream is open, want 1", w)
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for env.Server.Tracker().Stats().Watchers != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the watch was not released within 10s of the client leaving")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventStreamWithCurl reads both streams with curl, as the README shows.
func TestEventStreamWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("SKIPPED: curl is not installed, so the event stream was not checked with curl (apt-get install curl)")
	}
	env := fastEnv(t, 500*time.Millisecond, app.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sSfN", "-H", "Accept: text/event-stream", "-H", "Content-Type: application/json", "-X", "POST",
		env.RESTURL+"/v1/license-detail:exportAndWatch", "-d", `{"tags":[{"tagKey":"env","tagValue":"prod"}]}`).Output()
	if err != nil {
		t.Fatalf("curl exportAndWatch: %v", err)
	}
	evs := readAll(t, eventReader{bufio.NewReader(strings.NewReader(string(out)))})
	taskID := decode[message](t, evs[0].Data).Task.TaskID
	checkStream(t, evs, taskID, 1, "EXPORT_TASK_STATE_FINISHED")

	// curl resumes by sending the last id itself.
	out, err = exec.CommandContext(ctx, curl, "-sSfN", "-H", "Accept: text/event-stream", "-H", "Last-Event-ID: "+evs[0].ID,
		env.RESTURL+"/v1/export-tasks/"+taskID+":watch").Output()
	if err != nil {
		t.Fatalf("curl watch: %v", err)
	}
	evs = readAll(t, eventReader{bufio.NewReader(strings.NewReader(string(out)))})
	checkStream(t, evs, taskID, 2, "EXPORT_TASK_STATE_FINISHED")
}
