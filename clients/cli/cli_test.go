package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/clients/cli"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// run runs the CLI in-process against env, as `cwpexport ARGS --addr ...`.
func run(t *testing.T, env *testserver.Env, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if env != nil {
		args = append(args, "--addr", env.GRPCAddr)
	}
	code = cli.Run(ctx, args, cli.IO{Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String()
}

func start(t *testing.T) *testserver.Env {
	return testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{PendingFor: 300 * time.Millisecond},
		App:      app.Options{MinPollInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond},
	})
}

func TestExportWatchDownload(t *testing.T) {
	env := start(t)
	file := filepath.Join(t.TempDir(), "out.csv")
	code, out, errOut := run(t, env, "export", "--filter", "LicenseType=1", "--tag", "env=prod", "--watch", "--download", file)
	if code != cli.ExitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.Contains(lines[0], "SNAPSHOT") || !strings.Contains(lines[0], "PENDING") || !strings.Contains(lines[0], "polls 0") {
		t.Errorf("first line %q, want the pending snapshot with its polls", lines[0])
	}
	var url string
	for _, l := range lines {
		if u, ok := strings.CutPrefix(l, "download: "); ok {
			url = u
		}
	}
	if !strings.Contains(out, "STATE_CHANGED  task") || !strings.Contains(out, "FINISHED") || url == "" {
		t.Fatalf("output lacks the FINISHED line and the download URL:\n%s", out)
	}
	if !strings.Contains(lines[len(lines)-1], "saved ") {
		t.Errorf("last line %q, want the saved file", lines[len(lines)-1])
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want, _ := io.ReadAll(resp.Body)
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Fatalf("saved %d bytes, the cloud's file has %d (equal: %v)", len(got), len(want), bytes.Equal(got, want))
	}
	if strings.Contains(string(got), "env:dev") {
		t.Errorf("the file has rows the tag filter excludes")
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("download left %d files behind, want only out.csv", len(entries))
	}
}

