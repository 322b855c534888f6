// Command benchabuse attacks a real cwpexportd, on loopback, the ways
// anyone who can reach its ports could without a valid token, and reports
// for each attack the bound that holds it, the server's RSS and open
// descriptors before, during (peak) and after, the log and audit lines it
// wrote, and the p99 latency of an honest caller (REST and gRPC reads from
// another address, every 10 ms) during the attack beside the quiet figure,
// with the honest calls that failed. It builds cwpexportd with the
// defaults of every bound, and prints a Markdown report on stdout.
//
// The attacks, each bounded in count and time:
//
//   - header: 24 concurrent gRPC calls, each sending a 15 MiB
//     authorization header, again and again;
//   - conns: 21,000 connections that send only the HTTP/2 preface, from
//     21 loopback addresses;
//   - slow body: 20 REST requests without a token, Content-Length 100000,
//     then one body byte per second;
//   - reset flood: 50,000 HEADERS+RST_STREAM with a wrong token on
//     ExportLicenseDetailAndWatch, then 4 connections × 25,000 with a
//     valid token;
//   - wrong tokens: 8,000 REST calls with a wrong token.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

const (
	aliceToken = "alice-bench-token-0123456789abcdef"
	wrongToken = "wrong-bench-token-0123456789abcdef"
	honestIP   = "127.0.0.2"
	attackerIP = "127.0.0.5"
	watchPath  = "/cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchabuse:", err)
		os.Exit(1)
	}
}

type server struct {
	cmd             *exec.Cmd
	dir             string
	grpcAddr, rest  string
	logPath, audits string
}

func run() error {
	quiet := flag.Duration("quiet", 5*time.Second, "how long the honest caller is measured without an attack")
	limit := flag.Duration("attack", 10*time.Second, "the longest an attack runs (conns: three times this)")
	child := flag.Bool("honest-child", false, "internal: be the honest caller's process (-grpc, -rest, -task)")
	grpcAddr, restAddr, task := flag.String("grpc", "", "internal"), flag.String("rest", "", "internal"), flag.String("task", "", "internal")
	only := flag.String("only", "", "comma-separated attacks to run (header, conns, slowbody, resets-wrong, resets-valid, wrong-tokens); default all")
	flag.Parse()
	if *child {
		return honestChild(&server{grpcAddr: *grpcAddr, rest: *restAddr}, *task)
	}
	dir, err := os.MkdirTemp("", "benchabuse")
	if err != nil {
		return err
	}
	if os.Getenv("BENCHABUSE_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "keeping", dir)
	}
	srv, err := start(dir)
	if err != nil {
		return err
	}
	defer srv.stop()
	id, err := srv.export()
	if err != nil {
		return err
	}
	// The honest caller is a process of its own: the attacks' goroutines
	// and garbage must not delay it in this one.
	h, err := startHonest(srv, id)
	if err != nil {
		return err
	}
	defer h.stop()

	base := srv.measure(h, "quiet", "—", *quiet, func(ctx context.Context) string {
		<-ctx.Done()
		return "no attack"
	})
	attacks := []struct {
		key, name, bound string
		d                time.Duration
		run              func(ctx context.Context) string
	}{
		{"header", "gRPC header: 24 × 15 MiB authorization", "-grpc-max-header-bytes 64 KiB", *limit, srv.headerAttack},
		{"conns", "gRPC conns: 21,000 preface-only from 21 addresses", "-grpc-max-conns 4096, -grpc-max-conns-per-peer 256", *limit * 3, srv.connAttack},
		{"slowbody", "REST slow bodies: 20 × no token, 1 byte/s", "401 before the body; -rest-body-timeout 10s", *limit, srv.slowBodies},
		{"resets-wrong", "gRPC resets: 50,000 HEADERS+RST, wrong token", "-auth-failure-burst 20 at 1/s per peer, then drop (-edge-drop-ban 5s)", *limit, srv.resetFlood(wrongToken, 1, 50000)},
		{"resets-valid", "gRPC resets: 4 conns × 25,000 HEADERS+RST, valid token", "-grpc-reset-burst 200 at 10/s per connection, then drop (-edge-drop-ban 5s)", *limit, srv.resetFlood(aliceToken, 4, 25000)},
		{"wrong-tokens", "REST: 8,000 wrong tokens", "-auth-failure-burst 20 at 1/s per peer: 429 + Retry-After", *limit, srv.wrongTokens},
	}
	phases := []phase{base}
	for _, a := range attacks {
		if *only == "" || slices.Contains(strings.Split(*only, ","), a.key) {
			phases = append(phases, srv.measure(h, a.name, a.bound, a.d, a.run))
		}
	}
	report(phases)
	return nil
}

