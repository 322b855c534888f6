package cli_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/clients/cli"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// TestWatchResumesAcrossARestart stops the service (SIGTERM: it drains,
// ending the watch with Unavailable and a resume hint) while `cwpexport
// watch` follows a task, starts another process on the same data directory
// and port, and checks that the CLI resumed the watch by itself and
// followed the task to FINISHED.
func TestWatchResumesAcrossARestart(t *testing.T) {
	c := startCloud(t, nil)
	svc := startService(t, c)
	ctx := context.Background()
	res, err := svc.client(t).ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()

	r := launch(t, "watch", id, "--addr", svc.grpcAddr)
	r.waitFor(t, "SNAPSHOT", 1)
	rideThrough(t, r, svc, c, id, syscall.SIGTERM)

	if code := r.exit(t); code != cli.ExitOK {
		t.Fatalf("exit %d\n%s\nstderr: %s", code, r.out, r.errOut)
	}
	out := r.out.String()
	t.Logf("cwpexport watch:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "download: ") {
		t.Errorf("last line %q, want the download URL of the FINISHED task", last)
	}
	if !regexp.MustCompile(`RECONNECTING +task ` + id + `  reconnecting in .* after Unavailable: the server is shutting down`).MatchString(out) {
		t.Errorf("no reconnecting line naming the drain:\n%s", out)
	}
	if n := c.emu.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 1 {
		t.Errorf("the cloud holds %d tasks, want 1", n)
	}
}

// rideThrough stops svc with sig while r follows task id, waits until the
// CLI says it is reconnecting, starts the service again on the same port
// and data directory, waits for the resumed watch's SNAPSHOT and ends the
// task in the cloud.
func rideThrough(t *testing.T, r *running, svc *service, c *cloud, id string, sig syscall.Signal) {
	t.Helper()
	svc.stop(t, sig)
	r.waitFor(t, "RECONNECTING", 1)
	restart(t, svc, c)
	r.waitFor(t, "SNAPSHOT", 2)
	finish(t, c, id)
}

// TestExportWatchResumesAfterAKill kills the service (SIGKILL: the
// connection breaks, nothing drains) while `cwpexport export --watch
// --download` follows the export it started; after another process starts
// on the same data directory and port, the CLI resumes the watch by task
// id, saves the file, and the cloud holds one export.
func TestExportWatchResumesAfterAKill(t *testing.T) {
	c := startCloud(t, nil)
	svc := startService(t, c)
	file := filepath.Join(t.TempDir(), "out.csv")

	r := launch(t, "export", "--filter", "LicenseType=2", "--watch", "--download", file, "--addr", svc.grpcAddr)
	r.waitFor(t, "SNAPSHOT", 1)
	m := regexp.MustCompile(`SNAPSHOT +task (\d+)`).FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("no task id in %q", r.out)
	}
	id := m[1]
	rideThrough(t, r, svc, c, id, syscall.SIGKILL)

	if code := r.exit(t); code != cli.ExitOK {
		t.Fatalf("exit %d\n%s\nstderr: %s", code, r.out, r.errOut)
	}
	t.Logf("cwpexport export --watch --download:\n%s", r.out)
	if !strings.Contains(r.out.String(), "after Unavailable") {
		t.Errorf("no reconnecting line naming Unavailable:\n%s", r.out)
	}
	checkFile(t, c, id, file)
	if n := c.emu.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 1 {
		t.Errorf("the cloud holds %d tasks, want 1: the export was started again", n)
	}
}

