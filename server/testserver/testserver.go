// Package testserver starts the whole service for tests: a CWP emulator on a
// loopback port, the gRPC server and the REST gateway on loopback ports, and
// a gRPC client connected to it. Everything is real; nothing is mocked.
package testserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// Emulator credentials of the test cloud account.
const (
	SecretID  = "AKIDtestserver0000000000000000000000"
	SecretKey = "testserver-secret-key-0123456789abcdef"
)

// Env is a running service with its emulator.
type Env struct {
	// Emulator is the cloud the service calls.
	Emulator *emulator.Emulator
	// EmulatorAddr is the emulator's host:port.
	EmulatorAddr string
	// Server is the service.
	Server *app.Server
	// GRPCAddr and RESTURL locate the service.
	GRPCAddr string
	RESTURL  string
	// Client is a gRPC client of the service.
	Client cwpexportv1.LicenseExportServiceClient
	// Conn is the client's connection.
	Conn *grpc.ClientConn
}

// Config adjusts a test environment.
type Config struct {
	// Emulator options; Credentials default to SecretID/SecretKey and
	// PendingFor to 1s.
	Emulator emulator.Options
	// App options; the cloud endpoint and credentials default to the
	// emulator's.
	App app.Options
}

// Start starts an environment that is stopped when the test ends.
func Start(t testing.TB, cfg Config) *Env {
	t.Helper()
	if cfg.Emulator.Credentials == nil {
		cfg.Emulator.Credentials = map[string]string{SecretID: SecretKey}
	}
	if cfg.Emulator.PendingFor == 0 {
		cfg.Emulator.PendingFor = time.Second
	}
	emu, err := emulator.New(cfg.Emulator)
	if err != nil {
		t.Fatalf("emulator: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	emuLis := listen(t)
	emuDone := make(chan error, 1)
	go func() { emuDone <- emu.Serve(ctx, emuLis) }()

	o := cfg.App
	if o.Endpoint == "" {
		o.Endpoint, o.Scheme = emuLis.Addr().String(), "HTTP"
	}
	if o.SecretID == "" {
		o.SecretID, o.SecretKey = SecretID, SecretKey
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	srv, err := app.New(o)
	if err != nil {
		cancel()
		t.Fatalf("app: %v", err)
	}
	grpcLis, restLis := listen(t), listen(t)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ctx, grpcLis, restLis) }()

	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatalf("dial: %v", err)
	}
	env := &Env{
		Emulator: emu, EmulatorAddr: emuLis.Addr().String(), Server: srv,
		GRPCAddr: grpcLis.Addr().String(), RESTURL: "http://" + restLis.Addr().String(),
		Client: cwpexportv1.NewLicenseExportServiceClient(conn), Conn: conn,
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		for _, c := range []chan error{srvDone, emuDone} {
			select {
			case err := <-c:
				if err != nil {
					t.Errorf("server stopped with: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("server did not stop within 15s")
			}
		}
	})
	env.waitHealthy(t)
	return env
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return lis
}

func (e *Env) waitHealthy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.RESTURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("service not healthy within 10s")
}

// Response is a REST answer.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body into a generic map.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// Do sends a REST request with a JSON body (empty for none).
func (e *Env) Do(t testing.TB, method, path, body string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.RESTURL+path, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return Response{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

// Stream sends a REST request to a streaming endpoint and returns the
// newline-delimited JSON objects it answered, each decoded to a map.
func (e *Env) Stream(t testing.TB, ctx context.Context, method, path, body string) (int, []map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.RESTURL+path, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stream line is not JSON: %v: %s", err, sc.Text())
		}
		lines = append(lines, m)
	}
	return resp.StatusCode, lines
}

// RecvAll reads a gRPC stream to its end (pass stream.Recv) and fails the
// test on an error.
func RecvAll[T any](t testing.TB, recv func() (T, error)) []T {
	t.Helper()
	var msgs []T
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return msgs
		}
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		msgs = append(msgs, m)
	}
}