func start(dir string) (*server, error) {
	bin := filepath.Join(dir, "cwpexportd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cwpexportd")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build cwpexportd: %w", err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("alice "+aliceToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	s := &server{dir: dir, grpcAddr: freeAddr(), rest: freeAddr(), logPath: filepath.Join(dir, "server.log"), audits: filepath.Join(dir, "audit.log")}
	log, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "-grpc-addr", s.grpcAddr, "-rest-addr", s.rest, "-data-dir", filepath.Join(dir, "data"),
		"-tokens-file", tokens, "-audit-log", s.audits, "-log-format", "json", "-emulator-pending", "1h",
		"-reads-per-caller", "1000", "-read-burst", "1000")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + s.rest + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
	}
	s.stop()
	return nil, errors.New("cwpexportd not healthy within 60s")
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// export creates the task the honest caller reads.
func (s *server) export() (string, error) {
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+aliceToken)
	res, err := cwpexportv1.NewLicenseExportServiceClient(conn).ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	return res.GetTask().GetTaskId(), nil
}

// usage is the server's RSS and open descriptors.
type usage struct{ rss, fds int64 }

func (s *server) usage() usage {
	var u usage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				u.rss = kb << 10
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid)); err == nil {
		u.fds = int64(len(fds))
	}
	return u
}

func lines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// attackLines counts the server's log lines but for the honest caller's
// call lines.
func (s *server) attackLines() int {
	b, _ := os.ReadFile(s.logPath)
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(l) > 0 && !(bytes.Contains(l, []byte(`"caller":"alice"`)) && bytes.Contains(l, []byte("/GetExportTask"))) {
			n++
		}
	}
	return n
}

// phase is what one attack did and cost.
type phase struct {
	name, bound, outcome  string
	before, peak, after   usage
	logLines, auditLines  int
	honestP99, honestP50  time.Duration
	honestCalls, honestKO int
	took                  time.Duration
}

// measure runs attack for at most d while sampling the server, and notes
// the honest caller's calls that ran meanwhile.
func (s *server) measure(h *honestProc, name, bound string, d time.Duration, attack func(ctx context.Context) string) phase {
	time.Sleep(time.Second) // the previous phase's tail settles
	p := phase{name: name, bound: bound, before: s.usage()}
	log0, audit0 := s.attackLines(), lines(s.audits)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			u := s.usage()
			p.peak.rss, p.peak.fds = max(p.peak.rss, u.rss), max(p.peak.fds, u.fds)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	h.begin()
	start := time.Now()
	p.outcome = attack(ctx)
	p.took = time.Since(start)
	// The server may still be digesting what the attack sent: the honest
	// caller is measured for the whole phase.
	<-ctx.Done()
	lat, ko := h.end()
	close(stop)
	wg.Wait()
	time.Sleep(2 * time.Second)
	p.after = s.usage()
	p.logLines, p.auditLines = s.attackLines()-log0, lines(s.audits)-audit0
	p.honestCalls, p.honestKO = len(lat)+ko, ko
	p.honestP50, p.honestP99 = pct(lat, 0.50), pct(lat, 0.99)
	fmt.Fprintf(os.Stderr, "%s: %s (%s)\n", name, p.outcome, p.took.Round(time.Millisecond))
	return p
}

func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*q))]
}

// honestProc is the honest caller's process: told "begin" and "end" on its
// standard input, it answers each end with the phase's latencies.
type honestProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

type honestReport struct {
	Nanos  []int64
	Failed int
}

func startHonest(s *server, id string) (*honestProc, error) {
	cmd := exec.Command(os.Args[0], "-honest-child", "-grpc", s.grpcAddr, "-rest", s.rest, "-task", id)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 64<<20)
	return &honestProc{cmd: cmd, in: in, out: sc}, nil
}

func (h *honestProc) begin() { fmt.Fprintln(h.in, "begin") }

func (h *honestProc) end() ([]time.Duration, int) {
	fmt.Fprintln(h.in, "end")
	var r honestReport
	if h.out.Scan() {
		_ = json.Unmarshal(h.out.Bytes(), &r)
	}
	lat := make([]time.Duration, len(r.Nanos))
	for i, n := range r.Nanos {
		lat[i] = time.Duration(n)
	}
	return lat, r.Failed
}

func (h *honestProc) stop() {
	h.in.Close()
	_ = h.cmd.Wait()
}

// honestChild is the honest caller's process.
func honestChild(s *server, id string) error {
	h := newHonest(s, id)
	go h.run(context.Background())
	defer h.stop()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "begin":
			h.begin()
		case "end":
			lat, failed := h.end()
			r := honestReport{Failed: failed}
			for _, d := range lat {
				r.Nanos = append(r.Nanos, int64(d))
			}
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
		}
	}
	return sc.Err()
}

