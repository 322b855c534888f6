package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// watchers are watch streams of one task.
type watchers struct {
	first sync.WaitGroup // done when every stream got its first message
	mu    sync.Mutex
	ends  []watchEnd
	done  chan struct{} // closed when every stream ended
}

// watchEnd is how one stream ended.
type watchEnd struct {
	at    time.Time
	last  *cwpexportv1.WatchExportTaskResponse
	err   error
	polls int64
}

// openWatches opens n WatchExportTask streams of task id, spread round-robin
// over conns, and waits until each got its first message.
func openWatches(ctx context.Context, conns []*grpc.ClientConn, id string, n int) (*watchers, error) {
	w := &watchers{done: make(chan struct{})}
	var all sync.WaitGroup
	for i := range n {
		stream, err := cwpexportv1.NewLicenseExportServiceClient(conns[i%len(conns)]).WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
		if err != nil {
			return nil, fmt.Errorf("open watch %d: %w", i, err)
		}
		w.first.Add(1)
		all.Add(1)
		go func() {
			defer all.Done()
			first := true
			var end watchEnd
			for {
				m, err := stream.Recv()
				if first {
					w.first.Done()
					first = false
				}
				if err != nil {
					end.at = time.Now()
					if !errors.Is(err, io.EOF) {
						end.err = err
					}
					break
				}
				end.last, end.polls = m, m.GetProgress().GetPollCount()
			}
			w.mu.Lock()
			w.ends = append(w.ends, end)
			w.mu.Unlock()
		}()
	}
	go func() { all.Wait(); close(w.done) }()
	firstDone := make(chan struct{})
	go func() { w.first.Wait(); close(firstDone) }()
	select {
	case <-firstDone:
		return w, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fanout: N idle watch streams of one pending task, then the task finishes.
func (r *Runner) fanout(ctx context.Context) error {
	n, nconns := r.cfg.Streams, r.cfg.Conns
	r.printf("## 1. Fan-out: %d WatchExportTask streams of one task over %d connections\n\n", n, nconns)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	c, err := r.startCluster(ctx, nconns, cloudQuota)
	if err != nil {
		return err
	}
	defer c.close()
	id, err := c.create(ctx)
	if err != nil {
		return err
	}
	get, err := c.client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let the freshly started process settle
	rss0, _ := c.srv.rss()
	opened := time.Now()
	w, err := openWatches(ctx, c.conns, id, n)
	if err != nil {
		return err
	}
	openTook := time.Since(opened)
	time.Sleep(2 * time.Second)
	rss1, _ := c.srv.rss()
	cpuIdle0, _ := c.srv.cpu()
	const idleWindow = 5 * time.Second // one heartbeat period
	time.Sleep(idleWindow)
	cpuIdle1, _ := c.srv.cpu()
	rss2, _ := c.srv.rss()
	perStream := float64(max(rss1, rss2)-rss0) / float64(n)

	// Let the task be polled a few times, then finish it.
	for {
		st, err := c.stats()
		if err != nil {
			return err
		}
		if st.TaskPolls(parseID(id)) >= 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu0, _ := c.srv.cpu()
	flipped := time.Now()
	if err := c.finish(id); err != nil {
		return err
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for FINISHED: %w", ctx.Err())
	}
	cpu1, _ := c.srv.cpu()
	st, err := c.stats()
	if err != nil {
		return err
	}
	upstream := st.TaskPolls(parseID(id))
	var (
		last      time.Time
		observed  time.Time
		delivery  []time.Duration
		failed    int
		pollsSeen = map[int64]int{}
	)
	for _, e := range w.ends {
		if e.err != nil || e.last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
			failed++
			continue
		}
		pollsSeen[e.polls]++
		observed = e.last.GetTask().GetObserveTime().AsTime()
		delivery = append(delivery, e.at.Sub(observed))
		last = later(last, e.at)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d streams did not end with FINISHED", failed, n)
	}

	// The baseline: a bare grpc-go server holding as many idle streams.
	respFile := filepath.Join(r.dir, "get.bin")
	b, _ := proto.Marshal(get)
	if err := os.WriteFile(respFile, b, 0o600); err != nil {
		return err
	}
	base, err := r.startBaseline(ctx, respFile)
	if err != nil {
		return err
	}
	defer base.close()
	bconns, err := dialN(base.grpcAddr, nconns)
	if err != nil {
		return err
	}
	defer closeAll(bconns)
	time.Sleep(time.Second)
	brss0, _ := base.p.rss()
	if _, err := openWatches(ctx, bconns, id, n); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	brss1, _ := base.p.rss()
	bPerStream := float64(brss1-brss0) / float64(n)

	r.printf("| figure | service | bare grpc-go server | target |\n|---|---|---|---|\n")
	told := fmt.Sprintf("%v (streams told each count)", pollsSeen)
	if len(pollsSeen) == 1 {
		told = fmt.Sprintf("%d (all %d streams were told %d)", firstKey(pollsSeen), n, firstKey(pollsSeen))
	}
	r.printf("| upstream ExportTasks calls for the task / polls the service reports | %d / %s = **%.2f** | | exactly 1 |\n", upstream, told, float64(upstream)/float64(firstKey(pollsSeen)))
	r.printf("| memory per idle stream (RSS growth / streams) | **%s** (%s → %s) | %s (%s → %s) | ≤ 16 KiB |\n",
		kib(perStream), mib(rss0), mib(max(rss1, rss2)), kib(bPerStream), mib(brss0), mib(brss1))
	r.printf("| time to open %d streams and get their first message | %s | | |\n", n, ms(openTook))
	r.printf("| service CPU while the streams idle (heartbeats every 5s) | %.1f%% of a core | | |\n", 100*float64(cpuIdle1-cpuIdle0)/float64(idleWindow))
	r.printf("| finish → all %d streams got FINISHED | **%s** | | |\n", n, ms(last.Sub(flipped)))
	r.printf("|  of which finish → the poll that saw it | %s | | ≤ min poll interval (1s) |\n", ms(observed.Sub(flipped)))
	r.printf("|  of which that poll → message received, p50 / p99 / max | %s / %s / %s | | |\n",
		ms(percentile(delivery, 0.5)), ms(percentile(delivery, 0.99)), ms(percentile(delivery, 1)))
	r.printf("| service CPU to wake and notify the %d streams | %s | | |\n\n", n, ms(cpu1-cpu0))
	return nil
}

func firstKey(m map[int64]int) int64 {
	for k := range m {
		return k
	}
	return 0
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func parseID(id string) int64 {
	var n int64
	fmt.Sscan(id, &n)
	return n
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// baselineProc is the baseline server process.
type baselineProc struct {
	p        *proc
	grpcAddr string
	httpURL  string
}

func (b *baselineProc) close() { b.p.stop() }

func (r *Runner) startBaseline(ctx context.Context, respFile string) (*baselineProc, error) {
	ga, err := freeAddr()
	if err != nil {
		return nil, err
	}
	ha, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := startProc(r.dir, "baselined", nil, r.bin("baselined"), "-grpc-addr", ga, "-http-addr", ha, "-response", respFile)
	if err != nil {
		return nil, err
	}
	b := &baselineProc{p: p, grpcAddr: ga, httpURL: "http://" + ha}
	if err := waitHTTP(ctx, b.httpURL+"/"); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}
