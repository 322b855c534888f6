package e2e_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/testserver"
)

const (
	aliceToken = "alice-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdef00"
)

func testTokens(t *testing.T) *callerauth.Tokens {
	t.Helper()
	tok, err := callerauth.ParseTokens("# callers\nalice " + aliceToken + "\nbob=" + bobToken + "\n")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCallerAuthentication(t *testing.T) {
	env := testserver.Start(t, testserver.Config{App: app.Options{Tokens: testTokens(t)}})
	grpcCall := func(header string) codes.Code {
		ctx := context.Background()
		if header != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", header)
		}
		_, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
		if st := status.Convert(err); st.Code() == codes.Unauthenticated && errorInfo(st).GetReason() != "UNAUTHENTICATED" {
			t.Errorf("gRPC with %q: %v without the reason UNAUTHENTICATED", header, err)
		}
		return status.Code(err)
	}
	restCall := func(header string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		r := do(t, env.HTTP, req)
		return r.Status, string(r.Body)
	}
	for _, bad := range []string{"", "Bearer wrong-token-0000000000000", "Basic " + aliceToken, aliceToken, "Bearer"} {
		if c := grpcCall(bad); c != codes.Unauthenticated {
			t.Errorf("gRPC with %q: %v, want Unauthenticated", bad, c)
		}
		code, body := restCall(bad)
		if code != http.StatusUnauthorized || !strings.Contains(body, `"code":16`) || restReason([]byte(body)) == "" {
			t.Errorf("REST with %q: HTTP %d %s, want 401 with a google.rpc.Status and its ErrorInfo", bad, code, body)
		}
		if strings.Contains(body, aliceToken) {
			t.Errorf("the answer quotes a token: %s", body)
		}
	}
	if n := env.Emulator.Stats().Actions[cloud.ActionExportLicenseDetail].Requests; n != 0 {
		t.Fatalf("unauthenticated calls reached the cloud %d times", n)
	}
	if c := grpcCall("Bearer " + aliceToken); c != codes.OK {
		t.Errorf("gRPC with alice's token: %v", c)
	}
	if code, body := restCall("bearer " + bobToken); code != http.StatusOK {
		t.Errorf("REST with bob's token: HTTP %d %s", code, body)
	}
	// Streams are covered too.
	s, err := env.Client.WatchExportTask(context.Background(), &cwpexportv1.WatchExportTaskRequest{TaskId: "1"})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("watch without a token: %v", err)
	}
	// Health checks stay open on both ports.
	if res, err := grpc_health_v1.NewHealthClient(env.Conn).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{}); err != nil || res.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health without a token: %v %v", res, err)
	}
	if r := env.Do(t, http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("/healthz without a token: HTTP %d", r.Status)
	}
}

func TestParseTokensRejectsBadFiles(t *testing.T) {
	for _, text := range []string{"", "# only a comment", "alice short", "alice " + aliceToken + "\nalice " + bobToken, "alice " + aliceToken + "\nbob " + aliceToken, "alice " + aliceToken + " extra"} {
		_, err := callerauth.ParseTokens(text)
		if err == nil {
			t.Errorf("ParseTokens(%q) succeeded", text)
			continue
		}
		if strings.Contains(err.Error(), aliceToken) || strings.Contains(err.Error(), bobToken) || strings.Contains(err.Error(), "short") {
			t.Errorf("error quotes a token: %v", err)
		}
	}
}

