package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

func cloudCalls(env *testserver.Env) int64 {
	st := env.Emulator.Stats()
	return st.Actions[cloud.ActionExportLicenseDetail].Requests + st.Actions[cloud.ActionExportTasks].Requests
}

// rawRequest writes an HTTP request by hand on a new connection, so that
// the test controls every header and byte.
func rawRequest(t *testing.T, addr, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, c net.Conn, r *bufio.Reader) (int, map[string]any) {
	t.Helper()
	// A guard against a hang, not a measure: the server answers at once.
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestRESTRefusesBeforeReadingTheBody: an unauthenticated POST is answered
// 401 on its headers, without the service waiting for a body that never
// comes; a caller with a token that trickles its body is answered 408 after
// the body timeout, and twenty such connections do not stop other callers.
func TestRESTRefusesBeforeReadingTheBody(t *testing.T) {
	o := fastApp()
	o.Tokens = testTokens(t)
	o.RESTBodyTimeout = time.Second
	env := testserver.Start(t, testserver.Config{App: o, Token: bobToken})
	addr := strings.TrimPrefix(env.RESTURL, "http://")
	head := "POST /v1/license-detail:export HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n"

	c, r := rawRequest(t, addr, head+"\r\n")
	if code, body := readResponse(t, c, r); code != http.StatusUnauthorized || body["code"] != float64(codes.Unauthenticated) {
		t.Errorf("unauthenticated POST with a body to come: HTTP %d %v, want 401 at once", code, body)
	}

	const slow = 20
	var wg sync.WaitGroup
	codesSeen := make(chan int, slow)
	for range slow {
		c, r := rawRequest(t, addr, head+"Authorization: Bearer "+aliceToken+"\r\n\r\n{")
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := make(chan struct{})
			defer close(stop)
			go func() { // one byte every 200ms until answered
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			code, _ := readResponse(t, c, r)
			codesSeen <- code
		}()
	}
	// Meanwhile another caller is served.
	for i := range 5 {
		if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{}`); r.Status != 200 {
			t.Errorf("bob's export %d while slow bodies trickle: HTTP %d %s", i, r.Status, r.Body)
		}
		if _, err := env.Client.ListExportTasks(as(bobToken), &cwpexportv1.ListExportTasksRequest{}); err != nil {
			t.Errorf("bob's gRPC list while slow bodies trickle: %v", err)
		}
	}
	wg.Wait()
	close(codesSeen)
	n := 0
	for code := range codesSeen {
		if code == http.StatusRequestTimeout {
			n++
		}
	}
	if n != slow {
		t.Errorf("%d of %d trickled bodies were answered 408", n, slow)
	}
}

// TestRESTRequestHygiene: POSTs must be JSON (415), the loopback service
// answers only to loopback host names and pages (403), a client's
// X-Forwarded-For is not believed, and none of the refused requests reach
// the cloud.
func TestRESTRequestHygiene(t *testing.T) {
	var logs lockedBuffer
	o := fastApp()
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	env := testserver.Start(t, testserver.Config{App: o})
	send := func(method, path, body string, header map[string]string) testserver.Response {
		req, _ := http.NewRequest(method, env.RESTURL+path, strings.NewReader(body))
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		return do(t, env.HTTP, req)
	}
	const export = "/v1/license-detail:export"
	port := env.RESTURL[strings.LastIndex(env.RESTURL, ":")+1:]
	cases := []struct {
		name   string
		method string
		path   string
		header map[string]string
		want   int
		reason string
	}{
		{"text/plain POST", http.MethodPost, export, map[string]string{"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"form POST", http.MethodPost, export, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"POST without a type", http.MethodPost, export, nil, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"JSON in another charset", http.MethodPost, export, map[string]string{"Content-Type": "application/json; charset=latin1"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"streaming POST as text", http.MethodPost, "/v1/license-detail:exportAndWatch", map[string]string{"Content-Type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"rebound host name", http.MethodGet, "/v1/export-tasks", map[string]string{"Host": "attacker.example:" + port}, 403, "HOST_NOT_ALLOWED"},
		{"rebound host on the page", http.MethodGet, "/", map[string]string{"Host": "attacker.example"}, 403, "HOST_NOT_ALLOWED"},
		{"cross-site POST", http.MethodPost, export, map[string]string{"Content-Type": "application/json", "Origin": "http://attacker.example"}, 403, "ORIGIN_NOT_ALLOWED"},
		{"sandboxed page", http.MethodPost, export, map[string]string{"Content-Type": "application/json", "Origin": "null"}, 403, "ORIGIN_NOT_ALLOWED"},
	}
	for _, c := range cases {
		r := send(c.method, c.path, `{}`, c.header)
		if r.Status != c.want {
			t.Errorf("%s: HTTP %d %s, want %d", c.name, r.Status, r.Body, c.want)
			continue
		}
		if m := r.JSON(t); m["code"] == nil || m["message"] == "" {
			t.Errorf("%s: the body is not a google.rpc.Status: %s", c.name, r.Body)
		}
		if got := restReason(r.Body); got != c.reason {
			t.Errorf("%s: reason %q, want %q: %s", c.name, got, c.reason, r.Body)
		}
	}
	if n := cloudCalls(env); n != 0 {
		t.Errorf("refused requests reached the cloud %d times", n)
	}
	for name, header := range map[string]map[string]string{
		"localhost":          {"Host": "localhost:" + port, "Content-Type": "application/json"},
		"same-origin page":   {"Origin": env.RESTURL, "Content-Type": "application/json"},
		"JSON with charset":  {"Content-Type": "application/json; charset=utf-8"},
		"X-Forwarded-For 6.": {"X-Forwarded-For": "6.6.6.6", "Content-Type": "application/json"},
	} {
		if r := send(http.MethodPost, export, `{}`, header); r.Status != 200 {
			t.Errorf("%s: HTTP %d %s", name, r.Status, r.Body)
		}
	}
	if r := send(http.MethodGet, "/healthz", "", map[string]string{"Host": "10.1.2.3:" + port}); r.Status != 200 {
		t.Errorf("/healthz by address: HTTP %d", r.Status)
	}
	// A gRPC caller's forwarding metadata is not believed either.
	if _, err := env.Client.ListExportTasks(metadata.AppendToOutgoingContext(context.Background(), "x-forwarded-for", "6.6.6.6"), &cwpexportv1.ListExportTasksRequest{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "6.6.6.6") {
		t.Errorf("a client-sent forwarded address reached the call log")
	}
	if !strings.Contains(logs.String(), `"peer":"rest:127.0.0.1"`) || !strings.Contains(logs.String(), `"peer":"grpc:127.0.0.1:`) {
		t.Errorf("the call log lacks the real REST and gRPC peers")
	}
}

// TestRESTConnectionCap: connections beyond the cap wait to be accepted;
// one closing lets the next in.
func TestRESTConnectionCap(t *testing.T) {
	o := fastApp()
	o.RESTMaxConns = 3
	env := testserver.Start(t, testserver.Config{App: o})
	env.HTTP.CloseIdleConnections()
	addr := strings.TrimPrefix(env.RESTURL, "http://")
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := env.HTTP.Get(env.RESTURL + "/healthz")
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case code := <-answered:
		t.Fatalf("a fourth connection was served (HTTP %d) while three were open", code)
	case <-time.After(500 * time.Millisecond):
	}
	idle[0].Close()
	if code := <-answered; code != 200 {
		t.Fatalf("after one connection closed: HTTP %d", code)
	}
}