func TestExitCodes(t *testing.T) {
	env := start(t)
	t.Run("export ERROR", func(t *testing.T) {
		code, out, errOut := run(t, env, "export", "--filter", "Keywords=EMULATOR_FAIL", "--watch")
		if code != cli.ExitExportError || !strings.Contains(out, "ERROR") || !strings.Contains(errOut, "ended in ERROR") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("invalid input from the service", func(t *testing.T) {
		before := env.Emulator.Stats()
		code, _, errOut := run(t, env, "export", "--filter", "Bogus=1", "--month", "2026-13")
		if code != cli.ExitInvalid {
			t.Errorf("exit %d, want %d; stderr %s", code, cli.ExitInvalid, errOut)
		}
		for _, field := range []string{"filters[0].name:", "export_month:"} {
			if !strings.Contains(errOut, "\n  "+field) {
				t.Errorf("stderr lacks the violation of %s:\n%s", field, errOut)
			}
		}
		b, a := before.Actions["ExportLicenseDetail"].Requests, env.Emulator.Stats().Actions["ExportLicenseDetail"].Requests
		if a != b {
			t.Errorf("invalid input reached the cloud: %d exports before, %d after", b, a)
		}
	})
	t.Run("invalid flags", func(t *testing.T) {
		for _, args := range [][]string{{"export", "--filter", "NoEquals"}, {"get"}, {"export", "--nope"}, {"list", "--state", "odd"}, {"get", "1", "-o", "yaml"}} {
			if code, _, errOut := run(t, env, args...); code != cli.ExitInvalid {
				t.Errorf("%v: exit %d, want %d; stderr %s", args, code, cli.ExitInvalid, errOut)
			}
		}
	})
	t.Run("unknown task", func(t *testing.T) {
		code, _, errOut := run(t, env, "get", "987654")
		if code != cli.ExitNotFound || !strings.Contains(errOut, "cloud RequestId:") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		code, _, errOut := run(t, nil, "get", "1", "--addr", addr)
		if code != cli.ExitUnreachable || !strings.Contains(errOut, "is the service running?") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestJSONOutput(t *testing.T) {
	env := start(t)
	code, out, errOut := run(t, env, "export", "-o", "json")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var created struct {
		Task struct{ TaskID, State string } `json:"task"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Task.TaskID == "" || created.Task.State != "EXPORT_TASK_STATE_PENDING" {
		t.Fatalf("export -o json printed %q (%v)", out, err)
	}
	code, out, errOut = run(t, env, "watch", created.Task.TaskID, "-o", "json")
	if code != cli.ExitOK {
		t.Fatalf("watch exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct {
		Kind string `json:"kind"`
		Task struct {
			State       string `json:"state"`
			DownloadURL string `json:"downloadUrl"`
		} `json:"task"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("watch line is not JSON: %v: %s", err, lines[len(lines)-1])
	}
	if last.Task.State != "EXPORT_TASK_STATE_FINISHED" || last.Task.DownloadURL == "" {
		t.Errorf("last watch line %+v, want FINISHED with a URL", last)
	}
	code, out, _ = run(t, env, "get", created.Task.TaskID, "-o", "json")
	if code != cli.ExitOK || !json.Valid([]byte(out)) || !strings.Contains(out, "EXPORT_TASK_STATE_FINISHED") {
		t.Errorf("get -o json: exit %d, %q", code, out)
	}
	code, out, _ = run(t, env, "get", created.Task.TaskID)
	if code != cli.ExitOK || !strings.HasPrefix(out, "task "+created.Task.TaskID+"  FINISHED  polls ") {
		t.Errorf("get: exit %d, %q", code, out)
	}
}

func TestList(t *testing.T) {
	env := start(t)
	ctx := context.Background()
	res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, env, "list")
	if code != cli.ExitOK || !strings.HasPrefix(out, "TASK") || !strings.Contains(out, "\n"+res.GetTask().GetTaskId()+" ") {
		t.Errorf("list: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = run(t, env, "list", "-o", "json", "--all", "--page-size", "1")
	if code != cli.ExitOK || !strings.Contains(out, `"taskId":"`+res.GetTask().GetTaskId()+`"`) {
		t.Errorf("list -o json: exit %d, %q", code, out)
	}
}

func TestDownloadCommand(t *testing.T) {
	env := start(t)
	id := newTask(t, env)
	file := filepath.Join(t.TempDir(), "f.csv")
	if code, _, errOut := run(t, env, "watch", id, "--download", file); code != cli.ExitOK {
		t.Fatalf("watch --download: exit %d: %s", code, errOut)
	}
	first, _ := os.ReadFile(file)
	again := filepath.Join(t.TempDir(), "again.csv")
	code, out, errOut := run(t, env, "download", id, again, "-o", "json")
	if code != cli.ExitOK {
		t.Fatalf("download: exit %d: %s", code, errOut)
	}
	var saved struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal([]byte(out), &saved); err != nil || saved.Bytes != int64(len(first)) || len(saved.SHA256) != 64 {
		t.Errorf("download -o json printed %q, want %d bytes and a SHA-256", out, len(first))
	}
	second, _ := os.ReadFile(again)
	if len(first) == 0 || !bytes.Equal(first, second) {
		t.Errorf("two downloads of one file differ (%d and %d bytes)", len(first), len(second))
	}
	if code, _, _ := run(t, env, "download", "987654", filepath.Join(t.TempDir(), "x")); code != cli.ExitNotFound {
		t.Errorf("download of an unknown task: exit %d, want %d", code, cli.ExitNotFound)
	}
}

// TestLiveOutput renders as on a terminal: one line redrawn in place, then
// the byte progress bar of the download.
func TestLiveOutput(t *testing.T) {
	env := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	file := filepath.Join(t.TempDir(), "live.csv")
	code := cli.Run(ctx, []string{"export", "--watch", "--download", file, "--addr", env.GRPCAddr},
		cli.IO{Stdout: &out, Stderr: &errOut, Terminal: true})
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	s := out.String()
	redraws := strings.Count(s, "\r\x1b[Ktask ")
	if redraws < 2 || !strings.Contains(s, "\r\x1b[Ktask 1  PENDING  polls 0") || !strings.Contains(s, "FINISHED  polls ") {
		t.Errorf("live output lacks the redrawn PENDING and FINISHED lines (%d redraws): %q", redraws, s)
	}
	if !strings.Contains(s, "100%") || !strings.Contains(s, "kB") || !strings.Contains(s, "saved ") {
		t.Errorf("live output lacks the byte progress bar: %q", s)
	}
}

func TestTLSAndBearerToken(t *testing.T) {
	const token = "cli-test-token-0123456789abcdef"
	tokens, err := callerauth.ParseTokens("alice " + token)
	if err != nil {
		t.Fatal(err)
	}
	p := testserver.NewPKI(t)
	env := testserver.Start(t, testserver.Config{
		App:       app.Options{TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile, ClientCAFile: p.CAFile, Tokens: tokens},
		ClientTLS: p.ClientTLS(p.Client), Token: token,
	})
	mtls := []string{"export", "--ca-file", p.CAFile, "--cert-file", p.ClientCertFile, "--key-file", p.ClientKeyFile}

	t.Setenv(cli.TokenEnv, "")
	if code, _, errOut := run(t, env, mtls...); code != cli.ExitService || !strings.Contains(errOut, "Unauthenticated") {
		t.Errorf("without a token: exit %d, %s", code, errOut)
	}
	t.Setenv(cli.TokenEnv, token)
	if code, out, errOut := run(t, env, mtls...); code != cli.ExitOK || !strings.Contains(out, "PENDING") {
		t.Errorf("with TLS, client certificate and token: exit %d, %s %s", code, out, errOut)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(cli.TokenEnv, "")
	if code, _, errOut := run(t, env, append(mtls, "--token-file", tokenFile)...); code != cli.ExitOK {
		t.Errorf("with --token-file: exit %d, %s", code, errOut)
	}
	t.Setenv(cli.TokenEnv, token)
	if code, _, errOut := run(t, env, "export", "--ca-file", p.CAFile); code != cli.ExitUnreachable {
		t.Errorf("without the client certificate: exit %d, %s; want the handshake refused", code, errOut)
	}
	if code, _, errOut := run(t, env, "export", "--cert-file", p.ClientCertFile); code != cli.ExitInvalid {
		t.Errorf("--cert-file without --key-file: exit %d, %s", code, errOut)
	}
}

func TestTokenRefusedOverPlaintextToARemoteAddress(t *testing.T) {
	t.Setenv(cli.TokenEnv, "cli-test-token-0123456789abcdef")
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), []string{"list", "--addr", "192.0.2.1:9090"}, cli.IO{Stdout: &out, Stderr: &errOut})
	if code != cli.ExitInvalid || !strings.Contains(errOut.String(), "--insecure-plaintext-token") {
		t.Errorf("exit %d, %s; want 2 and the flag named", code, errOut.String())
	}
}