func TestTLS(t *testing.T) {
	p := testserver.NewPKI(t)
	env := testserver.Start(t, testserver.Config{App: app.Options{TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile}, ClientTLS: p.ClientTLS()})
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{}`); r.Status != http.StatusOK {
		t.Fatalf("REST over TLS: HTTP %d %s", r.Status, r.Body)
	}
	// Plaintext clients are not served: the TLS server answers a plaintext
	// request with a 400, never the API.
	if resp, err := http.Get(strings.Replace(env.RESTURL, "https://", "http://", 1) + "/v1/export-tasks/1"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a plaintext REST request was answered HTTP %d", resp.StatusCode)
		}
	}
	if code := plaintextGRPC(t, env.GRPCAddr); code != codes.Unavailable {
		t.Errorf("plaintext gRPC: %v, want Unavailable", code)
	}
}

func plaintextGRPC(t *testing.T, addr string) codes.Code {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cwpexportv1.NewLicenseExportServiceClient(conn).GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: "1"})
	return status.Code(err)
}

func TestMutualTLS(t *testing.T) {
	p := testserver.NewPKI(t)
	env := testserver.Start(t, testserver.Config{
		App:       app.Options{TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile, ClientCAFile: p.CAFile},
		ClientTLS: p.ClientTLS(p.Client),
	})
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	if r := env.Do(t, http.MethodPost, "/v1/license-detail:export", `{}`); r.Status != http.StatusOK {
		t.Fatalf("REST with a client certificate: HTTP %d %s", r.Status, r.Body)
	}
	for name, cfg := range map[string]*tls.Config{"no certificate": p.ClientTLS(), "certificate of another CA": p.ClientTLS(p.Rogue)} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		if resp, err := hc.Get(env.RESTURL + "/v1/export-tasks/1"); err == nil {
			resp.Body.Close()
			t.Errorf("REST with %s: HTTP %d, want a failed handshake", name, resp.StatusCode)
		}
		hc.CloseIdleConnections()
		conn, err := grpc.NewClient(env.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cwpexportv1.NewLicenseExportServiceClient(conn).GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: "1"})
		cancel()
		conn.Close()
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Errorf("gRPC with %s: %v, want a failed handshake", name, err)
		}
	}
}

// remoteListener is a loopback listener that reports a non-loopback
// address, so the start-up check can be tested without exposing a port.
type remoteListener struct{ net.Listener }

func (remoteListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 9090} }

func TestRefusesUnauthenticatedRemoteListener(t *testing.T) {
	serve := func(o app.Options) error {
		o.SecretID, o.SecretKey, o.Endpoint, o.Scheme = testserver.SecretID, testserver.SecretKey, "127.0.0.1:1", "HTTP"
		o.AllowPrivateCloud = true
		o.DataDir = t.TempDir()
		srv, err := app.New(o)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := net.Listen("tcp", "127.0.0.1:0")
		r, _ := net.Listen("tcp", "127.0.0.1:0")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return srv.Serve(ctx, remoteListener{g}, r)
	}
	err := serve(app.Options{})
	if err == nil || !strings.Contains(err.Error(), "-insecure-allow-unauthenticated-remote") || !strings.Contains(err.Error(), "192.0.2.10") {
		t.Fatalf("Serve on a remote address without authentication: %v", err)
	}
	if err := serve(app.Options{AllowUnauthenticatedRemote: true}); err != nil {
		t.Errorf("with the explicit flag: %v", err)
	}
	// Tokens would cross the network in cleartext: refused without TLS.
	if err := serve(app.Options{Tokens: testTokens(t)}); err == nil || !strings.Contains(err.Error(), "-insecure-allow-cleartext-tokens") {
		t.Errorf("tokens without TLS on a remote address: %v", err)
	}
	if err := serve(app.Options{Tokens: testTokens(t), AllowCleartextTokens: true}); err != nil {
		t.Errorf("tokens in cleartext, explicitly allowed: %v", err)
	}
	p := testserver.NewPKI(t)
	if err := serve(app.Options{Tokens: testTokens(t), TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile}); err != nil {
		t.Errorf("tokens over TLS: %v", err)
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) testserver.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return testserver.Response{Status: resp.StatusCode, Body: []byte(b.String()), Header: resp.Header}
}

// TestCreatorIsRecorded: the registry records which authenticated caller
// created each task, with and without a request_id.
func TestCreatorIsRecorded(t *testing.T) {
	env := testserver.Start(t, testserver.Config{App: app.Options{Tokens: testTokens(t)}, Token: aliceToken})
	ctx := context.Background()
	for _, rid := range []string{"", "9b2f3c1e-6d4a-4f7b-8e21-5a0c9d8e7f61"} {
		res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{RequestId: rid})
		if err != nil {
			t.Fatal(err)
		}
		if c := res.GetTask().GetCreator(); c != "alice" {
			t.Errorf("request_id %q: creator %q, want alice", rid, c)
		}
	}
	list, err := env.Client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range list.GetTasks() {
		if task.GetCreator() != "alice" {
			t.Errorf("listed task %s has creator %q", task.GetTaskId(), task.GetCreator())
		}
	}
	if len(list.GetTasks()) != 2 {
		t.Errorf("listed %d tasks, want 2", len(list.GetTasks()))
	}

	// Request ids are each caller's own: bob's use of the id alice used is
	// an export of his own, and tells him nothing of hers.
	conn, err := grpc.NewClient(env.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bob := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+bobToken)
	res, err := cwpexportv1.NewLicenseExportServiceClient(conn).ExportLicenseDetail(bob, &cwpexportv1.ExportLicenseDetailRequest{RequestId: "9b2f3c1e-6d4a-4f7b-8e21-5a0c9d8e7f61"})
	if err != nil || res.GetTask().GetCreator() != "bob" {
		t.Fatalf("bob using the request_id alice used: %v %v, want a task of his own", res, err)
	}
	for _, task := range list.GetTasks() {
		if task.GetTaskId() == res.GetTask().GetTaskId() {
			t.Fatalf("bob was given alice's task %s", task.GetTaskId())
		}
	}
}

// TestCallLogNamesTheAuthenticatedCaller: the call log, which also logs the
// calls authentication refuses, names the caller a token authenticated.
func TestCallLogNamesTheAuthenticatedCaller(t *testing.T) {
	var logs lockedBuffer
	o := fastApp()
	o.Tokens, o.Logger = testTokens(t), slog.New(slog.NewJSONHandler(&logs, nil))
	env := testserver.Start(t, testserver.Config{App: o, Token: aliceToken})
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bobToken)
	if r := do(t, env.HTTP, req); r.Status != http.StatusOK {
		t.Fatalf("bob over REST: HTTP %d", r.Status)
	}
	req, _ = http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer wrong")
	do(t, env.HTTP, req)

	seen := map[string]string{} // caller -> code
	var refused bool
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct{ Msg, Method, Caller, Peer, Code, Kind string }
		// The gateway refuses a bad token before the body is read; the
		// edge logs failed authentications per peer, in aggregate.
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "refused at the edge" {
			refused = refused || (rec.Kind == "authentication failed" && rec.Peer == "127.0.0.1")
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "call" ||
			!strings.HasSuffix(rec.Method, "/ExportLicenseDetail") && rec.Method != "POST /v1/license-detail:export" {
			continue
		}
		if rec.Peer == "" {
			t.Errorf("call line without a peer: %s", line)
		}
		seen[rec.Caller] = rec.Code
	}
	if seen["alice"] != "OK" || seen["bob"] != "OK" {
		t.Errorf("calls logged by caller: %v, want alice and bob OK", seen)
	}
	if !refused {
		t.Errorf("the refused call is not logged with its address: %v", seen)
	}
}