// honest reads a task every 10 ms from its own address, alternating REST
// and gRPC, and keeps the latencies of the current phase.
type honest struct {
	rest   *http.Client
	grpc   cwpexportv1.LicenseExportServiceClient
	conn   *grpc.ClientConn
	url    string
	id     string
	done   chan struct{}
	mu     sync.Mutex
	on     bool
	lat    []time.Duration
	failed int
}

func dialFrom(ctx context.Context, ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

func newHonest(s *server, id string) *honest {
	conn, _ := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialFrom(ctx, honestIP, a) }))
	return &honest{
		rest: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return dialFrom(ctx, honestIP, a) }}},
		grpc: cwpexportv1.NewLicenseExportServiceClient(conn), conn: conn,
		url: "http://" + s.rest + "/v1/export-tasks/" + id, id: id, done: make(chan struct{}),
	}
}

func (h *honest) run(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	md := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+aliceToken)
	for i := 0; ; i++ {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		start := time.Now()
		var err error
		if i%2 == 0 {
			req, _ := http.NewRequest(http.MethodGet, h.url, nil)
			req.Header.Set("Authorization", "Bearer "+aliceToken)
			var resp *http.Response
			if resp, err = h.rest.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
			}
		} else {
			cctx, cancel := context.WithTimeout(md, 30*time.Second)
			_, err = h.grpc.GetExportTask(cctx, &cwpexportv1.GetExportTaskRequest{TaskId: h.id})
			cancel()
		}
		h.mu.Lock()
		if h.on {
			if err != nil {
				h.failed++
				fmt.Fprintln(os.Stderr, "honest caller:", err)
			} else {
				h.lat = append(h.lat, time.Since(start))
			}
		}
		h.mu.Unlock()
	}
}

func (h *honest) begin() {
	h.mu.Lock()
	h.on, h.lat, h.failed = true, nil, 0
	h.mu.Unlock()
}

func (h *honest) end() ([]time.Duration, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on = false
	return h.lat, h.failed
}

func (h *honest) stop() { close(h.done); h.conn.Close() }

// h2Conn opens an HTTP/2 connection from ip and drains what the server
// sends; closed is closed when the server closes it.
func h2Conn(ctx context.Context, ip, addr string) (net.Conn, *http2.Framer, <-chan struct{}, error) {
	c, err := dialFrom(ctx, ip, addr)
	if err != nil {
		return nil, nil, nil, err
	}
	bw := bufio.NewWriterSize(c, 64<<10)
	fr := http2.NewFramer(bw, c)
	_, _ = bw.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	_ = bw.Flush()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	return &flushConn{Conn: c, bw: bw}, fr, closed, nil
}

// flushConn flushes the framer's buffer on demand.
type flushConn struct {
	net.Conn
	bw *bufio.Writer
}

func (f *flushConn) flush() error { return f.bw.Flush() }

func headerBlock(addr, path string, extra ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	fields := []string{":method", "POST", ":scheme", "http", ":path", path, ":authority", addr,
		"content-type", "application/grpc", "te", "trailers"}
	fields = append(fields, extra...)
	for i := 0; i < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// headerAttack: 24 workers, each sending calls with a 15 MiB header.
func (s *server) headerAttack(ctx context.Context) string {
	block := headerBlock(s.grpcAddr, "/cwpexport.v1.LicenseExportService/ExportLicenseDetail", "authorization", "Bearer "+strings.Repeat("x", 15<<20))
	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, fr, closed, err := h2Conn(ctx, attackerIP, s.grpcAddr)
				if err != nil {
					continue
				}
				sent.Add(1)
				const chunk = 16 << 10
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:chunk]})
				for rest := block[chunk:]; len(rest) > 0; {
					n := min(chunk, len(rest))
					if fr.WriteContinuation(1, n == len(rest), rest[:n]) != nil {
						break
					}
					rest = rest[n:]
				}
				if c.(*flushConn).flush() == nil {
					answered.Add(1)
				}
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
				case <-ctx.Done():
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d calls of 15 MiB attempted, %d written whole (the others cut off by the server)", sent.Load(), answered.Load())
}

// connAttack: 21,000 connections sending only the HTTP/2 preface, held
// until the phase ends.
func (s *server) connAttack(ctx context.Context) string {
	const total, addrs = 21000, 21
	var held, refused, failed atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, closed, err := h2Conn(ctx, fmt.Sprintf("127.0.1.%d", 1+i%addrs), s.grpcAddr)
			if err != nil {
				failed.Add(1)
				return
			}
			select {
			case <-closed:
				refused.Add(1)
				c.Close()
				return
			case <-time.After(50 * time.Millisecond):
			}
			held.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out := fmt.Sprintf("%d held, %d closed by the server at once, %d failed to connect", held.Load(), refused.Load(), failed.Load())
	<-ctx.Done()
	for _, c := range conns {
		c.Close()
	}
	return out
}

