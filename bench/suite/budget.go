package suite

import (
	"context"
	"fmt"
	"sync"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// createRate is the service's default ExportLicenseDetail budget (B).
const createRate = 18

// budget: a burst of creations, then a watch of each task until FINISHED.
func (r *Runner) budget(ctx context.Context) error {
	n := r.cfg.Creations
	r.printf("## 2. Budget: %d ExportLicenseDetail calls at once, then their watches\n\n", n)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c, err := r.startCluster(ctx, 10, cloudQuota)
	if err != nil {
		return err
	}
	defer c.close()

	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	var lastDone time.Time
	var mu sync.Mutex
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cwpexportv1.NewLicenseExportServiceClient(c.conns[i%len(c.conns)]).ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
			ids[i], errs[i] = res.GetTask().GetTaskId(), err
			mu.Lock()
			lastDone = later(lastDone, time.Now())
			mu.Unlock()
		}()
	}
	wg.Wait()
	makespan := lastDone.Sub(start)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("creation %d: %w", i, err)
		}
	}

	// Watch every task; once all are watched, the cloud finishes them.
	var ws []*watchers
	for _, id := range ids {
		w, err := openWatches(ctx, c.conns, id, 1)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	time.Sleep(2 * time.Second)
	for _, id := range ids {
		if err := c.finish(id); err != nil {
			return err
		}
	}
	var finishedAll time.Duration
	flipped := time.Now()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for FINISHED: %w", ctx.Err())
		}
		if e := w.ends[0]; e.err != nil || e.last.GetTask().GetState() != cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
			return fmt.Errorf("a watch ended with %v %v", e.last, e.err)
		}
	}
	finishedAll = time.Since(flipped)
	st, err := c.stats()
	if err != nil {
		return err
	}
	cr, rd := st.Actions[cloud.ActionExportLicenseDetail], st.Actions[cloud.ActionExportTasks]
	ideal := time.Duration(float64(n) / createRate * float64(time.Second))
	r.printf("| figure | measured | target |\n|---|---|---|\n")
	r.printf("| RequestLimitExceeded seen by the emulator (creations / reads) | **%d / %d** | 0 |\n", cr.Errors["RequestLimitExceeded"], rd.Errors["RequestLimitExceeded"])
	r.printf("| peak requests in any 1-s window (creations / reads) | **%d / %d** | ≤ B = %d |\n", cr.PeakPerSecond, rd.PeakPerSecond, createRate)
	r.printf("| makespan of the %d creations | **%.2f s** = %.3f × %d/B | ≤ 1.05 × %d/B = %.2f s (physical limit at 20/s: %.1f s) |\n",
		n, makespan.Seconds(), float64(makespan)/float64(ideal), n, n, 1.05*ideal.Seconds(), float64(n)/20)
	r.printf("| tasks created / cloud creation calls | %d / %d | equal |\n", cr.TasksCreated, cr.Requests)
	r.printf("| reads for %d watched tasks over the run / all finished after | %d / %s | ≤ 18 per second |\n\n", n, rd.Requests, ms(finishedAll))
	return nil
}
