package suite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// readRate and minPoll are the service's defaults: B reads per second and
// the floor between two polls of a task.
const (
	readRate = 18
	minPoll  = time.Second
)

// latency: with K tasks pending, each watched by one stream, tasks finish
// at random moments; the time from the emulator's flip to the watcher's
// FINISHED message is measured. A finished task is replaced by a new one
// so that K stays constant.
func (r *Runner) latency(ctx context.Context) error {
	r.printf("## 3. Notify latency: emulator flip → FINISHED message, K tasks pending\n\n")
	r.printf("| K | samples | p50 | p90 | max | bound max(1s, K/B), B=%d | p50 / bound | target p50 ≤ 0.6 × bound | best the cloud's 20/s allows: max(1s, K/20) | peak reads in 1 s | RequestLimitExceeded |\n|---|---|---|---|---|---|---|---|---|---|---|\n", readRate)
	for _, k := range []int{1, 10, 100} {
		if err := r.latencyK(ctx, k); err != nil {
			return fmt.Errorf("K=%d: %w", k, err)
		}
	}
	r.printf("\n")
	return nil
}

func (r *Runner) latencyK(ctx context.Context, k int) error {
	period := max(minPoll, time.Duration(float64(k)/readRate*float64(time.Second)))
	samples := map[int]int{1: 16, 10: 40, 100: 40}[k]
	// Few flips per period keep the tasks finished but not yet observed,
	// which still share the budget, a small part of K.
	flipsPerPeriod := map[int]float64{1: 1, 10: 3, 100: 6}[k]
	if r.cfg.Quick {
		samples /= 2
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c, err := r.startCluster(ctx, 4, cloudQuota)
	if err != nil {
		return err
	}
	defer c.close()

	var (
		mu      sync.Mutex
		pending []*latencyTask
		lats    []time.Duration
		wg      sync.WaitGroup
		errOnce error
	)
	add := func() error {
		t, err := startLatencyTask(ctx, c, c.conns)
		if err != nil {
			return err
		}
		mu.Lock()
		pending = append(pending, t)
		mu.Unlock()
		return nil
	}
	for range k {
		if err := add(); err != nil {
			return err
		}
	}
	// One period lets the schedule settle into its steady rhythm.
	time.Sleep(period)
	rng := rand.New(rand.NewPCG(uint64(k), 42))
	for range samples {
		// Flips come at random moments, independent of the poll schedule;
		// with one task, after the previous one was replaced.
		gap := time.Duration(rng.Float64() * 2 * float64(period) / flipsPerPeriod)
		time.Sleep(gap)
		mu.Lock()
		if len(pending) == 0 {
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		i := rng.IntN(len(pending))
		t := pending[i]
		pending = append(pending[:i], pending[i+1:]...)
		mu.Unlock()
		flipped := time.Now()
		if err := c.finish(t.id); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := t.wait(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errOnce = err
				return
			}
			lats = append(lats, at.Sub(flipped))
		}()
		if k == 1 {
			wg.Wait()
		}
		if err := add(); err != nil {
			return err
		}
	}
	wg.Wait()
	if errOnce != nil {
		return errOnce
	}
	st, err := c.stats()
	if err != nil {
		return err
	}
	rd := st.Actions[cloud.ActionExportTasks]
	p50 := percentile(lats, 0.5)
	best := max(minPoll, time.Duration(float64(k)/20*float64(time.Second)))
	r.printf("| %d | %d | **%s** | %s | %s | %s | %.2f | %s | %s | %d | %d |\n", k, len(lats), ms(p50), ms(percentile(lats, 0.9)), ms(percentile(lats, 1)),
		ms(period), float64(p50)/float64(period), ms(time.Duration(0.6*float64(period))), ms(best), rd.PeakPerSecond, rd.Errors["RequestLimitExceeded"])
	return nil
}

// latencyTask is a pending task with one watch stream.
type latencyTask struct {
	id       string
	finished chan time.Time
	failed   chan error
}

func startLatencyTask(ctx context.Context, c *cluster, conns []*grpc.ClientConn) (*latencyTask, error) {
	id, err := c.create(ctx)
	if err != nil {
		return nil, err
	}
	stream, err := cwpexportv1.NewLicenseExportServiceClient(conns[rand.IntN(len(conns))]).WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
	if err != nil {
		return nil, err
	}
	t := &latencyTask{id: id, finished: make(chan time.Time, 1), failed: make(chan error, 1)}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				t.failed <- fmt.Errorf("watch of task %s ended: %w", id, err)
				return
			}
			if m.GetTask().GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
				t.finished <- time.Now()
				return
			}
		}
	}()
	return t, nil
}

func (t *latencyTask) wait(ctx context.Context) (time.Time, error) {
	select {
	case at := <-t.finished:
		return at, nil
	case err := <-t.failed:
		return time.Time{}, err
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}
