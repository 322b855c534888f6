package cloud_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

const (
	testID  = "AKIDcloudtest000000000000000000000"
	testKey = "cloudtest-secret-key-0000000000000"
)

func newEmulator(t *testing.T) *emulator.Emulator {
	t.Helper()
	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{testID: testKey}, PendingFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	return emu
}

func serve(t *testing.T, emu *emulator.Emulator, lis net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- emu.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator: %v", err)
		}
	})
}

func client(addr string) *cloud.Client {
	return cloud.New(cloud.Config{
		Credential: common.NewCredential(testID, testKey), Endpoint: addr, Scheme: "HTTP",
		Timeout: 5 * time.Second, RetryInitial: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, RetryMaxTries: 20,
	})
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// A create whose connection was refused never reached the cloud, so it is
// retried, and succeeds once the cloud listens: one task.
func TestCreateRetriedWhenNotSent(t *testing.T) {
	addr := freeAddr(t)
	emu := newEmulator(t)
	go func() {
		time.Sleep(150 * time.Millisecond)
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		serve(t, emu, lis)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	created, err := client(addr).ExportLicenseDetail(ctx, cloud.ExportParams{})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if created.TaskID <= 0 {
		t.Fatalf("created %+v", created)
	}
	if n := emu.Stats().Actions[cloud.ActionExportLicenseDetail].TasksCreated; n != 1 {
		t.Errorf("tasks created %d, want 1", n)
	}
}

// A create whose answer was lost after the cloud acted is not retried.
func TestCreateNotRetriedAfterSending(t *testing.T) {
	emu := newEmulator(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, emu, lis)
	for _, kind := range []emulator.FaultKind{emulator.FaultReset, emulator.FaultTruncated, emulator.FaultInternalError} {
		before := emu.Stats().Actions[cloud.ActionExportLicenseDetail]
		if err := emu.InjectFault(emulator.Fault{Kind: kind, Action: cloud.ActionExportLicenseDetail, Count: 1, AfterAction: true}); err != nil {
			t.Fatal(err)
		}
		_, err := client(lis.Addr().String()).ExportLicenseDetail(context.Background(), cloud.ExportParams{})
		if !cloud.Transient(err) || cloud.NotSent(err) {
			t.Errorf("%s: error %v, want a transient error that may have reached the cloud", kind, err)
		}
		// With the connection reset the client can learn of the failure
		// before the emulator's handler has counted the request.
		after := emu.Stats().Actions[cloud.ActionExportLicenseDetail]
		for deadline := time.Now().Add(2 * time.Second); after.Requests == before.Requests && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			after = emu.Stats().Actions[cloud.ActionExportLicenseDetail]
		}
		if after.Requests-before.Requests != 1 || after.TasksCreated-before.TasksCreated != 1 {
			t.Errorf("%s: %d requests and %d tasks, want exactly one of each", kind, after.Requests-before.Requests, after.TasksCreated-before.TasksCreated)
		}
	}
}

// Retries stop at the caller's deadline with the transport error.
func TestRetryHonoursDeadline(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client(addr).ExportTasks(ctx, 1)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v with a 300ms deadline", took)
	}
	if err == nil || !(cloud.NotSent(err) || errors.Is(err, context.DeadlineExceeded)) {
		t.Errorf("error %v, want the dial failure or the deadline", err)
	}
}
