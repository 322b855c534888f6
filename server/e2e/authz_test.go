package e2e_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/testserver"
)

const (
	carolToken = "carol-token-0123456789abcdef"
	olgaToken  = "olga-token-0123456789abcdef0"
)

// teamTokens: alice and carol are team-a, bob is on his own team, olga is
// an operator.
const teamTokens = "alice " + aliceToken + "\nbob " + bobToken + "\ncarol " + carolToken + "\nolga " + olgaToken + `
group team-a alice carol
group team-b bob
role operator olga
`

func parseTokens(t *testing.T, text string) *callerauth.Tokens {
	t.Helper()
	tok, err := callerauth.ParseTokens(text)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// caller is one caller of the service over both transports.
type caller struct {
	name  string
	grpc  cwpexportv1.LicenseExportServiceClient
	ctx   func() context.Context
	http  *http.Client
	url   string
	token string
}

func tokenCaller(env *testserver.Env, name, token string) caller {
	return caller{name: name, grpc: env.Client, ctx: func() context.Context { return as(token) }, http: env.HTTP, url: env.RESTURL, token: token}
}

// certCaller is a caller named by its client certificate, with connections
// of its own.
func certCaller(t *testing.T, env *testserver.Env, p *testserver.PKI, name string, cert tls.Certificate) caller {
	t.Helper()
	cfg := p.ClientTLS(cert)
	conn, err := grpc.NewClient(env.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(func() { conn.Close(); hc.CloseIdleConnections() })
	return caller{name: name, grpc: cwpexportv1.NewLicenseExportServiceClient(conn), ctx: context.Background, http: hc, url: env.RESTURL}
}

func (c caller) rest(t *testing.T, method, path, body string) testserver.Response {
	t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return do(t, c.http, req)
}

func (c caller) export(t *testing.T) string {
	t.Helper()
	res, err := c.grpc.ExportLicenseDetail(c.ctx(), &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"1"}}}})
	if err != nil {
		t.Fatalf("%s exports: %v", c.name, err)
	}
	if res.GetTask().GetCreator() != c.name {
		t.Fatalf("%s's export was recorded as %q's", c.name, res.GetTask().GetCreator())
	}
	return res.GetTask().GetTaskId()
}

func (c caller) waitFinished(t *testing.T, id string) {
	t.Helper()
	testutil.WaitFor(t, "task "+id+" FINISHED", func() bool {
		res, err := c.grpc.GetExportTask(c.ctx(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
		return err == nil && res.GetTask().GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED
	})
}

// list returns the ids a caller's list shows, over gRPC, after checking
// that REST shows the same.
func (c caller) list(t *testing.T) []string {
	t.Helper()
	res, err := c.grpc.ListExportTasks(c.ctx(), &cwpexportv1.ListExportTasksRequest{PageSize: 1000})
	if err != nil {
		t.Fatalf("%s lists: %v", c.name, err)
	}
	var ids []string
	for _, task := range res.GetTasks() {
		ids = append(ids, task.GetTaskId())
	}
	r := c.rest(t, http.MethodGet, "/v1/export-tasks?pageSize=1000", "")
	var page struct{ Tasks []struct{ TaskID string } }
	if err := json.Unmarshal(r.Body, &page); r.Status != 200 || err != nil {
		t.Fatalf("%s lists over REST: HTTP %d %s", c.name, r.Status, r.Body)
	}
	var restIDs []string
	for _, task := range page.Tasks {
		restIDs = append(restIDs, task.TaskID)
	}
	if !slices.Equal(ids, restIDs) {
		t.Errorf("%s lists %v over gRPC, %v over REST", c.name, ids, restIDs)
	}
	return ids
}

// reads calls Get, Watch and Download of a task over gRPC, and returns the
// three outcomes as comparable text (the task id replaced by ID).
func (c caller) grpcReads(t *testing.T, id string) []string {
	t.Helper()
	text := func(err error) string {
		b, _ := protojson.Marshal(status.Convert(err).Proto())
		return withoutID(string(b), id)
	}
	_, getErr := c.grpc.GetExportTask(c.ctx(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
	ctx, cancel := context.WithTimeout(c.ctx(), 10*time.Second)
	defer cancel()
	var watchErr, dlErr error
	if w, err := c.grpc.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id}); err != nil {
		watchErr = err
	} else {
		_, watchErr = w.Recv()
	}
	if d, err := c.grpc.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: id}); err != nil {
		dlErr = err
	} else {
		_, dlErr = d.Recv()
	}
	return []string{text(getErr), text(watchErr), text(dlErr)}
}