// TestReconnectionIsBounded kills the service for good under two watches:
// one with --reconnect-timeout 0 stops at the break, the other gives up
// after its bound and says so; both exit as an unreachable service does.
func TestReconnectionIsBounded(t *testing.T) {
	c := startCloud(t, nil)
	svc := startService(t, c)
	res, err := svc.client(t).ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	off := launch(t, "watch", id, "--addr", svc.grpcAddr, "--reconnect-timeout", "0")
	bounded := launch(t, "watch", id, "--addr", svc.grpcAddr, "--reconnect-timeout", "2s")
	off.waitFor(t, "SNAPSHOT", 1)
	bounded.waitFor(t, "SNAPSHOT", 1)
	svc.stop(t, syscall.SIGKILL)

	if code := off.exit(t); code != cli.ExitUnreachable || strings.Contains(off.out.String(), "RECONNECTING") {
		t.Errorf("--reconnect-timeout 0: exit %d, want %d without reconnecting\n%s\nstderr: %s", code, cli.ExitUnreachable, off.out, off.errOut)
	}
	if code := bounded.exit(t); code != cli.ExitUnreachable || !strings.Contains(bounded.out.String(), "RECONNECTING") ||
		!strings.Contains(bounded.errOut.String(), "cwpexport: stopped reconnecting to task "+id+": gave up after ") {
		t.Errorf("--reconnect-timeout 2s: exit %d, want %d after reconnecting\n%s\nstderr: %s", code, cli.ExitUnreachable, bounded.out, bounded.errOut)
	}
}

// TestDownloadStartsAgainAfterABreak cuts the first transfer of the file
// from the object storage short, so that the service ends DownloadExport
// with Unavailable after the first chunks; the CLI starts the download again
// from the beginning and saves exactly the file's bytes.
func TestDownloadStartsAgainAfterABreak(t *testing.T) {
	var cuts atomic.Int32
	c := startCloud(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/downloads/") && cuts.Add(1) == 1 {
				w = &cutWriter{ResponseWriter: w, left: 300 << 10}
			}
			next.ServeHTTP(w, r)
		})
	})
	svc := startService(t, c)
	ctx := context.Background()
	res, err := svc.client(t).ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{
		Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{"EMULATOR_BYTES_2000000"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	finish(t, c, id)
	file := filepath.Join(t.TempDir(), "big.csv")

	r := launch(t, "watch", id, "--download", file, "--addr", svc.grpcAddr)
	if code := r.exit(t); code != cli.ExitOK {
		t.Fatalf("exit %d\n%s\nstderr: %s", code, r.out, r.errOut)
	}
	out := r.out.String()
	m := regexp.MustCompile(`download of task \d+ broke off after (\d+) bytes \(Unavailable: .*\); starting again from the beginning`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no restart notice:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("the first transfer broke off after 0 bytes; the test wants a partial file to be discarded")
	}
	if got := c.emu.Stats().Downloads; got != 2 {
		t.Errorf("the object storage served %d downloads, want 2 (the broken one and the restart)", got)
	}
	checkFile(t, c, id, file)
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("the download left %d files behind, want only big.csv", len(entries))
	}
}

// cutWriter aborts a response after left bytes, as a connection to the
// object storage that breaks does.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) <= c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.left])
	http.NewResponseController(c.ResponseWriter).Flush()
	panic(http.ErrAbortHandler) // net/http closes the connection mid-body
}

