package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cwpexport/cwpexport/clients/cli"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// The cwpexportd binary, built once for the tests that stop and start the
// real service process.
var (
	daemonOnce sync.Once
	daemonBin  string
	daemonErr  error
	binDir     string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func buildDaemon(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the cwpexportd binary")
	}
	daemonOnce.Do(func() {
		if binDir, daemonErr = os.MkdirTemp("", "cwpexport-cli-test-"); daemonErr != nil {
			return
		}
		daemonBin = filepath.Join(binDir, "cwpexportd")
		out, err := exec.Command("go", "build", "-o", daemonBin, "github.com/cwpexport/cwpexport/cmd/cwpexportd").CombinedOutput()
		if err != nil {
			daemonErr = fmt.Errorf("build cwpexportd: %w\n%s", err, out)
		}
	})
	if daemonErr != nil {
		t.Fatal(daemonErr)
	}
	return daemonBin
}

// cloud is an emulator that outlives the service processes started on it,
// as the real cloud outlives a replica. Its tasks stay PENDING until the
// test ends them. wrap, when set, wraps its HTTP handler.
type cloud struct {
	emu  *emulator.Emulator
	addr string
}

func startCloud(t *testing.T, wrap func(http.Handler) http.Handler) *cloud {
	t.Helper()
	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{testserver.SecretID: testserver.SecretKey}, PendingFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = emu
	if wrap != nil {
		h = wrap(emu)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); emu.Close() })
	return &cloud{emu: emu, addr: lis.Addr().String()}
}

// service is one cwpexportd process; a restart is another process on the
// same addresses and data directory.
type service struct {
	cmd      *exec.Cmd
	grpcAddr string
	restAddr string
	dataDir  string
	log      *syncBuffer
	exited   chan struct{}
}

// lowPort returns a loopback address below the ephemeral port range that
// was free a moment ago: a client reconnecting to a port in that range
// while nothing listens could be given that very port for its own end,
// and the restarted service could not bind it.
func lowPort(t *testing.T) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if lis, err := net.Listen("tcp", addr); err == nil {
			lis.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port below 32000")
	return ""
}

// startService starts cwpexportd on c with a fresh data directory and
// ports.
func startService(t *testing.T, c *cloud) *service {
	t.Helper()
	return restart(t, &service{grpcAddr: lowPort(t), restAddr: lowPort(t), dataDir: t.TempDir()}, c)
}

// restart starts a cwpexportd process on old's addresses and data
// directory (old has stopped) and waits until it serves. A port just
// given up may take a moment to bind again on a busy machine: retried.
func restart(t *testing.T, old *service, c *cloud) *service {
	t.Helper()
	bin := buildDaemon(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := &service{grpcAddr: old.grpcAddr, restAddr: old.restAddr, dataDir: old.dataDir, log: &syncBuffer{}, exited: make(chan struct{})}
		s.cmd = exec.Command(bin, "-data-dir", s.dataDir, "-grpc-addr", s.grpcAddr, "-rest-addr", s.restAddr, "-metrics-addr", "127.0.0.1:0",
			"-cloud-endpoint", c.addr, "-cloud-scheme", "HTTP", "-insecure-allow-private-cloud", "-min-poll-interval", "100ms", "-heartbeat", "200ms", "-log-format", "json")
		s.cmd.Env = append(os.Environ(), "TENCENTCLOUD_SECRET_ID="+testserver.SecretID, "TENCENTCLOUD_SECRET_KEY="+testserver.SecretKey, "CWPEXPORT_TOKENS=")
		s.cmd.Stderr = s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		t.Cleanup(func() { s.stop(t, syscall.SIGKILL) })
		err := s.waitServing()
		if err == nil {
			return s
		}
		if !strings.Contains(s.log.String(), "address already in use") || time.Now().After(deadline) {
			t.Fatalf("cwpexportd: %v\n%s", err, s.log.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *service) waitServing() error {
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.log.String(), `"msg":"serving"`) {
		select {
		case <-s.exited:
			return errors.New("exited before serving")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("not serving within 30s")
		}
	}
	return nil
}

// stop signals the process and waits for it to exit.
func (s *service) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("cwpexportd did not exit within 30s of %v", sig)
	}
}

// client is a plain gRPC client of the service, for the test's own calls.
func (s *service) client(t *testing.T) cwpexportv1.LicenseExportServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cwpexportv1.NewLicenseExportServiceClient(conn)
}

// syncBuffer is a bytes.Buffer safe for a writer and readers in other
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is a CLI invocation in progress.
type running struct {
	out, errOut *syncBuffer
	done        chan int
}

// launch runs the CLI in-process with args, in the background.
func launch(t *testing.T, args ...string) *running {
	t.Helper()
	return launchAs(t, false, args...)
}

// launchAs is launch, with output as on a terminal when terminal is set.
func launchAs(t *testing.T, terminal bool, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	r := &running{out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan int, 1)}
	go func() {
		defer cancel()
		r.done <- cli.Run(ctx, args, cli.IO{Stdout: r.out, Stderr: r.errOut, Terminal: terminal})
	}()
	return r
}

// waitFor waits until the CLI's stdout holds n occurrences of s.
func (r *running) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(r.out.String(), s) < n {
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("the CLI exited %d before printing %q %d times:\n%s\nstderr: %s", code, s, n, r.out.String(), r.errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CLI printed %q fewer than %d times within 60s:\n%s", s, n, r.out.String())
		}
	}
}

// exit waits for the CLI's exit code.
func (r *running) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(2 * time.Minute):
		t.Fatalf("the CLI did not exit within 2 minutes:\n%s", r.out.String())
		return -1
	}
}
