package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/pgtest"
)

// The test binary doubles as cwpexportd when this variable is set, so the
// test can signal a real process running the real main.
const asDaemon = "CWPEXPORTD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asDaemon) == "1" {
		os.Args = append([]string{"cwpexportd"}, strings.Fields(os.Getenv("CWPEXPORTD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(pgtest.Run(m))
}

// runMain starts this test binary as the daemon, in dir (whatever it
// writes stays out of the source tree), on loopback ports the kernel
// picks, with JSON logs on the returned stderr, on the embedded emulator,
// with args, and with env (KEY=value) over an environment that names no
// database (the registry is SQLite unless env or args say otherwise).
func runMain(t *testing.T, dir, args string, env ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), asDaemon+"=1",
		"CWPEXPORTD_TEST_ARGS=-grpc-addr 127.0.0.1:0 -rest-addr 127.0.0.1:0 -metrics-addr 127.0.0.1:0 -log-format json "+args,
		"TENCENTCLOUD_SECRET_ID=", "TENCENTCLOUD_SECRET_KEY=", "CWPEXPORT_TOKENS=",
		"DATABASE_URL=", "PGHOST=", "PGHOSTADDR=", "PGDATABASE=", "PGSERVICE=")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stderr
}

// TestSIGTERM: on SIGTERM the daemon ends watch streams with Unavailable and
// a resume hint, and exits 0.
func TestSIGTERM(t *testing.T) {
	d := startEmbedded(t, t.TempDir(), "1h")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := d.client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "resume with WatchExportTask for task "+first.GetTask().GetTaskId()) {
		t.Errorf("watch ended with %v, want Unavailable with a resume hint", err)
	}
	d.waitExit(t)
}

func TestLoadTokens(t *testing.T) {
	path := t.TempDir() + "/tokens"
	if err := os.WriteFile(path, []byte("# ops\nalice alice-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := loadTokens(path); err != nil || tok.Len() != 1 {
		t.Errorf("file: %v, %v", tok, err)
	}
	t.Setenv("CWPEXPORT_TOKENS", "alice=alice-token-0123456789,bob=bob-token-0123456789ab")
	if tok, err := loadTokens(""); err != nil || tok.Len() != 2 {
		t.Errorf("environment: %v, %v", tok, err)
	}
	t.Setenv("CWPEXPORT_TOKENS", "alice=short")
	if _, err := loadTokens(""); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("a short token: %v", err)
	}
	t.Setenv("CWPEXPORT_TOKENS", "")
	if tok, err := loadTokens(""); err != nil || tok != nil {
		t.Errorf("no tokens: %v, %v", tok, err)
	}
}

// TestSIGHUPReloadsCallersAndReopensTheAuditLog: on SIGHUP the daemon reads
// its tokens file again (a new group lets bob see alice's task; a file
// that does not load changes nothing) and reopens its audit log after a
// rotation.
func TestSIGHUPReloadsCallersAndReopensTheAuditLog(t *testing.T) {
	const alice, bob = "alice-token-0123456789ab", "bob-token-0123456789abcd"
	dir := t.TempDir()
	tokens, audit := dir+"/tokens", dir+"/audit.log"
	write := func(text string) {
		if err := os.WriteFile(tokens+".new", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokens+".new", tokens); err != nil { // as editors and config tools replace files
			t.Fatal(err)
		}
	}
	write("alice " + alice + "\nbob " + bob + "\n")
	cmd, stderr := runMain(t, dir, "-emulator-pending 1h -data-dir "+dir+"/data -tokens-file "+tokens+" -audit-log "+audit)
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	logged := make(chan string, 1000)
	go func() {
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			var rec struct{ Msg string }
			if json.Unmarshal(lines.Bytes(), &rec) == nil {
				select {
				case logged <- lines.Text():
				default:
				}
			}
		}
		close(logged)
	}()
	var grpcAddr string
	for line := range logged {
		var rec struct{ Msg, GRPC string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
			grpcAddr = rec.GRPC
			break
		}
	}
	if grpcAddr == "" {
		t.Fatal("the daemon never logged its address")
	}
	waitLog := func(msg string) {
		t.Helper()
		for line := range logged {
			if strings.Contains(line, msg) {
				return
			}
		}
		t.Fatalf("the daemon never logged %q", msg)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := cwpexportv1.NewLicenseExportServiceClient(conn)
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	}
	res, err := client.ExportLicenseDetail(as(alice), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	bobReads := func() codes.Code {
		_, err := client.GetExportTask(as(bob), &cwpexportv1.GetExportTaskRequest{TaskId: id})
		return status.Code(err)
	}
	if c := bobReads(); c != codes.NotFound {
		t.Fatalf("bob reads alice's task before the reload: %v", c)
	}

	write("alice " + alice + "\nbob " + bob + "\ngroup team alice bob\n")
	if err := os.Rename(audit, audit+".1"); err != nil { // a rotation
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("callers' configuration reloaded")
	if c := bobReads(); c != codes.OK {
		t.Errorf("bob reads alice's task after the reload: %v", c)
	}
	if _, err := client.ExportLicenseDetail(as(bob), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatal(err)
	}
	for path, who := range map[string]string{audit + ".1": `"caller":"alice"`, audit: `"caller":"bob"`} {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), `"msg":"audit"`) || !strings.Contains(string(b), who) {
			t.Errorf("%s holds %q (%v), want the audit line of %s", path, b, err, who)
		}
	}

	write("alice " + alice + "\nrole admin alice\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("was not reloaded")
	if c := bobReads(); c != codes.OK {
		t.Errorf("a file that does not load changed what bob sees: %v", c)
	}
}