// Unwrap lets http.ResponseController reach the connection.
func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// TestAddressListFailsOver gives --addr a dead address beside the live
// one, in both orders: every command works, its calls going to the live one.
func TestAddressListFailsOver(t *testing.T) {
	env := start(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	file := filepath.Join(t.TempDir(), "out.csv")

	code, out, errOut := run(t, nil, "export", "--watch", "--download", file, "--addr", dead+","+env.GRPCAddr)
	if code != cli.ExitOK || !strings.Contains(out, "FINISHED") || !strings.Contains(out, "saved ") {
		t.Fatalf("export --watch --download with a dead first address: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	id := regexp.MustCompile(`task (\d+)`).FindStringSubmatch(out)[1]
	for _, args := range [][]string{
		{"get", id, "--addr", env.GRPCAddr + "," + dead},
		{"list", "--addr", dead + ", " + env.GRPCAddr},
		{"watch", id, "--addr", env.GRPCAddr + "," + dead},
	} {
		code, out, errOut := run(t, nil, args...)
		if code != cli.ExitOK || !strings.Contains(out, id) {
			t.Errorf("%v: exit %d\n%s\nstderr: %s", args, code, out, errOut)
		}
	}
	if n := env.Emulator.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 1 {
		t.Errorf("the cloud holds %d tasks, want 1", n)
	}
	for _, addr := range []string{dead + ",", "127.0.0.1:1,nonsense", "127.0.0.1:1,dns:///localhost:9090"} {
		if code, _, errOut := run(t, nil, "list", "--addr", addr); code != cli.ExitInvalid {
			t.Errorf("--addr %q: exit %d, want %d; stderr %s", addr, code, cli.ExitInvalid, errOut)
		}
	}
	// Every address dead: the service cannot be reached, at once.
	if code, _, errOut := run(t, nil, "list", "--addr", dead+","+dead); code != cli.ExitUnreachable {
		t.Errorf("only dead addresses: exit %d, want %d; stderr %s", code, cli.ExitUnreachable, errOut)
	}
}

// TestServiceConfigRetriesAReadAcrossARestart stops the service, sends
// GetExportTask over a connection dialled as the CLI dials (with the
// service config), and starts the service again once the first attempt has
// failed: the call succeeds through the retry policy, without the caller
// retrying.
func TestServiceConfigRetriesAReadAcrossARestart(t *testing.T) {
	c := startCloud(t, nil)
	svc := startService(t, c)
	target, opts, err := cli.Target(svc.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	h := &attempts{}
	conn, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(h))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := cwpexportv1.NewLicenseExportServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetTaskId()
	svc.stop(t, syscall.SIGTERM)

	// The first failed attempt starts the service again and holds the call
	// until the connection is back, so the retry's timing does not depend on
	// how fast the process starts.
	h.reset(func() {
		svc = restart(t, svc, c)
		for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
			conn.Connect()
			if !conn.WaitForStateChange(ctx, s) {
				t.Errorf("the connection did not come back: %v", conn.GetState())
				return
			}
		}
	})
	got, err := client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
	if err != nil {
		t.Fatalf("GetExportTask across the restart: %v", err)
	}
	if got.GetTask().GetTaskId() != id {
		t.Errorf("answered task %s, want %s", got.GetTask().GetTaskId(), id)
	}
	begun, retried, failures := h.counts()
	if len(failures) == 0 || failures[0] != codes.Unavailable || retried < 1 {
		t.Errorf("%d attempts (%d retried by the policy), failures %v; want a failed Unavailable attempt, then a retry that succeeded", begun, retried, failures)
	}
}

// attempts counts a call's attempts as grpc-go reports them, and runs
// onFailure (once) when the first attempt fails.
type attempts struct {
	mu        sync.Mutex
	begun     int
	retried   int
	failures  []codes.Code
	onFailure func()
	once      sync.Once
}

func (a *attempts) reset(onFailure func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.begun, a.retried, a.failures, a.onFailure = 0, 0, nil, onFailure
}

func (a *attempts) counts() (int, int, []codes.Code) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.begun, a.retried, append([]codes.Code{codes.OK}[:0], a.failures...)
}

func (a *attempts) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (a *attempts) HandleRPC(_ context.Context, s stats.RPCStats) {
	a.mu.Lock()
	var run func()
	switch s := s.(type) {
	case *stats.Begin:
		a.begun++
		if a.begun > 1 && !s.IsTransparentRetryAttempt {
			a.retried++
		}
	case *stats.End:
		if s.Error != nil {
			a.failures = append(a.failures, status.Code(s.Error))
			run = a.onFailure
		}
	}
	a.mu.Unlock()
	if run != nil {
		a.once.Do(run)
	}
}

func (a *attempts) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (a *attempts) HandleConn(context.Context, stats.ConnStats) {}

// finish ends the task in the cloud.
func finish(t *testing.T, c *cloud, id string) {
	t.Helper()
	n, _ := strconv.ParseInt(id, 10, 64)
	if err := c.emu.FinishTask(n); err != nil {
		t.Fatal(err)
	}
}

// checkFile compares a saved file with the cloud's file for the task.
func checkFile(t *testing.T, c *cloud, id, path string) {
	t.Helper()
	n, _ := strconv.ParseInt(id, 10, 64)
	want, err := c.emu.TaskFile(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	if int64(len(got)) != want.Size || hex.EncodeToString(sum[:]) != want.SHA256 {
		t.Errorf("saved %d bytes (sha256 %x), the cloud's file has %d (sha256 %s)", len(got), sum, want.Size, want.SHA256)
	}
}