// rawCodec sends pre-encoded bytes as a gRPC request, as a client in
// another language might: the Go protobuf library refuses to encode
// invalid UTF-8.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	return proto.Unmarshal(data, v.(proto.Message))
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// TestInvalidUTF8OverGRPC: a string that is not UTF-8 is InvalidArgument
// with a field violation over gRPC as over REST (not Internal), and never
// reaches the cloud.
func TestInvalidUTF8OverGRPC(t *testing.T) {
	env := start(t)
	var filter []byte
	filter = protowire.AppendTag(filter, 1, protowire.BytesType)
	filter = protowire.AppendString(filter, "Keywords")
	filter = protowire.AppendTag(filter, 2, protowire.BytesType)
	filter = protowire.AppendString(filter, "ok")
	filter = protowire.AppendTag(filter, 2, protowire.BytesType)
	filter = protowire.AppendString(filter, "\xff\xfe")
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, filter)
	for _, method := range []string{"ExportLicenseDetail", "ExportLicenseDetailAndWatch"} {
		full := "/cwpexport.v1.LicenseExportService/" + method
		var err error
		if method == "ExportLicenseDetail" {
			err = env.Conn.Invoke(context.Background(), full, &req, &cwpexportv1.ExportLicenseDetailResponse{}, grpc.ForceCodec(rawCodec{}))
		} else {
			var s grpc.ClientStream
			s, err = env.Conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, full, grpc.ForceCodec(rawCodec{}))
			if err == nil {
				if err = s.SendMsg(&req); err == nil {
					_ = s.CloseSend()
					err = s.RecvMsg(&cwpexportv1.ExportLicenseDetailAndWatchResponse{})
				}
			}
		}
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !slicesEqual(violationFields(st), []string{"filters[0].values[1]"}) {
			t.Errorf("%s with invalid UTF-8: %v (violations %v), want InvalidArgument on filters[0].values[1]", method, err, violationFields(st))
		}
	}
	if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", "{\"filters\":[{\"name\":\"Keywords\",\"values\":[\"\xff\"]}]}"); r.Status != 400 {
		t.Errorf("REST with invalid UTF-8: HTTP %d", r.Status)
	}
	if n := cloudCalls(env); n != 0 {
		t.Errorf("invalid UTF-8 reached the cloud %d times", n)
	}
	// The service carries on.
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Errorf("a valid export after the invalid ones: %v", err)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestErrorsStaySmallerThanTheirRequests: 10,000 bad values get the first
// violations and a count, over gRPC (where the error travels in a trailer)
// and REST; an export's parameters are bounded in total size.
func TestErrorsStaySmallerThanTheirRequests(t *testing.T) {
	env := start(t)
	values := make([]string, 10_000)
	for i := range values {
		values[i] = "bad" + strconv.Itoa(i)
	}
	req := &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: values}}}
	_, err := env.Client.ExportLicenseDetail(context.Background(), req)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || len(violationFields(st)) != 20 || errorInfo(st).GetMetadata()["field_violations"] != "10001" {
		t.Errorf("gRPC: %v with %d violations listed, %q counted", st.Code(), len(violationFields(st)), errorInfo(st).GetMetadata()["field_violations"])
	}
	if got, sent := proto.Size(st.Proto()), proto.Size(req); got*10 > sent {
		t.Errorf("gRPC: a %d-byte request got a %d-byte error", sent, got)
	}
	body, _ := json.Marshal(map[string]any{"filters": []map[string]any{{"name": "LicenseType", "values": values}}})
	r := env.Do(t, http.MethodPost, "/v1/license-detail:export", string(body))
	if r.Status != 400 || len(r.Body)*10 > len(body) {
		t.Errorf("REST: HTTP %d, %d bytes answered to %d", r.Status, len(r.Body), len(body))
	}

	big := make([]string, 100)
	for i := range big {
		big[i] = strings.Repeat("k", 250)
	}
	var filters []*cwpexportv1.Filter
	for range 4 {
		filters = append(filters, &cwpexportv1.Filter{Name: "Keywords", Values: big})
	}
	_, err = env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{Filters: filters})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "more than the 32768 an export may have") {
		t.Errorf("100 KB of parameters: %v", err)
	}
	if n := cloudCalls(env); n != 0 {
		t.Errorf("invalid requests reached the cloud %d times", n)
	}
}

