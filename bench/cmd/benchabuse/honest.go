package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

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
