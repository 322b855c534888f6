package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// Loopback addresses other than 127.0.0.1 stand for distinct peers: the
// edge's bounds are per peer address.
const (
	honestIP   = "127.0.0.2"
	attackerIP = "127.0.0.5"
	otherIP    = "127.0.0.6"
)

// dialFrom opens a TCP connection to addr from the loopback address ip.
func dialFrom(ctx context.Context, ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext(ctx, "tcp", addr)
}

// grpcFrom returns a gRPC client of addr whose connections come from ip.
func grpcFrom(t *testing.T, ip, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialFrom(ctx, ip, a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// httpFrom returns an HTTP client whose connections come from ip.
func httpFrom(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return dialFrom(ctx, ip, a) }}}
}

// h2Preface starts an HTTP/2 connection as a client: the preface and an
// empty SETTINGS frame. A server that closed the connection shows in the
// reads that follow, not here.
func h2Preface(c net.Conn) *http2.Framer {
	_, _ = c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	_ = fr.WriteSettings()
	return fr
}

// grpcHeaders encodes the header block of a gRPC call to method with one
// more header, name: value.
func grpcHeaders(addr, method, name, value string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	enc.SetMaxDynamicTableSizeLimit(0)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {name, value}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return b.Bytes()
}

// rawCall sends one gRPC call on a new HTTP/2 connection, its header block
// in 16 KiB frames, and returns how the server answered: its grpc-status,
// or "reset" when it reset the stream or closed the connection unread.
func rawCall(t *testing.T, addr string, block []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fr := h2Preface(c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	go func() { // the server may stop reading: write beside the reads
		const chunk = 16 << 10
		first := block[:min(chunk, len(block))]
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(block) <= chunk})
		for rest := block[len(first):]; len(rest) > 0; {
			n := min(chunk, len(rest))
			if fr.WriteContinuation(1, n == len(rest), rest[:n]) != nil {
				return
			}
			rest = rest[n:]
		}
		_ = fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}) // an empty request message
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no answer within 30s")
			}
			return "reset"
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v != "" && f.StreamID == 1 {
				for _, hf := range f.RegularFields() {
					if hf.Name == "grpc-status" {
						return hf.Value
					}
				}
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return "reset"
		}
	}
}

// TestGRPCMetadataIsBounded: a call whose metadata is larger than the
// bound is reset unread, where it used to be read whole (grpc-go's default
// list is 16 MiB) and answered; metadata within the bound is answered.
func TestGRPCMetadataIsBounded(t *testing.T) {
	o := fastApp()
	o.Tokens = testTokens(t)
	env := testserver.Start(t, testserver.Config{App: o})
	method := "/cwpexport.v1.LicenseExportService/ExportLicenseDetail"
	if got := rawCall(t, env.GRPCAddr, grpcHeaders(env.GRPCAddr, method, "authorization", "Bearer "+strings.Repeat("x", 30<<10))); got != "16" {
		t.Errorf("a 30 KiB wrong token: %s, want grpc-status 16 (Unauthenticated)", got)
	}
	for _, size := range []int{100 << 10, 4 << 20} {
		if got := rawCall(t, env.GRPCAddr, grpcHeaders(env.GRPCAddr, method, "authorization", "Bearer "+strings.Repeat("x", size))); got != "reset" {
			t.Errorf("a %d KiB token: answered grpc-status %s, want the stream reset or the connection closed unread", size>>10, got)
		}
	}
	if _, err := env.Client.ExportLicenseDetail(as(aliceToken), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Errorf("a caller after the large headers: %v", err)
	}
}

// TestGRPCConnectionsAreBounded: past the bound per peer address, and past
// the bound in total, new gRPC connections are closed as they come, while
// a caller already connected, callers from other addresses (within the
// total) and REST health keep being served.
func TestGRPCConnectionsAreBounded(t *testing.T) {
	o := fastApp()
	o.Edge.GRPCMaxConns, o.Edge.GRPCMaxConnsPerPeer = 6, 3
	env := testserver.Start(t, testserver.Config{App: o})
	honest := grpc_health_v1.NewHealthClient(grpcFrom(t, honestIP, env.GRPCAddr))
	health := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := honest.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		return err
	}
	if err := health(); err != nil {
		t.Fatalf("health before: %v", err)
	}
	idle := func(ip string) net.Conn {
		c, err := dialFrom(context.Background(), ip, env.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		h2Preface(c)
		return c
	}
	// Three idle connections of the attacker are held (each answered with
	// the server's SETTINGS, so accepted); a fourth is closed.
	for range 3 {
		c := idle(attackerIP)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 9)); err != nil {
			t.Fatalf("an idle connection within the bound: %v", err)
		}
	}
	if !closedByServer(idle(attackerIP)) {
		t.Errorf("a fourth connection from one address is held open, want it closed (bound 3 per peer)")
	}
	// 1 honest + 3 attacker + 2 other = 6, the total: the next is closed,
	// whoever it comes from.
	idle(otherIP)
	idle(otherIP)
	deadline := time.Now().Add(30 * time.Second)
	for !closedByServer(idle("127.0.0.7")) {
		if time.Now().After(deadline) {
			t.Fatalf("a connection past the total bound is held open")
		}
	}
	if err := health(); err != nil {
		t.Errorf("the caller already connected, during the flood: %v", err)
	}
	if r := env.Do(t, http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("REST health during the flood: HTTP %d", r.Status)
	}
}

