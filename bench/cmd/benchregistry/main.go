// Command benchregistry measures the task registry and DownloadExport on
// real processes: it builds cwpexportd and cwp-emulator, runs them on
// loopback ports, and reports
//
//   - a large export (1 GiB by default) downloaded via gRPC and via REST:
//     SHA-256 against the emulator's, the server's RSS growth, and the
//     throughput as a ratio to curl fetching the emulator's URL directly,
//     medians over interleaved rounds;
//   - 10,000 creations with request_id (each id sent twice, the copies
//     concurrently): upstream creations against distinct ids, latency and
//     rate beside creations without request_id in the same run;
//   - the latency of ListExportTasks pages.
//
// It prints a Markdown report on stdout.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/emulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchregistry:", err)
		os.Exit(1)
	}
}

type config struct {
	fileBytes   int64
	rounds      int
	creations   int
	concurrency int
	listReps    int
	skipFile    bool
}

func run() error {
	var c config
	flag.Int64Var(&c.fileBytes, "file-bytes", 1<<30, "size of the exported file to download")
	flag.IntVar(&c.rounds, "rounds", 3, "download rounds per path (medians are reported)")
	flag.IntVar(&c.creations, "creations", 10000, "creations with request_id (each id is sent twice)")
	flag.IntVar(&c.concurrency, "concurrency", 32, "concurrent creation clients")
	flag.IntVar(&c.listReps, "list-reps", 200, "calls per list-page measurement")
	flag.BoolVar(&c.skipFile, "skip-download", false, "skip the download benchmark")
	flag.Parse()

	work, err := os.MkdirTemp("", "benchregistry-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Fprintln(os.Stderr, "building binaries...")
	build := exec.Command("go", "build", "-o", work+"/", "./cmd/cwpexportd", "./cmd/cwp-emulator")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	id, key := "AKIDbench"+rand.Text(), rand.Text()
	env := append(os.Environ(), "TENCENTCLOUD_SECRET_ID="+id, "TENCENTCLOUD_SECRET_KEY="+key)
	emuAddr := freeAddr()
	emu, err := startProcess(env, filepath.Join(work, "cwp-emulator"), "-listen", emuAddr, "-pending", "300ms", "-rate-limit", "-1")
	if err != nil {
		return err
	}
	defer stop(emu)
	grpcAddr, restAddr := freeAddr(), freeAddr()
	srv, err := startProcess(env, filepath.Join(work, "cwpexportd"), "-data-dir", filepath.Join(work, "data"),
		"-grpc-addr", grpcAddr, "-rest-addr", restAddr, "-metrics-addr", "127.0.0.1:0", "-cloud-endpoint", emuAddr, "-cloud-scheme", "HTTP", "-insecure-allow-private-cloud",
		"-create-rate", "100000", "-log-format", "json")
	if err != nil {
		return err
	}
	defer stop(srv)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := cwpexportv1.NewLicenseExportServiceClient(conn)
	if err := waitReady(client); err != nil {
		return err
	}
	b := &bench{cfg: c, client: client, emuURL: "http://" + emuAddr, restURL: "http://" + restAddr, srvPID: srv.Process.Pid}

	fmt.Printf("# Registry and download benchmarks\n\n")
	fmt.Printf("Run %s on %d CPUs; `go run ./bench/cmd/benchregistry` (server and emulator are separate processes on loopback).\n\n",
		time.Now().UTC().Format(time.RFC3339), numCPU())
	if !c.skipFile {
		if err := b.download(); err != nil {
			return fmt.Errorf("download benchmark: %w", err)
		}
	}
	if err := b.registry(); err != nil {
		return fmt.Errorf("registry benchmark: %w", err)
	}
	return nil
}

type bench struct {
	cfg     config
	client  cwpexportv1.LicenseExportServiceClient
	emuURL  string
	restURL string
	srvPID  int
}

// download measures the three paths to the same file, interleaved.
func (b *bench) download() error {
	ctx := context.Background()
	kw := fmt.Sprintf("EMULATOR_BYTES_%d", b.cfg.fileBytes)
	task, err := b.finishedTask(ctx, kw)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "task %s finished; asking the emulator for its file's SHA-256...\n", task.GetTaskId())
	var info emulator.FileInfo
	if err := getJSON(b.emuURL+"/_emulator/tasks/"+task.GetTaskId()+"/file", &info); err != nil {
		return err
	}
	type result struct {
		secs   []float64
		growth []int64
		ok     bool
	}
	paths := []string{"curl → emulator URL (baseline)", "curl → service REST", "Go gRPC client → service"}
	res := make([]result, len(paths))
	for i := range res {
		res[i].ok = true
	}
	for round := 0; round < b.cfg.rounds; round++ {
		for p := range paths {
			fmt.Fprintf(os.Stderr, "round %d: %s\n", round+1, paths[p])
			before := rss(b.srvPID)
			peak := &peakSampler{pid: b.srvPID}
			peak.start()
			start := time.Now()
			var sum string
			var n int64
			var err error
			switch p {
			case 0:
				sum, n, err = curlSHA(task.GetDownloadUrl())
			case 1:
				sum, n, err = curlSHA(b.restURL + "/v1/export-tasks/" + task.GetTaskId() + ":download")
			case 2:
				sum, n, err = b.grpcSHA(ctx, task.GetTaskId())
			}
			elapsed := time.Since(start).Seconds()
			top := peak.stop()
			if err != nil {
				return fmt.Errorf("%s: %w", paths[p], err)
			}
			if sum != info.SHA256 || n != info.Size {
				res[p].ok = false
				fmt.Fprintf(os.Stderr, "MISMATCH on %s: %d bytes %s, want %d bytes %s\n", paths[p], n, sum, info.Size, info.SHA256)
			}
			res[p].secs = append(res[p].secs, elapsed)
			res[p].growth = append(res[p].growth, max(0, top-before))
		}
	}
	base := float64(info.Size) / median(res[0].secs)
	fmt.Printf("## DownloadExport of a %s export\n\n", mib(info.Size))
	fmt.Printf("Emulator SHA-256 `%s`; %d interleaved rounds; medians. Every client hashes what it receives (curl through `sha256sum`).\n\n", info.SHA256, b.cfg.rounds)
	fmt.Printf("| path | SHA-256 equal | median time | throughput | ratio to curl direct | server RSS growth (max) |\n|---|---|---|---|---|---|\n")
	for p, r := range res {
		tput := float64(info.Size) / median(r.secs)
		growth := "—"
		if p > 0 {
			growth = mib(slices.Max(r.growth))
		}
		fmt.Printf("| %s | %v | %.2f s | %.0f MiB/s | %.2f | %s |\n", paths[p], r.ok, median(r.secs), tput/(1<<20), tput/base, growth)
	}
	fmt.Println()
	return nil
}

