package main_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// daemon is a cwpexportd process.
type daemon struct {
	cmd    *exec.Cmd
	client cwpexportv1.LicenseExportServiceClient
	conn   *grpc.ClientConn
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// buildDaemon builds cwpexportd into the test's directory.
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cwpexportd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// serveEmulator serves an emulator whose tasks stay pending until told,
// on loopback, until ctx ends.
func serveEmulator(t *testing.T, ctx context.Context) (*emulator.Emulator, net.Listener) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{testserver.SecretID: testserver.SecretKey}, PendingFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = emu.Serve(ctx, lis) }()
	return emu, lis
}

// startDaemon starts bin on dataDir and the emulator at emuAddr, with more
// flags in extra, and waits until it answers.
func startDaemon(t *testing.T, bin, dataDir, grpcAddr, restAddr, emuAddr string, extra ...string) *daemon {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-data-dir", dataDir, "-grpc-addr", grpcAddr, "-rest-addr", restAddr,
		"-metrics-addr", "127.0.0.1:0",
		"-cloud-endpoint", emuAddr, "-cloud-scheme", "HTTP", "-insecure-allow-private-cloud", "-min-poll-interval", "100ms", "-heartbeat", "200ms", "-log-format", "json"}, extra...)...)
	cmd.Env = append(os.Environ(), "TENCENTCLOUD_SECRET_ID="+testserver.SecretID, "TENCENTCLOUD_SECRET_KEY="+testserver.SecretKey)
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &daemon{cmd: cmd, client: cwpexportv1.NewLicenseExportServiceClient(conn), conn: conn}
	// A minute: some tests put the database far away.
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := d.client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 1})
		cancel()
		if err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("cwpexportd did not answer within a minute: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTasksSurviveSIGKILL kills the server process right after a creation
// and checks that the restarted process lists the task, follows it to
// FINISHED by itself, resumes a watch, and answers a retried creation with
// the same task without a second cloud call.
func TestTasksSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := buildDaemon(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emu, emuLis := serveEmulator(t, ctx)

	dataDir := t.TempDir()
	grpcAddr, restAddr := freeAddr(t), freeAddr(t)
	d := startDaemon(t, bin, dataDir, grpcAddr, restAddr, emuLis.Addr().String())
	req := &cwpexportv1.ExportLicenseDetailRequest{
		Filters:   []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"2"}}},
		RequestId: "0b7c3d2e-5f1a-4c8b-9e6d-7a1b2c3d4e5f",
	}
	first, err := d.client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id := first.GetTask().GetTaskId()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	d.conn.Close()

	// The export finishes while the server is down.
	taskID, _ := strconv.ParseInt(id, 10, 64)
	if err := emu.FinishTask(taskID); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, bin, dataDir, grpcAddr, restAddr, emuLis.Addr().String())

	// Listed, and followed to FINISHED by the registry alone (no watcher).
	deadline := time.Now().Add(15 * time.Second)
	for {
		page, err := d.client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.GetTasks()) != 1 || page.GetTasks()[0].GetTaskId() != id || page.GetTasks()[0].GetRequestId() != req.GetRequestId() {
			t.Fatalf("after restart the list holds %v, want task %s", page.GetTasks(), id)
		}
		if page.GetTasks()[0].GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry still reports %v after 15s", page.GetTasks()[0].GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A client reconnecting with a watch continues to the end.
	stream, err := d.client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	msgs := testserver.RecvAll(t, stream.Recv)
	if last := msgs[len(msgs)-1]; last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		t.Fatalf("watch ended with %v", last)
	}

	// The client that lost the first answer retries: same task, no new one.
	again, err := d.client.ExportLicenseDetail(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetTask().GetTaskId() != id {
		t.Fatalf("retry after restart answered task %s, want %s", again.GetTask().GetTaskId(), id)
	}
	if n := emu.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 1 {
		t.Fatalf("the cloud created %d tasks, want 1", n)
	}
}
