// Package testserver starts the whole service for tests: a CWP emulator on a
// loopback port, the gRPC server and the REST gateway on loopback ports, and
// a gRPC client connected to it. Everything is real; nothing is mocked.
//
// The task registry is SQLite in a temporary data directory, or PostgreSQL
// when App.Database names a database, or when CWPEXPORT_TEST_REGISTRY is
// "postgres" (then a fresh database from pgtest.DSN: the test package's
// TestMain must run its tests through pgtest.Run).
package testserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/pgtest"
)

// EnvRegistry, set to "postgres", puts the registry of every environment
// started without App.Database on a fresh PostgreSQL database.
const EnvRegistry = "CWPEXPORT_TEST_REGISTRY"

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
	// GRPCAddr and RESTURL locate the service; MetricsURL its metrics
	// (plain HTTP, on an address of their own).
	GRPCAddr   string
	RESTURL    string
	MetricsURL string
	// Client is a gRPC client of the service.
	Client cwpexportv1.LicenseExportServiceClient
	// Conn is the client's connection.
	Conn *grpc.ClientConn
	// HTTP is the REST client (TLS as configured).
	HTTP  *http.Client
	token string
	stop  func()
}

// Stop stops the service and its emulator and waits for them, as the end of
// the test does; a test that starts another service on the same data
// directory stops this one first.
func (e *Env) Stop() { e.stop() }

// Config adjusts a test environment.
type Config struct {
	// Emulator options; Credentials default to SecretID/SecretKey and
	// PendingFor to 1s.
	Emulator emulator.Options
	// App options; the cloud endpoint and credentials default to the
	// emulator's.
	App app.Options
	// ClientTLS, when set, makes the clients use TLS (the App options must
	// then configure it on the server).
	ClientTLS *tls.Config
	// Token, when set, is sent by the clients as their bearer token.
	Token string
}

// Start starts an environment that is stopped when the test ends.
func Start(t testing.TB, cfg Config) *Env {
	t.Helper()
	// First: without PostgreSQL the test is skipped before anything starts.
	if cfg.App.Database == "" && os.Getenv(EnvRegistry) == "postgres" {
		cfg.App.Database = pgtest.DSN(t)
	}
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
	// The test cloud is an emulator on loopback, spoken to in HTTP.
	o.AllowPrivateCloud = true
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	metricsLis := listen(t)
	o.MetricsListener = metricsLis
	srv, err := app.New(o)
	if err != nil {
		cancel()
		t.Fatalf("app: %v", err)
	}
	if o.Database != "" && srv.Pool() == nil {
		cancel()
		t.Fatal("app: the registry is not on the PostgreSQL database given")
	}
	grpcLis, restLis := listen(t), listen(t)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ctx, grpcLis, restLis) }()

	creds, scheme := insecure.NewCredentials(), "http://"
	httpClient := &http.Client{Transport: &http.Transport{}}
	if cfg.ClientTLS != nil {
		creds, scheme = credentials.NewTLS(cfg.ClientTLS), "https://"
		httpClient.Transport = &http.Transport{TLSClientConfig: cfg.ClientTLS}
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cfg.Token != "" {
		dialOpts = append(dialOpts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cfg.Token), method, req, reply, cc, opts...)
		}), grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cfg.Token), desc, cc, method, opts...)
		}))
	}
	conn, err := grpc.NewClient(grpcLis.Addr().String(), dialOpts...)
	if err != nil {
		cancel()
		t.Fatalf("dial: %v", err)
	}
	env := &Env{
		Emulator: emu, EmulatorAddr: emuLis.Addr().String(), Server: srv,
		GRPCAddr: grpcLis.Addr().String(), RESTURL: scheme + restLis.Addr().String(),
		MetricsURL: "http://" + metricsLis.Addr().String() + "/metrics",
		Client:     cwpexportv1.NewLicenseExportServiceClient(conn), Conn: conn,
		HTTP: httpClient, token: cfg.Token,
	}
	var once sync.Once
	env.stop = func() {
		once.Do(func() {
			httpClient.CloseIdleConnections()
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
			// Its state directory, if any, is free for the next one.
			if err := emu.Close(); err != nil {
				t.Errorf("close the emulator: %v", err)
			}
		})
	}
	t.Cleanup(env.stop)
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
		resp, err := e.HTTP.Get(e.RESTURL + "/healthz")
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
	e.authorize(req)
	resp, err := e.HTTP.Do(req)
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
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	e.authorize(req)
	resp, err := e.HTTP.Do(req)
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

// authorize adds the configured bearer token to a REST request.
func (e *Env) authorize(req *http.Request) {
	if e.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
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

// Metrics reads GET /metrics from the metrics address.
func (e *Env) Metrics(t testing.TB) Response {
	t.Helper()
	resp, err := http.Get(e.MetricsURL)
	if err != nil {
		t.Fatalf("GET %s: %v", e.MetricsURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return Response{Status: resp.StatusCode, Body: b, Header: resp.Header}
}
