package main_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/pgtest"
)

// TestACrashBurnsNoQueuedRequestID kills the server while a burst of
// creations with request ids waits for the export budget, restarts it and
// retries every request id: each gets a task, and the cloud holds one task
// per request id. Only a creation whose cloud call may have started when
// the process died (at 2 calls a second, at most one) may answer
// CREATION_OUTCOME_UNKNOWN. On SQLite and on PostgreSQL.
func TestACrashBurnsNoQueuedRequestID(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := buildDaemon(t)
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			var extra []string
			if engine == "postgres" {
				extra = []string{"-database", pgtest.DSN(t)}
			}
			crashDuringBurst(t, bin, extra)
		})
	}
}

func crashDuringBurst(t *testing.T, bin string, extra []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emu, emuLis := serveEmulator(t, ctx)
	created := func() int64 { return emu.Stats().Actions["ExportLicenseDetail"].TasksCreated }

	dataDir, grpcAddr, restAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	extra = append(extra, "-create-rate", "2")
	d := startDaemon(t, bin, dataDir, grpcAddr, restAddr, emuLis.Addr().String(), extra...)

	const burst = 12
	req := func(i int) *cwpexportv1.ExportLicenseDetailRequest {
		return &cwpexportv1.ExportLicenseDetailRequest{
			Filters:   []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"2"}}},
			RequestId: fmt.Sprintf("0b7c3d2e-5f1a-4c8b-9e6d-%012d", i),
		}
	}
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, ccancel := context.WithTimeout(ctx, 8*time.Second)
			defer ccancel()
			_, _ = d.client.ExportLicenseDetail(cctx, req(i))
		}()
	}
	// Kill it once a few creations reached the cloud and the rest queue.
	for created() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	wg.Wait()
	d.conn.Close()
	atKill := created()

	d = startDaemon(t, bin, dataDir, grpcAddr, restAddr, emuLis.Addr().String(), extra...)
	tasks := map[string]bool{}
	unknown := 0
	for i := range burst {
		task, err := retryUntilAnswered(ctx, d.client, req(i))
		switch {
		case err == nil:
			tasks[task] = true
		case status.Code(err) == codes.Aborted && apierror.Reason(err) == cwpexportv1.ErrorReason_CREATION_OUTCOME_UNKNOWN:
			unknown++
		default:
			t.Fatalf("retry of request %d after the restart: %v", i, err)
		}
	}
	if unknown > 1 {
		t.Errorf("%d request ids answer CREATION_OUTCOME_UNKNOWN after the restart (%d tasks had reached the cloud at the kill); want at most the one whose call may have been under way", unknown, atKill)
	}
	if got := created(); got != int64(len(tasks)) && got != int64(len(tasks)+unknown) {
		t.Errorf("the cloud holds %d tasks for %d request ids answered with %d distinct tasks and %d unknown outcomes: a duplicate", got, burst, len(tasks), unknown)
	}
	if len(tasks)+unknown != burst {
		t.Errorf("%d distinct tasks and %d unknown outcomes for %d request ids", len(tasks), unknown, burst)
	}
}

// retryUntilAnswered sends req until it gets an answer other than a
// retryable refusal (the budget full, a creation still in progress), as a
// client honouring RetryInfo does.
func retryUntilAnswered(ctx context.Context, c cwpexportv1.LicenseExportServiceClient, req *cwpexportv1.ExportLicenseDetailRequest) (string, error) {
	giveUp := time.Now().Add(90 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.ExportLicenseDetail(cctx, req)
		cancel()
		code := status.Code(err)
		if err == nil || (code != codes.Unavailable && code != codes.ResourceExhausted && code != codes.DeadlineExceeded) || time.Now().After(giveUp) {
			return resp.GetTask().GetTaskId(), err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestASlowDatabaseNeverTurnsACreatedTaskIntoAnError runs the server on
// PostgreSQL behind a proxy adding 250 ms each way and sends a burst of
// creations without request ids: every one is answered with its task (an
// error would make its caller retry and create a second export), one cloud
// task each, and every task is listed.
func TestASlowDatabaseNeverTurnsACreatedTaskIntoAnError(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := buildDaemon(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emu, emuLis := serveEmulator(t, ctx)

	dsn := pgtest.DSN(t)
	dataDir, grpcAddr, restAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	// Migrate at full speed first: the schema is not what is under test.
	d := startDaemon(t, bin, dataDir, grpcAddr, restAddr, emuLis.Addr().String(), "-database", dsn)
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	_ = d.cmd.Wait()
	d.conn.Close()
	d = startDaemon(t, bin, dataDir, grpcAddr, restAddr, emuLis.Addr().String(), "-database", pgtest.Delayed(t, dsn, 250*time.Millisecond))

	const burst = 100
	errs := make(chan error, burst)
	ids := make(chan string, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
			defer ccancel()
			resp, err := d.client.ExportLicenseDetail(cctx, &cwpexportv1.ExportLicenseDetailRequest{
				Filters: []*cwpexportv1.Filter{{Name: "LicenseType", Values: []string{"2"}}},
			})
			if err != nil {
				errs <- err
				return
			}
			ids <- resp.GetTask().GetTaskId()
		})
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Errorf("a creation over a slow database: %v (%s)", err, apierror.Reason(err))
	}
	distinct := map[string]bool{}
	for id := range ids {
		distinct[id] = true
	}
	if got := emu.Stats().Actions["ExportLicenseDetail"].TasksCreated; got != burst || len(distinct) != burst {
		t.Errorf("%d cloud tasks, %d distinct tasks answered; want %d each", got, len(distinct), burst)
	}
	// Every task is recorded: listed once the writes land.
	deadline := time.Now().Add(60 * time.Second)
	for {
		page, err := d.client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 100})
		if err == nil && len(page.GetTasks()) == len(distinct) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listed %d tasks (%v), want %d", len(page.GetTasks()), err, len(distinct))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
