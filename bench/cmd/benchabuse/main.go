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
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