func (c caller) restReads(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	for _, suffix := range []string{"", ":watch", ":download"} {
		r := c.rest(t, http.MethodGet, "/v1/export-tasks/"+id+suffix, "")
		out = append(out, fmt.Sprintf("HTTP %d %s", r.Status, withoutID(string(r.Body), id)))
	}
	return out
}

// withoutID replaces the task id, as a whole number, by ID.
func withoutID(text, id string) string {
	return regexp.MustCompile(`\b`+id+`\b`).ReplaceAllString(text, "ID")
}

// createOutside starts an export in the cloud account without the
// service, as another program sharing the account would.
func createOutside(t *testing.T, env *testserver.Env) string {
	t.Helper()
	c := cloud.New(cloud.Config{Credential: common.NewCredential(testserver.SecretID, testserver.SecretKey), Endpoint: env.EmulatorAddr, Scheme: "HTTP"})
	created, err := c.ExportLicenseDetail(context.Background(), cloud.ExportParams{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(created.TaskID)
}

func exportTasksCalls(env *testserver.Env) int64 {
	return env.Emulator.Stats().Actions[cloud.ActionExportTasks].Requests
}

// checkTeams: alice and carol (team-a) share their tasks, bob (another
// team) sees, watches, downloads and lists only his own and learns nothing
// of the others' (the answers equal those about a task that does not
// exist), olga (operator) sees everything, tasks created outside the
// service included. Nobody but olga makes the service ask the cloud about
// a task it did not create.
func checkTeams(t *testing.T, env *testserver.Env, alice, bob, carol, olga caller) {
	aliceTask, bobTask := alice.export(t), bob.export(t)
	alice.waitFinished(t, aliceTask)
	bob.waitFinished(t, bobTask)
	outside := createOutside(t, env)
	const missing = "999999999"

	before := exportTasksCalls(env)
	wantGRPC, wantREST := bob.grpcReads(t, missing), bob.restReads(t, missing)
	for _, w := range wantGRPC {
		if !strings.Contains(w, `"code":5`) {
			t.Fatalf("bob's read of a task that does not exist: %s, want NotFound", w)
		}
	}
	for _, w := range wantREST {
		if !strings.HasPrefix(w, "HTTP 404 ") {
			t.Fatalf("bob's REST read of a task that does not exist: %s, want 404", w)
		}
	}
	for name, id := range map[string]string{"alice's task": aliceTask, "a task created outside the service": outside} {
		if got := bob.grpcReads(t, id); !slices.Equal(got, wantGRPC) {
			t.Errorf("bob's gRPC reads of %s: %v, want what a missing task gets: %v", name, got, wantGRPC)
		}
		if got := bob.restReads(t, id); !slices.Equal(got, wantREST) {
			t.Errorf("bob's REST reads of %s: %v, want what a missing task gets: %v", name, got, wantREST)
		}
	}
	if after := exportTasksCalls(env); after != before {
		t.Errorf("bob's reads of tasks he may not see made %d cloud calls", after-before)
	}
	if ids := bob.list(t); !slices.Equal(ids, []string{bobTask}) {
		t.Errorf("bob lists %v, want only his task %s", ids, bobTask)
	}

	// carol shares alice's team.
	if res, err := carol.grpc.GetExportTask(carol.ctx(), &cwpexportv1.GetExportTaskRequest{TaskId: aliceTask}); err != nil || res.GetTask().GetCreator() != "alice" {
		t.Errorf("carol reads alice's task: %v %v", res.GetTask(), err)
	}
	if r := carol.rest(t, http.MethodGet, "/v1/export-tasks/"+aliceTask+":download", ""); r.Status != 200 || len(r.Body) == 0 {
		t.Errorf("carol downloads alice's file: HTTP %d", r.Status)
	}
	if got, err := downloadAs(t, carol, aliceTask); len(got) == 0 {
		t.Errorf("carol's gRPC download of alice's file is empty: %v", err)
	}
	if ids := carol.list(t); !slices.Equal(ids, []string{aliceTask}) {
		t.Errorf("carol lists %v, want alice's task %s", ids, aliceTask)
	}

	// olga sees everything.
	for _, id := range []string{aliceTask, bobTask, outside} {
		if _, err := olga.grpc.GetExportTask(olga.ctx(), &cwpexportv1.GetExportTaskRequest{TaskId: id}); err != nil {
			t.Errorf("olga reads task %s: %v", id, err)
		}
		if r := olga.rest(t, http.MethodGet, "/v1/export-tasks/"+id, ""); r.Status != 200 {
			t.Errorf("olga reads task %s over REST: HTTP %d %s", id, r.Status, r.Body)
		}
	}
	if ids := olga.list(t); !slices.Contains(ids, aliceTask) || !slices.Contains(ids, bobTask) {
		t.Errorf("olga lists %v, want alice's and bob's tasks", ids)
	}
}

func downloadAs(t *testing.T, c caller, id string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx(), 20*time.Second)
	defer cancel()
	s, err := c.grpc.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: id})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m.GetData()...)
	}
}