// TestListPagesAreBoundedInBytes: tasks with large parameters are listed
// in pages that stay under the byte bound; paging returns every task once,
// over gRPC and REST.
func TestListPagesAreBoundedInBytes(t *testing.T) {
	o := fastApp()
	o.MaxPageBytes = 100 << 10
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	values := make([]string, 100)
	for i := range values {
		values[i] = fmt.Sprintf("%0250d", i) // 100 values of 250 bytes: ~25 KB per task
	}
	created := map[string]bool{}
	for range 12 {
		res, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{
			Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: values}}})
		if err != nil {
			t.Fatal(err)
		}
		created[res.GetTask().GetTaskId()] = true
	}
	seen, pages, token := map[string]bool{}, 0, ""
	for {
		res, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if n := proto.Size(res); n > o.MaxPageBytes+1024 {
			t.Errorf("page %d is %d bytes", pages, n)
		}
		for _, task := range res.GetTasks() {
			if seen[task.GetTaskId()] {
				t.Errorf("task %s listed twice", task.GetTaskId())
			}
			seen[task.GetTaskId()] = true
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
		// REST continues with the same token.
		r := env.Do(t, http.MethodGet, "/v1/export-tasks?pageSize=1000&pageToken="+token, "")
		if r.Status != 200 {
			t.Fatalf("REST page: HTTP %d %s", r.Status, r.Body)
		}
	}
	// About 25 KB a task, 100 KiB a page: at most 4 tasks a page.
	if len(seen) != len(created) || pages < 3 {
		t.Errorf("listed %d of %d tasks in %d pages", len(seen), len(created), pages)
	}
}

// TestForgedPageTokensAre400: page tokens are authenticated and strictly
// parsed.
func TestForgedPageTokensAre400(t *testing.T) {
	env := start(t)
	for range 3 {
		if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{PageSize: 1})
	if err != nil || page.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", page, err)
	}
	tok := page.GetNextPageToken()
	flipped := []byte(tok)
	flipped[10] ^= 'A' ^ 'B'
	if flipped[10] == tok[10] {
		flipped[10] = 'C'
	}
	for name, forged := range map[string]string{
		"a changed byte":  string(flipped),
		"extended":        tok + "AAAA",
		"the old format":  "eyJjIjoxLCJ0IjoxfQ", // {"c":1,"t":1}
		"not base64":      "!!!",
		"a huge one":      strings.Repeat("A", 30_000),
		"a truncated one": tok[:len(tok)-1],
	} {
		r := env.Do(t, http.MethodGet, "/v1/export-tasks?pageToken="+forged, "")
		if r.Status != 400 || !strings.Contains(string(r.Body), "page_token") {
			t.Errorf("%s: HTTP %d %.200s, want 400 naming page_token", name, r.Status, r.Body)
		}
	}
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks?pageSize=1&pageToken="+tok, ""); r.Status != 200 {
		t.Errorf("the genuine token: HTTP %d %s", r.Status, r.Body)
	}
}

