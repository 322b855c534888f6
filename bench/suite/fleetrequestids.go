package suite

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// requestIDsResult is what one run of fleet2's workload measured.
type requestIDsResult struct {
	ids           int
	cloudTasks    int64 // tasks the emulator created
	one, none     int   // request ids that made exactly one / no cloud task
	more          int   // request ids that made more than one
	agree         int   // request ids whose two answers carry the same task id
	failed        int   // answers that were errors after the retries
	retries       int   // Unavailable answers retried by the client
	makespan      time.Duration
	limited, peak int64 // creations throttled; peak per 1-s window
	creationCalls int64 // ExportLicenseDetail calls the emulator answered
	slots         int64 // creation slots the fleet's budget handed out (-1: not counted)
	firstErr      error
}

// fleetRequestIDs is fleet2: each request id sent to two replicas at once.
func (r *fleetRunner) fleetRequestIDs(ctx context.Context, run int) error {
	n, reps := r.cfg.RequestIDs, r.cfg.Replicas
	r.printf("## fleet2. Creation across replicas: %d request ids, each sent to two replicas at once (run %d)\n\n", n, run)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	f, err := r.requestIDsRun(ctx, fleetOpts{replicas: reps, postgres: true, count: true, args: fleetRates})
	if err != nil {
		return err
	}
	var b *requestIDsResult
	if r.cfg.Baselines {
		if b, err = r.requestIDsRun(ctx, fleetOpts{replicas: 1}); err != nil {
			return fmt.Errorf("single process: %w", err)
		}
	}
	col := func(fv func(*requestIDsResult) string) string {
		if b == nil {
			return "—"
		}
		return fv(b)
	}
	r.printf("| figure | fleet: %d replicas (replica i and i+1), PostgreSQL | single process: both calls to it, SQLite | target |\n|---|---|---|---|\n", reps)
	r.printf("| cloud tasks created / request ids | **%d / %d** | %s | equal |\n", f.cloudTasks, f.ids, col(func(b *requestIDsResult) string { return fmt.Sprintf("%d / %d", b.cloudTasks, b.ids) }))
	r.printf("| request ids that made exactly one cloud task / none / more (the emulator's journal, by tag) | **%d / %d / %d** | %s | %d / 0 / 0 |\n", f.one, f.none, f.more,
		col(func(b *requestIDsResult) string { return fmt.Sprintf("%d / %d / %d", b.one, b.none, b.more) }), n)
	r.printf("| request ids whose two answers carry the same task id | **%d** | %s | %d |\n", f.agree, col(func(b *requestIDsResult) string { return fmt.Sprint(b.agree) }), n)
	r.printf("| answers that failed / Unavailable answers retried | %d / %d | %s | 0 / — |\n", f.failed, f.retries, col(func(b *requestIDsResult) string { return fmt.Sprintf("%d / %d", b.failed, b.retries) }))
	r.printf("| RequestLimitExceeded / peak creations in a 1-s window | %d / %d | %s | 0 / ≤ 20 |\n", f.limited, f.peak, col(func(b *requestIDsResult) string { return fmt.Sprintf("%d / %d", b.limited, b.peak) }))
	r.printf("| creation slots taken from the fleet's budget / cloud creation calls | %d / %d | in process | |\n", f.slots, f.creationCalls)
	r.printf("| makespan of the %d calls | %s = %d slots / %.2f per s | %s | |\n\n", 2*n, secs(f.makespan), f.slots, fleetBestRate, col(func(b *requestIDsResult) string { return secs(b.makespan) }))
	if f.firstErr != nil {
		r.printf("First failure: %v\n\n", f.firstErr)
	}
	r.record("fleet2", "cloud tasks for the request ids (ids with exactly one)", float64(f.one), "%.0f", fmt.Sprintf("%d", n), yes(f.one == n && int(f.cloudTasks) == n))
	r.record("fleet2", "makespan of the calls", f.makespan.Seconds(), "%.2f s", "", nil)
	r.record("fleet2", "request ids whose two answers agree", float64(f.agree), "%.0f", fmt.Sprintf("%d", n), yes(f.agree == n))
	return nil
}

// requestIDsRun runs fleet2's workload on the processes o describes: each
// id to replica i and i+1 (the same process when there is one).
func (r *fleetRunner) requestIDsRun(ctx context.Context, o fleetOpts) (*requestIDsResult, error) {
	n := r.cfg.RequestIDs
	e, err := r.startFleet(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	time.Sleep(time.Second)
	res := &requestIDsResult{ids: n}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	answers := make([][2]string, n)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		last time.Time
	)
	startGun := make(chan struct{})
	for i := range n {
		for k := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep := e.replicas[(i+k)%len(e.replicas)]
				<-startGun
				for {
					got, err := rep.client.ExportLicenseDetail(ctx, exportRequest(ids[i]))
					mu.Lock()
					if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
						res.retries++
						mu.Unlock()
						time.Sleep(250 * time.Millisecond)
						continue
					}
					last = later(last, time.Now())
					if err != nil {
						res.failed++
						if res.firstErr == nil {
							res.firstErr = fmt.Errorf("request id %s on replica %d: %w", ids[i], rep.i+1, err)
						}
					} else {
						answers[i][k] = got.GetTask().GetTaskId()
					}
					mu.Unlock()
					return
				}
			}()
		}
	}
	start := time.Now()
	close(startGun)
	wg.Wait()
	res.makespan = last.Sub(start)
	for _, a := range answers {
		if a[0] != "" && a[0] == a[1] {
			res.agree++
		}
	}
	st, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	cr := st.Actions[cloud.ActionExportLicenseDetail]
	res.cloudTasks, res.limited, res.peak, res.creationCalls = cr.TasksCreated, cr.Errors["RequestLimitExceeded"], cr.PeakPerSecond, cr.Requests
	res.slots = -1
	if e.counter != nil {
		res.slots = e.counter.snapshot()[labelCreateSlot]
	}
	tasks, err := e.cloudTasks()
	if err != nil {
		return nil, err
	}
	perID := map[string]int{}
	for _, t := range tasks {
		perID[t.requestID]++
	}
	for _, id := range ids {
		switch perID[id] {
		case 0:
			res.none++
		case 1:
			res.one++
		default:
			res.more++
		}
	}
	return res, nil
}