func (b *bench) finishedTask(ctx context.Context, keyword string) (*cwpexportv1.ExportTask, error) {
	stream, err := b.client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{
		Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{keyword}}},
	})
	if err != nil {
		return nil, err
	}
	var last *cwpexportv1.ExportLicenseDetailAndWatchResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		last = m
	}
	if last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
		return nil, fmt.Errorf("task ended %v", last.GetTask())
	}
	return last.GetTask(), nil
}

func (b *bench) grpcSHA(ctx context.Context, id string) (string, int64, error) {
	stream, err := b.client.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: id})
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	var n int64
	var final string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", n, err
		}
		h.Write(m.GetData())
		n += int64(len(m.GetData()))
		if m.GetSha256() != "" {
			final = m.GetSha256()
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if final != sum {
		return "", n, fmt.Errorf("the stream's final SHA-256 %s differs from the received bytes' %s", final, sum)
	}
	return sum, n, nil
}

// curlSHA fetches url with curl piped through sha256sum; curl reports the
// byte count on stderr.
func curlSHA(url string) (string, int64, error) {
	cmd := exec.Command("bash", "-o", "pipefail", "-c", `curl -sS --fail -w '%{stderr}%{size_download}' "$0" | sha256sum`, url)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", 0, fmt.Errorf("%w: %s", err, errOut.String())
	}
	size, err := strconv.ParseInt(strings.TrimSpace(errOut.String()), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("curl reported %q", errOut.String())
	}
	sum, _, _ := strings.Cut(out.String(), " ")
	return sum, size, nil
}