// TestGRPCConnectionsThatSayNothingAreClosed: a connection that sends
// nothing is closed after the handshake timeout, one that sends only the
// HTTP/2 preface after the idle timeout.
func TestGRPCConnectionsThatSayNothingAreClosed(t *testing.T) {
	o := fastApp()
	o.Edge.GRPCHandshakeTimeout, o.Edge.GRPCMaxConnectionIdle = time.Second, time.Second
	env := testserver.Start(t, testserver.Config{App: o})
	silent, err := net.Dial("tcp", env.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	preface, err := net.Dial("tcp", env.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer preface.Close()
	h2Preface(preface)
	if !closedByServer(silent) {
		t.Errorf("a connection that sends nothing is held open past the handshake timeout")
	}
	if !closedByServer(preface) {
		t.Errorf("a connection that sends only the HTTP/2 preface is held open past the idle timeout")
	}
}

// logLines returns the JSON lines of buf.
func logLines(t *testing.T, buf *lockedBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if l != "" && json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// startLogged starts a service with the test tokens and the edge bounds
// given, logging and auditing as JSON into the buffers it returns.
func startLogged(t *testing.T, bounds app.EdgeOptions) (logs, audit *lockedBuffer, env *testserver.Env) {
	logs, audit = &lockedBuffer{}, &lockedBuffer{}
	o := fastApp()
	o.Tokens, o.Edge = testTokens(t), bounds
	o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	o.AuditLogger = slog.New(slog.NewJSONHandler(audit, nil))
	return logs, audit, testserver.Start(t, testserver.Config{App: o, Emulator: emulator.Options{PendingFor: time.Hour}})
}

// TestFailedAuthenticationsAreBounded: a peer's failed authentications
// past its budget are refused before their credentials are checked
// (ResourceExhausted with a RetryInfo, REST 429 with Retry-After), a peer
// that ignores the refusals has its connection closed, the failures are
// logged as a few aggregate lines instead of a line each, none reaches the
// audit log, and callers from other addresses are served throughout.
func TestFailedAuthenticationsAreBounded(t *testing.T) {
	logs, audit, env := startLogged(t, app.EdgeOptions{AuthFailuresPerSecond: 0.01, AuthFailureBurst: 3, DropBan: time.Hour})

	const attempts = 50
	attacker := cwpexportv1.NewLicenseExportServiceClient(grpcFrom(t, attackerIP, env.GRPCAddr))
	seen := map[codes.Code]int{}
	retryInfo := false
	for range attempts {
		_, err := attacker.ExportLicenseDetail(as("wrong-token-0000000000000"), &cwpexportv1.ExportLicenseDetailRequest{})
		st := status.Convert(err)
		seen[st.Code()]++
		if d, ok := apierror.RetryDelay(err); ok && d > 0 {
			retryInfo = retryInfo || apierror.Reason(err) == cwpexportv1.ErrorReason_TOO_MANY_AUTHENTICATION_FAILURES
		}
	}
	if seen[codes.Unauthenticated] != 3 || seen[codes.ResourceExhausted] == 0 || !retryInfo {
		t.Errorf("%d wrong tokens answered %v, want 3 Unauthenticated (the burst), then ResourceExhausted with a RetryInfo", attempts, seen)
	}
	if seen[codes.Unavailable] == 0 {
		t.Errorf("a peer that ignores the refusals keeps its connection: %v", seen)
	}

	restAttacker := httpFrom(otherIP)
	statuses := map[int]int{}
	retryAfter := ""
	for range 10 {
		req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer wrong-token-0000000000000")
		resp, err := restAttacker.Do(req)
		if err != nil {
			statuses[0]++
			continue
		}
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
		}
		resp.Body.Close()
	}
	if statuses[http.StatusUnauthorized] != 3 || statuses[http.StatusTooManyRequests] != 7 || retryAfter == "" {
		t.Errorf("REST wrong tokens: %v (Retry-After %q), want 3×401 then 429 with Retry-After", statuses, retryAfter)
	}

	honest := cwpexportv1.NewLicenseExportServiceClient(grpcFrom(t, honestIP, env.GRPCAddr))
	if _, err := honest.ExportLicenseDetail(as(aliceToken), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Errorf("a caller from another address: %v", err)
	}
	if r := httpFrom(honestIP); true {
		req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bobToken)
		if resp := do(t, r, req); resp.Status != http.StatusOK {
			t.Errorf("a REST caller from another address: HTTP %d %s", resp.Status, resp.Body)
		}
	}

	var perCall, aggregate int
	for _, l := range logLines(t, logs) {
		switch {
		case l["msg"] == "call" && l["code"] == "Unauthenticated", l["msg"] == "call" && l["code"] == "ResourceExhausted":
			perCall++
		case l["msg"] == "refused at the edge":
			aggregate++
		}
	}
	if perCall != 0 || aggregate == 0 || aggregate > 8 {
		t.Errorf("%d refused calls logged %d call lines and %d aggregate lines, want none and a few", attempts+10, perCall, aggregate)
	}
	var audited int
	for _, l := range logLines(t, audit) {
		if l["caller"] != "alice" && l["caller"] != "bob" {
			audited++
		}
	}
	if audited != 0 {
		t.Errorf("%d audit lines of attempts authentication refused, want none: %s", audited, audit.String())
	}
}

// TestRapidStreamResetsDropTheConnection: a connection whose client
// cancels streams faster than the bound is closed, and its peer refused
// for a while; callers from other addresses are served.
func TestRapidStreamResetsDropTheConnection(t *testing.T) {
	_, audit, env := startLogged(t, app.EdgeOptions{GRPCResetsPerSecond: 0.01, GRPCResetBurst: 20, DropBan: time.Hour})
	res, err := env.Client.ExportLicenseDetail(as(aliceToken), &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	attacker := cwpexportv1.NewLicenseExportServiceClient(grpcFrom(t, attackerIP, env.GRPCAddr))
	var lastErr error
	for i := range 200 {
		ctx, cancel := context.WithCancel(as(aliceToken))
		s, err := attacker.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: res.GetTask().GetTaskId()})
		if err == nil {
			_, err = s.Recv()
		}
		cancel()
		if status.Code(err) == codes.Unavailable {
			lastErr = err
			t.Logf("refused after %d streams cancelled", i)
			break
		}
	}
	if lastErr == nil {
		t.Fatalf("200 streams cancelled on one connection, and it is still served")
	}
	ctx, cancel := context.WithTimeout(as(aliceToken), 5*time.Second)
	defer cancel()
	if _, err := attacker.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: res.GetTask().GetTaskId()}); status.Code(err) != codes.Unavailable {
		t.Errorf("the dropped peer reconnecting: %v, want Unavailable (refused for -edge-drop-ban)", err)
	}
	honest := cwpexportv1.NewLicenseExportServiceClient(grpcFrom(t, honestIP, env.GRPCAddr))
	if _, err := honest.GetExportTask(as(aliceToken), &cwpexportv1.GetExportTaskRequest{TaskId: res.GetTask().GetTaskId()}); err != nil {
		t.Errorf("a caller from another address: %v", err)
	}
	if n := strings.Count(audit.String(), `"event":"export"`); n != 1 {
		t.Errorf("%d export audit lines, want 1 (the one export made)", n)
	}
}