// TestReadsPerCaller: one caller's burst of reads is refused with 429 and
// Retry-After once its bucket is empty; another caller is not affected.
func TestReadsPerCaller(t *testing.T) {
	o := fastApp()
	o.Tokens, o.ReadsPerCaller, o.ReadBurst = testTokens(t), 0.01, 3
	env := testserver.Start(t, testserver.Config{App: o, Token: aliceToken})
	refused := 0
	for range 3 + 2 {
		_, err := env.Client.GetExportTask(as(aliceToken), &cwpexportv1.GetExportTaskRequest{TaskId: "12345"})
		if st := status.Convert(err); st.Code() == codes.ResourceExhausted {
			refused++
			_, retry := apierror.RetryDelay(err)
			if !retry || errorInfo(st).GetReason() != "CALLER_READ_RATE_EXCEEDED" {
				t.Errorf("refusal without RetryInfo or reason: %v", err)
			}
		}
	}
	if refused != 2 {
		t.Errorf("alice: %d of 5 gRPC reads refused, want 2", refused)
	}
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks", ""); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Errorf("alice over REST: HTTP %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	if _, err := env.Client.ListExportTasks(as(bobToken), &cwpexportv1.ListExportTasksRequest{}); err != nil {
		t.Errorf("bob, after alice's reads: %v", err)
	}
}

// TestAuditLog: every export and download, refused or not, has an audit
// line naming the caller, the task and the outcome, on the audit logger
// only.
func TestAuditLog(t *testing.T) {
	var logs, audit lockedBuffer
	o := fastApp()
	o.Tokens = parseTokens(t, teamTokens)
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	o.AuditLogger = slog.New(slog.NewJSONHandler(&audit, nil))
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 200 * time.Millisecond}, App: o})
	alice, bob := tokenCaller(env, "alice", aliceToken), tokenCaller(env, "bob", bobToken)
	id := alice.export(t)
	alice.waitFinished(t, id)
	if r := alice.rest(t, http.MethodPost, "/v1/license-detail:export", `{"requestId":"4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"}`); r.Status != 200 {
		t.Fatalf("REST export: HTTP %d", r.Status)
	}
	file, err := downloadAs(t, alice, id)
	if err != nil {
		t.Fatal(err)
	}
	if r := bob.rest(t, http.MethodGet, "/v1/export-tasks/"+id+":download", ""); r.Status != 404 {
		t.Fatalf("bob's download of alice's file: HTTP %d", r.Status)
	}
	type line struct {
		Msg, Event, Caller, Peer, TaskID, Outcome, RequestID string
		Bytes                                                int64
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
		var rec struct {
			Msg, Event, Caller, Peer, Outcome string
			TaskID                            string `json:"task_id"`
			RequestID                         string `json:"request_id"`
			Bytes                             int64
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("audit line is not JSON: %s", l)
		}
		lines = append(lines, line{rec.Msg, rec.Event, rec.Caller, rec.Peer, rec.TaskID, rec.Outcome, rec.RequestID, rec.Bytes})
	}
	if len(lines) != 4 {
		t.Fatalf("%d audit lines, want 4: %s", len(lines), audit.String())
	}
	want := []line{
		{Msg: "audit", Event: "export", Caller: "alice", TaskID: id, Outcome: "OK"},
		{Msg: "audit", Event: "export", Caller: "alice", Outcome: "OK", RequestID: "4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
		{Msg: "audit", Event: "download", Caller: "alice", TaskID: id, Outcome: "OK", Bytes: int64(len(file))},
		{Msg: "audit", Event: "download", Caller: "bob", TaskID: id, Outcome: "NotFound"},
	}
	for i, w := range want {
		got := lines[i]
		got.Peer = ""
		if w.TaskID == "" {
			got.TaskID = ""
		}
		if got != w {
			t.Errorf("audit line %d: %+v, want %+v", i, got, w)
		}
		if !strings.HasPrefix(lines[i].Peer, "grpc:") && !strings.HasPrefix(lines[i].Peer, "rest:") {
			t.Errorf("audit line %d has no peer: %+v", i, lines[i])
		}
	}
	if strings.Contains(logs.String(), `"msg":"audit"`) {
		t.Errorf("audit lines went to the debug log")
	}
}