// registry measures creations with request_id and list pages.
func (b *bench) registry() error {
	ctx := context.Background()
	before, err := b.upstreamCreations()
	if err != nil {
		return err
	}
	// Warm up connections and the database file; not reported.
	if _, _, err := b.create(ctx, 200, func(int) string { return "" }); err != nil {
		return err
	}
	before, err = b.upstreamCreations()
	if err != nil {
		return err
	}
	// Baseline: creations without request_id (registry insert only).
	plain := b.cfg.creations / 5
	plainLat, plainSecs, err := b.create(ctx, plain, func(int) string { return "" })
	if err != nil {
		return err
	}
	afterPlain, _ := b.upstreamCreations()
	// Each distinct id is sent twice, by two workers at about the same time.
	ids := make([]string, b.cfg.creations/2)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	ridLat, ridSecs, err := b.create(ctx, len(ids)*2, func(i int) string { return ids[i/2] })
	if err != nil {
		return err
	}
	after, err := b.upstreamCreations()
	if err != nil {
		return err
	}
	// A retry round: every id again, sequentially after a pause; no new task.
	retryLat, retrySecs, err := b.create(ctx, len(ids), func(i int) string { return ids[i] })
	if err != nil {
		return err
	}
	final, _ := b.upstreamCreations()

	fmt.Printf("## Creations with request_id\n\n")
	fmt.Printf("%d concurrent clients; the emulator counts upstream creations (`/_emulator/stats`). Latency is per call, medians and p99.\n\n", b.cfg.concurrency)
	fmt.Printf("| run | calls | distinct ids | upstream creations | calls/s | p50 | p99 |\n|---|---|---|---|---|---|---|\n")
	fmt.Printf("| without request_id (baseline) | %d | — | %d | %.0f | %s | %s |\n", plain, afterPlain-before, float64(plain)/plainSecs, ms(pct(plainLat, 50)), ms(pct(plainLat, 99)))
	fmt.Printf("| with request_id, each id twice at once | %d | %d | %d | %.0f | %s | %s |\n", len(ids)*2, len(ids), after-afterPlain, float64(len(ids)*2)/ridSecs, ms(pct(ridLat, 50)), ms(pct(ridLat, 99)))
	fmt.Printf("| retries of those ids | %d | %d | %d | %.0f | %s | %s |\n\n", len(ids), len(ids), final-after, float64(len(ids))/retrySecs, ms(pct(retryLat, 50)), ms(pct(retryLat, 99)))
	fmt.Printf("p50 ratio with/without request_id: %.2f. Upstream creations equal distinct ids: %v.\n\n", float64(pct(ridLat, 50))/float64(pct(plainLat, 50)), after-afterPlain == int64(len(ids)) && final == after)

	return b.listPages(ctx)
}

func (b *bench) upstreamCreations() (int64, error) {
	var st emulator.Stats
	if err := getJSON(b.emuURL+"/_emulator/stats", &st); err != nil {
		return 0, err
	}
	return st.Actions["ExportLicenseDetail"].TasksCreated, nil
}

// create sends n creations from the configured number of workers; call i
// carries request id rid(i).
func (b *bench) create(ctx context.Context, n int, rid func(int) string) ([]time.Duration, float64, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range b.cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				_, err := b.client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{RequestId: rid(i)})
				lat[i] = time.Since(t0)
				if err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start).Seconds(), firstErr
}

// listPages measures pages of the registry now holding the creations.
func (b *bench) listPages(ctx context.Context) error {
	// The token of a page in the middle of the registry, for the deep-page
	// case.
	var deep string
	pages := max(1, (b.cfg.creations*6/5)/50/2)
	for range pages {
		p, err := b.client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 50, PageToken: deep})
		if err != nil {
			return err
		}
		deep = p.GetNextPageToken()
	}
	cases := []struct {
		name string
		req  *cwpexportv1.ListExportTasksRequest
	}{
		{"first page, 50", &cwpexportv1.ListExportTasksRequest{}},
		{fmt.Sprintf("page %d, 50 (token)", pages+1), &cwpexportv1.ListExportTasksRequest{PageToken: deep}},
		{"first page, 1000", &cwpexportv1.ListExportTasksRequest{PageSize: 1000}},
		{"first page, 50, state FINISHED (as observed so far)", &cwpexportv1.ListExportTasksRequest{State: cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED}},
	}
	fmt.Printf("## ListExportTasks page latency (gRPC, registry of the tasks above)\n\n")
	fmt.Printf("| page | tasks returned | p50 | p99 |\n|---|---|---|---|\n")
	for _, c := range cases {
		lat := make([]time.Duration, b.cfg.listReps)
		var got int
		for i := range lat {
			t0 := time.Now()
			p, err := b.client.ListExportTasks(ctx, c.req)
			lat[i] = time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			got = len(p.GetTasks())
		}
		fmt.Printf("| %s | %d | %s | %s |\n", c.name, got, ms(pct(lat, 50)), ms(pct(lat, 99)))
	}
	fmt.Println()
	return nil
}

// peakSampler records a process's largest RSS while it runs.
type peakSampler struct {
	pid  int
	peak atomic.Int64
	done chan struct{}
	wg   sync.WaitGroup
}

func (p *peakSampler) start() {
	p.done = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := rss(p.pid); v > p.peak.Load() {
				p.peak.Store(v)
			}
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (p *peakSampler) stop() int64 {
	close(p.done)
	p.wg.Wait()
	return p.peak.Load()
}

// rss is a process's resident set size in bytes, from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func startProcess(env []string, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	return cmd, cmd.Start()
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitReady(c cwpexportv1.LicenseExportServiceClient) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 1})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not answer within 30s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(v []time.Duration, p int) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, strings.Count(string(b), "processor\t:"))
}
