package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// ghzModule is the load generator, run from the module proxy when no ghz
// is installed; it is not a dependency of this module.
const ghzModule = "github.com/bojand/ghz/cmd/ghz@v0.93.0"

// Load shape of the throughput runs.
const (
	readConcurrency = 50
	readConns       = 4
)

// reads: GetExportTask of a watched task over gRPC (ghz) and REST (a Go
// HTTP loop), against the service and against the baseline answering a
// message of the same size, alternated, medians of Rounds runs.
func (r *Runner) reads(ctx context.Context) error {
	r.printf("## 4. Read throughput: GetExportTask of a watched task\n\n")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := r.startCluster(ctx, 1, cloudQuota)
	if err != nil {
		return err
	}
	defer c.close()
	id, err := c.create(ctx)
	if err != nil {
		return err
	}
	if _, err := openWatches(ctx, c.conns, id, 1); err != nil {
		return err
	}
	get, err := c.client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
	if err != nil {
		return err
	}
	b, _ := proto.Marshal(get)
	respFile := filepath.Join(r.dir, "get.bin")
	if err := os.WriteFile(respFile, b, 0o600); err != nil {
		return err
	}
	base, err := r.startBaseline(ctx, respFile)
	if err != nil {
		return err
	}
	defer base.close()
	ghz, err := findGhz()
	if err != nil {
		return err
	}
	st0, err := c.stats()
	if err != nil {
		return err
	}

	var svcGRPC, baseGRPC, svcREST, baseREST []float64
	restPath := "/v1/export-tasks/" + id
	for round := range r.cfg.Rounds {
		for _, run := range []struct {
			into *[]float64
			f    func() (float64, error)
		}{
			{&svcGRPC, func() (float64, error) { return r.runGhz(ctx, ghz, c.grpcAddr, id) }},
			{&baseGRPC, func() (float64, error) { return r.runGhz(ctx, ghz, base.grpcAddr, id) }},
			{&svcREST, func() (float64, error) { return restLoad(ctx, c.restURL+restPath, r.cfg.Reads) }},
			{&baseREST, func() (float64, error) { return restLoad(ctx, base.httpURL+restPath, r.cfg.Reads) }},
		} {
			rps, err := run.f()
			if err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
			*run.into = append(*run.into, rps)
		}
	}
	st1, err := c.stats()
	if err != nil {
		return err
	}
	pid := parseID(id)
	r.printf("Message: GetExportTaskResponse of %d bytes (protobuf). Load: %d calls per run, %d concurrent, %d connections (gRPC); medians of %d alternated runs.\n\n",
		len(b), r.cfg.Reads, readConcurrency, readConns, r.cfg.Rounds)
	r.printf("| transport | service (req/s) | minimal server (req/s) | ratio | target |\n|---|---|---|---|---|\n")
	r.printf("| gRPC (ghz) | %.0f %v | %.0f %v | **%.2f** | ≥ 0.7 |\n", median(svcGRPC), rounded(svcGRPC), median(baseGRPC), rounded(baseGRPC), median(svcGRPC)/median(baseGRPC))
	r.printf("| REST (Go HTTP loop) | %.0f %v | %.0f %v (net/http, canned JSON) | %.2f | reported |\n", median(svcREST), rounded(svcREST), median(baseREST), rounded(baseREST), median(svcREST)/median(baseREST))
	r.printf("| REST vs the minimal gRPC server | | | %.2f | reported |\n\n", median(svcREST)/median(baseGRPC))
	r.printf("Upstream ExportTasks calls for the task during the %d reads: %d (the schedule's polls only).\n\n",
		2*r.cfg.Rounds*r.cfg.Reads, st1.TaskPolls(pid)-st0.TaskPolls(pid))
	return nil
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}

// findGhz returns the command that runs ghz: an installed one, or go run.
func findGhz() ([]string, error) {
	if p, err := exec.LookPath("ghz"); err == nil {
		return []string{p}, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(string(trimNL(out)), "bin", "ghz")
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
	}
	return []string{"go", "run", ghzModule}, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// runGhz runs ghz against addr and returns its requests per second.
func (r *Runner) runGhz(ctx context.Context, ghz []string, addr, id string) (float64, error) {
	args := append(ghz[1:len(ghz):len(ghz)], "--insecure", "--call", "cwpexport.v1.LicenseExportService.GetExportTask",
		"-d", fmt.Sprintf(`{"task_id":%q}`, id), "-n", fmt.Sprint(r.cfg.Reads), "-c", fmt.Sprint(readConcurrency),
		"--connections", fmt.Sprint(readConns), "-O", "json", addr)
	cmd := exec.CommandContext(ctx, ghz[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("ghz: %w", err)
	}
	var res struct {
		Rps            float64        `json:"rps"`
		StatusCodeDist map[string]int `json:"statusCodeDistribution"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("ghz output: %w", err)
	}
	if n := res.StatusCodeDist["OK"]; n != r.cfg.Reads {
		return 0, fmt.Errorf("ghz: %d of %d calls OK: %v", n, r.cfg.Reads, res.StatusCodeDist)
	}
	return res.Rps, nil
}

// restLoad sends n GETs to url from readConcurrency goroutines over
// keep-alive connections and returns the requests per second.
func restLoad(ctx context.Context, url string, n int) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: readConcurrency, MaxConnsPerHost: readConcurrency}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var (
		left   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	left.Store(int64(n))
	start := time.Now()
	for range readConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("REST %s: %d of %d requests failed", url, f, n)
	}
	return float64(n) / elapsed.Seconds(), nil
}
