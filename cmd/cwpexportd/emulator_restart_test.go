package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// embeddedDaemon is a cwpexportd process on its embedded emulator.
type embeddedDaemon struct {
	cmd      *exec.Cmd
	client   cwpexportv1.LicenseExportServiceClient
	restURL  string
	emulator string // the embedded emulator's base URL
	dataDir  string
	// registryChosenBy is what chose the registry's database, as logged.
	registryChosenBy string
	exited           chan error
}

// startEmbedded runs the real main without cloud credentials on dataDir,
// its exports pending for pending, and reads its addresses from its log.
func startEmbedded(t *testing.T, dataDir, pending string) *embeddedDaemon {
	t.Helper()
	return startEmbeddedWith(t, dataDir, pending, "")
}

// startEmbeddedWith is startEmbedded with more args and environment (see
// runMain).
func startEmbeddedWith(t *testing.T, dataDir, pending, args string, env ...string) *embeddedDaemon {
	t.Helper()
	cmd, stderr := runMain(t, t.TempDir(), "-emulator-pending "+pending+" -min-poll-interval 100ms -data-dir "+dataDir+" "+args, env...)
	d := &embeddedDaemon{cmd: cmd, dataDir: dataDir, exited: make(chan error, 1)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.exited
	})
	lines := bufio.NewScanner(stderr)
	var grpcAddr string
	for grpcAddr == "" && lines.Scan() {
		var rec struct {
			Msg, GRPC, REST, Emulator string
			RegistryChosenBy          string `json:"registry_chosen_by"`
		}
		if json.Unmarshal(lines.Bytes(), &rec) != nil {
			continue
		}
		if rec.Emulator != "" {
			d.emulator = rec.Emulator
		}
		if rec.Msg == "serving" {
			grpcAddr, d.restURL, d.registryChosenBy = rec.GRPC, rec.REST, rec.RegistryChosenBy
		}
	}
	go func() {
		for lines.Scan() { // drain the rest of the log
		}
		d.exited <- cmd.Wait()
	}()
	if grpcAddr == "" || d.emulator == "" {
		t.Fatalf("the daemon never logged its addresses (gRPC %q, emulator %q)", grpcAddr, d.emulator)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d.client = cwpexportv1.NewLicenseExportServiceClient(conn)
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *embeddedDaemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitExit(t)
}

// waitExit waits for the daemon to exit 0.
func (d *embeddedDaemon) waitExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("daemon exited with %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not exit within 15s of SIGTERM")
	}
}

// download fetches a task's file through the service's REST API.
func (d *embeddedDaemon) download(t *testing.T, id string) []byte {
	t.Helper()
	resp, err := http.Get(d.restURL + "/v1/export-tasks/" + id + ":download")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("download of task %s: HTTP %d %v %.300s", id, resp.StatusCode, err, b)
	}
	return b
}

// fileSHA256 asks the embedded emulator's admin endpoint for a task's file.
func (d *embeddedDaemon) fileSHA256(t *testing.T, id string) string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(d.dataDir, "emulator", app.EmulatorAdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, d.emulator+"/_emulator/tasks/"+id+"/file", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info emulator.FileInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("file of task %s: HTTP %d %v", id, resp.StatusCode, err)
	}
	return info.SHA256
}

// watchToEnd follows a task to its end and returns its last message.
func (d *embeddedDaemon) watchToEnd(t *testing.T, ctx context.Context, id string) *cwpexportv1.WatchExportTaskResponse {
	t.Helper()
	stream, err := d.client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	return msgs[len(msgs)-1]
}

func taskNumber(t *testing.T, id string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hexSHA256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestEmbeddedEmulatorSurvivesRestart: on the embedded emulator, an export
// finished before a restart still downloads byte-exact after it, and one
// still pending at the restart finishes after it.
func TestEmbeddedEmulatorSurvivesRestart(t *testing.T) {
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req := &cwpexportv1.ExportLicenseDetailRequest{Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"1"}}}}

	d := startEmbedded(t, dataDir, "2s")
	first, err := d.client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	done := first.GetTask().GetTaskId()
	if last := d.watchToEnd(t, ctx, done); last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("export %s ended %v", done, last.GetTask())
	}
	file := d.download(t, done)
	if len(file) == 0 || hexSHA256(file) != d.fileSHA256(t, done) {
		t.Fatalf("the service downloaded %d bytes that are not the emulator's file", len(file))
	}
	second, err := d.client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	pending := second.GetTask().GetTaskId()
	got, err := d.client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: pending})
	if err != nil || got.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING {
		t.Fatalf("export %s before the restart: %v %v, want PENDING", pending, got.GetTask(), err)
	}
	emulatorURL := d.emulator
	d.stop(t)

	d = startEmbedded(t, dataDir, "2s")
	if d.emulator != emulatorURL {
		t.Logf("the emulator's port was taken: %s, then %s", emulatorURL, d.emulator)
	}
	if again := d.download(t, done); hexSHA256(again) != hexSHA256(file) {
		t.Errorf("after the restart export %s downloads %d other bytes (was %d)", done, len(again), len(file))
	}
	last := d.watchToEnd(t, ctx, pending)
	if last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("export %s pending at the restart ended %v", pending, last.GetTask())
	}
	// Same request, same data set: the same file.
	if b := d.download(t, pending); hexSHA256(b) != hexSHA256(file) {
		t.Errorf("export %s, pending at the restart, downloads other bytes than the same export before it", pending)
	}
	third, err := d.client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if n, p := taskNumber(t, third.GetTask().GetTaskId()), taskNumber(t, pending); n <= p {
		t.Errorf("new export %s after the restart, want an id above %s", third.GetTask().GetTaskId(), pending)
	}
	d.stop(t)
}