// slowBodies: 20 REST requests without a token, a body to come one byte a
// second; how long until each is answered.
func (s *server) slowBodies(ctx context.Context) string {
	type result struct {
		code int
		took time.Duration
	}
	results := make(chan result, 20)
	for range 20 {
		go func() {
			start := time.Now()
			c, err := dialFrom(ctx, attackerIP, s.rest)
			if err != nil {
				results <- result{0, 0}
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v1/license-detail:export HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", s.rest)
			go func() {
				for ctx.Err() == nil {
					time.Sleep(time.Second)
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(70 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				results <- result{0, time.Since(start)}
				return
			}
			resp.Body.Close()
			results <- result{resp.StatusCode, time.Since(start)}
		}()
	}
	codes := map[int]int{}
	var worst time.Duration
	for range 20 {
		r := <-results
		codes[r.code]++
		worst = max(worst, r.took)
	}
	return fmt.Sprintf("answers %v, the slowest after %s", codes, worst.Round(time.Millisecond))
}

// resetFlood returns an attack sending HEADERS then RST_STREAM at once on
// conns connections, perConn streams each, reconnecting when dropped.
func (s *server) resetFlood(token string, conns, perConn int) func(ctx context.Context) string {
	return func(ctx context.Context) string {
		block := headerBlock(s.grpcAddr, watchPath, "authorization", "Bearer "+token)
		var sent, drops, refusedConns atomic.Int64
		// A connection refused (a dropped peer's, for -edge-drop-ban) is
		// closed by the server at once: nothing is written to it.
		refusedAtOnce := func(closed <-chan struct{}) bool {
			select {
			case <-closed:
				return true
			case <-time.After(20 * time.Millisecond):
				return false
			}
		}
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := 0
				for n < perConn && ctx.Err() == nil {
					c, fr, closed, err := h2Conn(ctx, attackerIP, s.grpcAddr)
					if err != nil || refusedAtOnce(closed) {
						if c != nil {
							c.Close()
						}
						refusedConns.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					ok := true
					for id := uint32(1); n < perConn && ok && ctx.Err() == nil; id += 2 {
						_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
						_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
						n++
						if n%100 == 0 {
							ok = c.(*flushConn).flush() == nil
							select {
							case <-closed:
								ok = false
							default:
							}
							if ok {
								sent.Add(100)
							}
						}
					}
					_ = c.(*flushConn).flush()
					if ok {
						// Written: the server may still be digesting it. A
						// drop shows as the server closing the connection.
						select {
						case <-closed:
							ok = false
						case <-ctx.Done():
						}
					}
					if !ok {
						drops.Add(1)
						time.Sleep(10 * time.Millisecond)
					}
					c.Close()
				}
			}()
		}
		wg.Wait()
		return fmt.Sprintf("%d HEADERS+RST written; %d connections dropped by the server, %d reconnections refused", sent.Load(), drops.Load(), refusedConns.Load())
	}
}

// wrongTokens: 8,000 REST calls with a wrong token, 8 at a time.
func (s *server) wrongTokens(ctx context.Context) string {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return dialFrom(ctx, attackerIP, a) }}}
	var mu sync.Mutex
	codes := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= 8000 && ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodPost, "http://"+s.rest+"/v1/license-detail:export", strings.NewReader("{}"))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+wrongToken)
				code := 0
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("answers %v", codes)
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func report(ps []phase) {
	quiet := ps[0]
	fmt.Printf("Honest caller: a read every 10 ms from %s (REST and gRPC alternately); quiet p50 %s, p99 %s over %d calls.\n\n",
		honestIP, ms(quiet.honestP50), ms(quiet.honestP99), quiet.honestCalls)
	fmt.Println("| attack | bound | RSS MiB before / peak / after | fds before / peak / after | log lines (not the honest caller's) | audit lines | honest p99 (quiet) | honest calls failed | outcome |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, p := range ps[1:] {
		fmt.Printf("| %s | %s | %s / %s / %s | %d / %d / %d | %d | %d | %s (%s) | %d of %d | %s |\n",
			p.name, p.bound, mib(p.before.rss), mib(p.peak.rss), mib(p.after.rss), p.before.fds, p.peak.fds, p.after.fds,
			p.logLines, p.auditLines, ms(p.honestP99), ms(quiet.honestP99), p.honestKO, p.honestCalls, p.outcome)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