// TestStreamsResetBeforeTheirRequestAreNotLoggedAboveDebug: a stream its
// client resets before sending its request did nothing; its call line is
// at debug level, so that a client resetting streams in a loop cannot fill
// the log (the edge bounds how many it may reset).
func TestStreamsResetBeforeTheirRequestAreNotLoggedAboveDebug(t *testing.T) {
	var logs lockedBuffer
	o := fastApp()
	o.Tokens = testTokens(t)
	o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := testserver.Start(t, testserver.Config{App: o})
	c, err := net.Dial("tcp", env.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fr := h2Preface(c)
	go func() { _, _ = io.Copy(io.Discard, c) }()
	block := grpcHeaders(env.GRPCAddr, "/cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch", "authorization", "Bearer "+aliceToken)
	const resets = 20
	for i := range uint32(resets) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: block, EndHeaders: true})
		_ = fr.WriteRSTStream(2*i+1, http2.ErrCodeCancel)
	}
	levels := map[string]int{}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		clear(levels)
		for _, l := range logLines(t, &logs) {
			if l["msg"] == "call" && strings.HasSuffix(l["method"].(string), "/ExportLicenseDetailAndWatch") {
				levels[l["level"].(string)]++
			}
		}
		if levels["DEBUG"]+levels["INFO"]+levels["WARN"] >= resets {
			break
		}
	}
	if levels["DEBUG"] != resets {
		t.Errorf("call lines of %d streams reset before their request, by level: %v, want all DEBUG", resets, levels)
	}
}
