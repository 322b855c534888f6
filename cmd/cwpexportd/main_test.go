package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
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
	os.Exit(m.Run())
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