func TestTeamsKeepTheirTasksApartWithTokens(t *testing.T) {
	o := fastApp()
	o.Tokens = parseTokens(t, teamTokens)
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 300 * time.Millisecond}, App: o})
	alice, bob := tokenCaller(env, "alice", aliceToken), tokenCaller(env, "bob", bobToken)
	checkTeams(t, env, alice, bob, tokenCaller(env, "carol", carolToken), tokenCaller(env, "olga", olgaToken))

	// A page token is the caller's own: bob cannot continue alice's list.
	if _, err := alice.grpc.ExportLicenseDetail(alice.ctx(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatal(err)
	}
	page, err := alice.grpc.ListExportTasks(alice.ctx(), &cwpexportv1.ListExportTasksRequest{PageSize: 1})
	if err != nil || page.GetNextPageToken() == "" {
		t.Fatalf("alice's first page: %v %v", page, err)
	}
	if _, err := bob.grpc.ListExportTasks(bob.ctx(), &cwpexportv1.ListExportTasksRequest{PageSize: 1, PageToken: page.GetNextPageToken()}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bob continuing alice's list: %v, want InvalidArgument", err)
	}
	if _, err := alice.grpc.ListExportTasks(alice.ctx(), &cwpexportv1.ListExportTasksRequest{PageSize: 1, PageToken: page.GetNextPageToken()}); err != nil {
		t.Errorf("alice continuing her list: %v", err)
	}
}

func TestTeamsKeepTheirTasksApartWithCertificates(t *testing.T) {
	p := testserver.NewPKI(t)
	o := fastApp()
	o.TLSCertFile, o.TLSKeyFile, o.ClientCAFile = p.CertFile, p.KeyFile, p.CAFile
	// Roles and groups without tokens: certificates name the callers.
	o.Tokens = parseTokens(t, "group team-a alice carol\nrole operator olga\n")
	o.MaxStreamsPerCaller = 1
	var logs lockedBuffer
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: 300 * time.Millisecond}, App: o, ClientTLS: p.ClientTLS(p.Client)})
	alice, bob := certCaller(t, env, p, "alice", p.Issue(t, "alice")), certCaller(t, env, p, "bob", p.Issue(t, "bob"))
	checkTeams(t, env, alice, bob, certCaller(t, env, p, "carol", p.Issue(t, "carol")), certCaller(t, env, p, "olga", p.Issue(t, "olga")))

	// The per-caller stream bound applies to certificate callers.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := alice.export(t)
	first, err := alice.grpc.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err == nil {
		_, err = first.Recv()
	}
	if err != nil {
		t.Fatal(err)
	}
	second, err := alice.grpc.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err == nil {
		_, err = second.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), `caller "alice"`) {
		t.Errorf("alice's second stream: %v, want ResourceExhausted naming her", err)
	}
	// The call log names certificate callers.
	if !strings.Contains(logs.String(), `"caller":"alice"`) || !strings.Contains(logs.String(), `"caller":"bob"`) {
		t.Errorf("the call log does not name the certificate callers")
	}
}

func TestCertificateSANNamesTheCaller(t *testing.T) {
	p := testserver.NewPKI(t)
	o := fastApp()
	o.TLSCertFile, o.TLSKeyFile, o.ClientCAFile, o.CertIdentity = p.CertFile, p.KeyFile, p.CAFile, callerauth.CertSAN
	env := testserver.Start(t, testserver.Config{App: o, ClientTLS: p.ClientTLS(p.Client)})
	alice := certCaller(t, env, p, "alice.team-a.example", p.Issue(t, "ignored", "alice.team-a.example"))
	alice.export(t)
	r := alice.rest(t, http.MethodPost, "/v1/license-detail:export", `{}`)
	if r.Status != 200 || r.JSON(t)["task"].(map[string]any)["creator"] != "alice.team-a.example" {
		t.Errorf("REST export with a SAN certificate: HTTP %d %s", r.Status, r.Body)
	}
	// A certificate without a SAN names nobody.
	nameless := certCaller(t, env, p, "", p.Issue(t, "mallory"))
	if _, err := nameless.grpc.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a certificate without a SAN: %v, want Unauthenticated", err)
	}
	if r := nameless.rest(t, http.MethodGet, "/v1/export-tasks", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("a certificate without a SAN over REST: HTTP %d", r.Status)
	}
}

// TestReloadChangesWhoSeesWhat: a new configuration (a shared group, a
// withdrawn token) applies to the next calls without a restart; one that
// does not pass the checks is refused and the old one stays.
func TestReloadChangesWhoSeesWhat(t *testing.T) {
	o := fastApp()
	o.Tokens = parseTokens(t, "alice "+aliceToken+"\nbob "+bobToken)
	env := testserver.Start(t, testserver.Config{App: o})
	alice, bob := tokenCaller(env, "alice", aliceToken), tokenCaller(env, "bob", bobToken)
	id := alice.export(t)
	get := func(c caller) codes.Code {
		_, err := c.grpc.GetExportTask(c.ctx(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
		return status.Code(err)
	}
	if c := get(bob); c != codes.NotFound {
		t.Fatalf("bob reads alice's task before the reload: %v", c)
	}
	if err := env.Server.Reload(parseTokens(t, "alice "+aliceToken+"\nbob "+bobToken+"\ngroup team alice bob")); err != nil {
		t.Fatal(err)
	}
	if c := get(bob); c != codes.OK {
		t.Errorf("bob reads alice's task after joining her team: %v", c)
	}
	if ids := bob.list(t); !slices.Equal(ids, []string{id}) {
		t.Errorf("bob lists %v after joining alice's team", ids)
	}
	if err := env.Server.Reload(parseTokens(t, "alice "+aliceToken+"\ngroup team alice dave")); err == nil {
		t.Errorf("a configuration naming a caller without a token was accepted")
	}
	if c := get(bob); c != codes.OK {
		t.Errorf("a refused reload changed what bob sees: %v", c)
	}
	if err := env.Server.Reload(parseTokens(t, "alice "+aliceToken)); err != nil {
		t.Fatal(err)
	}
	if c := get(bob); c != codes.Unauthenticated {
		t.Errorf("bob's withdrawn token: %v, want Unauthenticated", c)
	}
	if r := bob.rest(t, http.MethodGet, "/v1/export-tasks/"+id, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("bob's withdrawn token over REST: HTTP %d", r.Status)
	}
}

// TestWithoutAuthenticationEveryoneSeesEverything: the loopback default is
// unchanged: anonymous callers list, read and download every task, tasks
// created outside the service included.
func TestWithoutAuthenticationEveryoneSeesEverything(t *testing.T) {
	env := start(t)
	outside := createOutside(t, env)
	if _, err := env.Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: outside}); err != nil {
		t.Errorf("reading a task created outside the service: %v", err)
	}
	id := finished(t, env)
	if r := env.Do(t, http.MethodGet, "/v1/export-tasks/"+id+":download", ""); r.Status != 200 {
		t.Errorf("download: HTTP %d", r.Status)
	}
	list, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{})
	if err != nil || len(list.GetTasks()) != 1 {
		t.Errorf("list: %v %v", list, err)
	}
}
