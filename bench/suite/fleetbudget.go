package suite

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// fleetRates are the flags fleet1 gives every replica: the cloud's quota
// for both budgets.
var fleetRates = []string{"-create-rate", fmt.Sprint(fleetRate), "-read-rate", fmt.Sprint(fleetRate)}

// budgetResult is what one run of fleet1's workload measured.
type budgetResult struct {
	limited              [2]int64         // RequestLimitExceeded: creations, reads
	peak                 [2]int64         // largest requests in a 1-s window at the emulator
	peakAt               [2]time.Duration // when, from the first creation sent
	createRate           float64          // cloud creations per second, first to last
	makespan             time.Duration
	readRate             float64 // ExportTasks per second while every task is pending and watched
	readWindow           time.Duration
	finishedAll          time.Duration // flip of all tasks → every watch got FINISHED
	notFinished, resumed int
	created, createCalls int64
	burst, steady        phase
	// minCreateGap is the least time between two creations' arrivals at
	// the emulator; crowded, the number of creations that arrived with 20
	// others within a second before them.
	minCreateGap time.Duration
	crowded      int
	// bunching is how far the creations' arrivals crowd their slot grid
	// (see gridBunching): at most L keeps every 1-s window within R.
	bunching, readBunching time.Duration
	// durations of the round trips by label (with the counter).
	durations map[string][]time.Duration
	// failed is the number of creations that answered an error (counted
	// with fleetOpts.countFailures); firstFailure, the first error.
	failed       int
	firstFailure string
}

// phase is a span of a run: the upstream calls the emulator answered and
// the round trips the fleet made to PostgreSQL meanwhile.
type phase struct {
	span           time.Duration
	creates, reads int64
	trips          map[string]int64
}

func (p phase) calls() int64 { return p.creates + p.reads }

func (p phase) total() int64 {
	var n int64
	for _, v := range p.trips {
		n += v
	}
	return n
}

// per divides a number of round trips by a number of calls.
func per(trips, calls int64) float64 {
	if calls == 0 {
		return 0
	}
	return float64(trips) / float64(calls)
}

func diff(a, b map[string]int64) map[string]int64 {
	out := maps.Clone(b)
	for k, v := range a {
		out[k] -= v
		if out[k] == 0 {
			delete(out, k)
		}
	}
	return out
}

// fleetBudget is fleet1: a burst of creations spread round-robin over the
// replicas, each task watched on the next replica, then all finished.
func (r *fleetRunner) fleetBudget(ctx context.Context, run int) error {
	n, reps := r.cfg.Creations, r.cfg.Replicas
	r.printf("## fleet1. Budget: %d creations round-robin over %d replicas, each watched on the next replica (run %d)\n\n", n, reps, run)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	f, err := r.budgetRun(ctx, fleetOpts{replicas: reps, postgres: true, count: true, args: fleetRates})
	if err != nil {
		return err
	}
	var b *budgetResult
	if r.cfg.Baselines {
		if b, err = r.budgetRun(ctx, fleetOpts{replicas: 1}); err != nil {
			return fmt.Errorf("single process: %w", err)
		}
	}
	col := func(format string, fv func(*budgetResult) any) string {
		if b == nil {
			return "—"
		}
		return fmt.Sprintf(format, fv(b))
	}
	r.printf("| figure | fleet: %d replicas, PostgreSQL, -create-rate %d -read-rate %d | single process: SQLite, defaults (18/s) | target |\n|---|---|---|---|\n", reps, fleetRate, fleetRate)
	r.printf("| RequestLimitExceeded at the emulator (creations / reads) | **%d / %d** | %s | 0 |\n", f.limited[0], f.limited[1],
		col("%s", func(b *budgetResult) any { return fmt.Sprintf("%d / %d", b.limited[0], b.limited[1]) }))
	r.printf("| peak requests in any 1-s window (creations / reads); when, from the burst's start | **%d / %d**; %s / %s | %s | ≤ 20 |\n", f.peak[0], f.peak[1],
		signed(f.peakAt[0]), signed(f.peakAt[1]),
		col("%s", func(b *budgetResult) any { return fmt.Sprintf("%d / %d", b.peak[0], b.peak[1]) }))
	r.printf("| creation rate at the emulator, first to last of %d | **%.2f/s** | %s | ≥ 19/s (best %.2f/s) |\n", n, f.createRate,
		col("%.2f/s", func(b *budgetResult) any { return b.createRate }), fleetBestRate)
	r.printf("| read rate at the emulator while all %d tasks are pending and watched (%s) | **%.2f/s** | %s | ≥ 19/s |\n", n, secs(f.readWindow), f.readRate,
		col("%.2f/s", func(b *budgetResult) any { return b.readRate }))
	r.printf("| makespan of the %d creations (client) | %s | %s | |\n", n, secs(f.makespan), col("%s", func(b *budgetResult) any { return secs(b.makespan) }))
	r.printf("| least gap between two creations at the emulator / creations with %d others in the second before | %s / %d | %s | (slots %s apart) |\n", fleetRate,
		ms(f.minCreateGap), f.crowded, col("%s", func(b *budgetResult) any { return fmt.Sprintf("%s / %d", ms(b.minCreateGap), b.crowded) }),
		ms(time.Duration(float64(time.Second)/fleetBestRate)))
	r.printf("| arrivals bunched against the slot grid, max over i < j of (j−i)·gap − (t_j − t_i): creations / steady reads | **%s / %s** | %s | ≤ L = %s keeps ≤ 20 per window |\n",
		ms(f.bunching), ms(f.readBunching), col("%s", func(b *budgetResult) any { return "(18/s grid: " + ms(b.bunching) + " / " + ms(b.readBunching) + ")" }), ms(fleetLateness))
	r.printf("| tasks created / creation calls answered | %d / %d | %s | equal |\n", f.created, f.createCalls,
		col("%s", func(b *budgetResult) any { return fmt.Sprintf("%d / %d", b.created, b.createCalls) }))
	r.printf("| flip of all %d → every watch got FINISHED (watches that did not / resumed) | %s (%d / %d) | %s | |\n", n, secs(f.finishedAll), f.notFinished, f.resumed,
		col("%s", func(b *budgetResult) any {
			return fmt.Sprintf("%s (%d / %d)", secs(b.finishedAll), b.notFinished, b.resumed)
		}))
	budgetPerCreate := per(f.burst.trips[labelCreateSlot], f.burst.creates)
	claimsPerRead := per(f.steady.trips[labelClaim]+f.steady.trips[labelRelease], f.steady.reads)
	r.printf("| budget round trips per creation (slot statements / creations, burst) | **%.2f** (%d / %d) | in process | ≤ 1 |\n",
		budgetPerCreate, f.burst.trips[labelCreateSlot], f.burst.creates)
	r.printf("| budget round trips per read (claims incl. slot and lease, + late slots given back / reads, steady) | **%.2f** (%d + %d / %d) | in process | ≤ 1 |\n",
		claimsPerRead, f.steady.trips[labelClaim], f.steady.trips[labelRelease], f.steady.reads)
	r.printf("| all the fleet's round trips per upstream call, burst (%s) | **%.2f** (%d / %d) | in process | reported |\n",
		secs(f.burst.span), per(f.burst.total(), f.burst.calls()), f.burst.total(), f.burst.calls())
	r.printf("| all the fleet's round trips per upstream call, steady reads (%s) | **%.2f** (%d / %d) | in process | reported |\n\n",
		secs(f.steady.span), per(f.steady.total(), f.steady.calls()), f.steady.total(), f.steady.calls())

	// Where the round trips went.
	labels := slices.Sorted(maps.Keys(f.burst.trips))
	for l := range f.steady.trips {
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	slices.SortFunc(labels, func(a, b string) int {
		return int(f.burst.trips[b]+f.steady.trips[b]) - int(f.burst.trips[a]+f.steady.trips[a])
	})
	r.printf("Round trips to PostgreSQL by statement, all replicas (counted by a proxy that reads the wire protocol: one per Sync or simple Query; " +
		"timed from the request's last byte to the server's ReadyForQuery, over the whole run):\n\n")
	r.printf("| statement | burst: %d creations + %d reads | per upstream call | steady: %d reads | per upstream call | p50 / p99 / max |\n|---|---|---|---|---|---|\n",
		f.burst.creates, f.burst.reads, f.steady.reads)
	for _, l := range labels {
		d := f.durations[l]
		r.printf("| %s | %d | %.3f | %d | %.3f | %s / %s / %s |\n", l, f.burst.trips[l], per(f.burst.trips[l], f.burst.calls()), f.steady.trips[l], per(f.steady.trips[l], f.steady.calls()),
			ms1(percentile(d, 0.5)), ms1(percentile(d, 0.99)), ms1(percentile(d, 1)))
	}
	r.printf("\n")

	r.record("fleet1", "RequestLimitExceeded (creations + reads)", float64(f.limited[0]+f.limited[1]), "%.0f", "0", yes(f.limited[0]+f.limited[1] == 0))
	r.record("fleet1", "peak requests in a 1-s window (max of creations, reads)", float64(max(f.peak[0], f.peak[1])), "%.0f", "≤ 20", yes(max(f.peak[0], f.peak[1]) <= 20))
	r.record("fleet1", "creation rate while queued", f.createRate, "%.2f/s", "≥ 19/s", yes(f.createRate >= 19))
	r.record("fleet1", "read rate while queued", f.readRate, "%.2f/s", "≥ 19/s", yes(f.readRate >= 19))
	r.record("fleet1", "budget round trips per creation", budgetPerCreate, "%.2f", "≤ 1", yes(budgetPerCreate <= 1))
	r.record("fleet1", "budget round trips per read (claim = slot + lease)", claimsPerRead, "%.2f", "≤ 1", yes(claimsPerRead <= 1))
	r.record("fleet1", "all round trips per upstream call, burst", per(f.burst.total(), f.burst.calls()), "%.2f", "reported", nil)
	r.record("fleet1", "all round trips per upstream call, steady reads", per(f.steady.total(), f.steady.calls()), "%.2f", "reported", nil)
	if b != nil {
		r.record("fleet1", "single process: creation rate", b.createRate, "%.2f/s", "", nil)
		r.record("fleet1", "single process: read rate", b.readRate, "%.2f/s", "", nil)
	}
	return nil
}

// latencyDelay is how late fleet6's proxy delivers what the last replica
// and PostgreSQL send each other, each way.
const latencyDelay = 200 * time.Millisecond

// fleetLatency is fleet6: fleet1's workload with the last replica's
// database behind a proxy adding latencyDelay each way, beside the same
// workload without the proxy.
func (r *fleetRunner) fleetLatency(ctx context.Context, run int) error {
	n, reps := r.cfg.Creations, r.cfg.Replicas
	r.printf("## fleet6. Database latency: fleet1's workload (%d creations round-robin over %d replicas, each watched on the next), "+
		"the last replica's database %s away each way (run %d)\n\n", n, reps, latencyDelay, run)
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	slow, err := r.budgetRun(ctx, fleetOpts{replicas: reps, postgres: true, args: fleetRates, lastDelay: latencyDelay, countFailures: true})
	if err != nil {
		return err
	}
	fast, err := r.budgetRun(ctx, fleetOpts{replicas: reps, postgres: true, args: fleetRates})
	if err != nil {
		return err
	}
	r.printf("| figure | last replica's database +%s each way | no proxy | target |\n|---|---|---|---|\n", latencyDelay)
	r.printf("| peak requests in any 1-s window at the emulator (creations / reads) | **%d / %d** | %d / %d | ≤ 20 |\n",
		slow.peak[0], slow.peak[1], fast.peak[0], fast.peak[1])
	r.printf("| RequestLimitExceeded at the emulator (creations / reads) | **%d / %d** | %d / %d | 0 |\n",
		slow.limited[0], slow.limited[1], fast.limited[0], fast.limited[1])
	r.printf("| creation rate, first to last of %d; share of the quota (20/s) | %.2f/s; %.0f %% | %.2f/s; %.0f %% | reported |\n", n,
		slow.createRate, slow.createRate/20*100, fast.createRate, fast.createRate/20*100)
	r.printf("| read rate while all tasks are pending and watched; share of the quota | %.2f/s; %.0f %% | %.2f/s; %.0f %% | reported |\n",
		slow.readRate, slow.readRate/20*100, fast.readRate, fast.readRate/20*100)
	r.printf("| makespan of the %d creations (client) | %s | %s | |\n", n, secs(slow.makespan), secs(fast.makespan))
	r.printf("| tasks created / creation calls answered | %d / %d | %d / %d | equal |\n", slow.created, slow.createCalls, fast.created, fast.createCalls)
	r.printf("| creations answered with an error (first) | %d (%s) | %d | 0 |\n\n", slow.failed, slow.firstFailure, fast.failed)
	peak := max(slow.peak[0], slow.peak[1])
	r.record("fleet6", "peak requests in a 1-s window, one database 200 ms away", float64(peak), "%.0f", "≤ 20", yes(peak <= 20))
	r.record("fleet6", "creation rate, one database 200 ms away", slow.createRate, "%.2f/s", "reported", nil)
	r.record("fleet6", "read rate, one database 200 ms away", slow.readRate, "%.2f/s", "reported", nil)
	return nil
}

// steadyWindow is how long fleet1 measures the reads of its watched tasks.
const steadyWindow = 10 * time.Second

// budgetRun runs fleet1's workload on the processes o describes.
func (r *fleetRunner) budgetRun(ctx context.Context, o fleetOpts) (*budgetResult, error) {
	n := r.cfg.Creations
	e, err := r.startFleet(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	time.Sleep(time.Second) // let the fresh processes settle
	res := &budgetResult{}
	trips := func() map[string]int64 {
		if e.counter == nil {
			return map[string]int64{}
		}
		return e.counter.snapshot()
	}
	st0, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	rt0, t0 := trips(), time.Now()

	var (
		mu       sync.Mutex
		lastDone time.Time
		errs     []error
		follows  []*follow
		watching sync.WaitGroup // every watch got its first message
		done     sync.WaitGroup // every watch ended
		created  sync.WaitGroup
	)
	ids := make([]string, n)
	for i := range n {
		created.Add(1)
		go func() {
			defer created.Done()
			rep := e.replicas[i%len(e.replicas)]
			res, err := rep.client.ExportLicenseDetail(ctx, exportRequest(""))
			mu.Lock()
			lastDone = later(lastDone, time.Now())
			if err != nil {
				errs = append(errs, fmt.Errorf("creation %d on replica %d: %w", i, rep.i+1, err))
			}
			mu.Unlock()
			if err != nil {
				return
			}
			ids[i] = res.GetTask().GetTaskId()
			watching.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				first := sync.OnceFunc(watching.Done)
				fl := e.followTask(ctx, ids[i], i+1, func(*cwpexportv1.WatchExportTaskResponse) { first() })
				first()
				mu.Lock()
				follows = append(follows, fl)
				mu.Unlock()
			}()
		}()
	}
	created.Wait()
	st1, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	rt1, t1 := trips(), time.Now()
	if len(errs) > 0 && !o.countFailures {
		return nil, fmt.Errorf("%d creations failed, the first: %w", len(errs), errs[0])
	}
	res.failed = len(errs)
	if len(errs) > 0 {
		res.firstFailure = errs[0].Error()
	}
	// The tasks of the creations that answered.
	answered := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "" })
	res.makespan = lastDone.Sub(t0)
	res.burst = phase{span: t1.Sub(t0), creates: createCalls(st1) - createCalls(st0), reads: readCalls(st1) - readCalls(st0), trips: diff(rt0, rt1)}

	watching.Wait()
	time.Sleep(time.Second)
	st2, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	rt2, t2 := trips(), time.Now()
	time.Sleep(steadyWindow)
	st3, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	rt3, t3 := trips(), time.Now()
	res.steady = phase{span: t3.Sub(t2), creates: createCalls(st3) - createCalls(st2), reads: readCalls(st3) - readCalls(st2), trips: diff(rt2, rt3)}
	res.readWindow = t3.Sub(t2)
	var polls []time.Time
	for _, t := range allPollTimes(st3.Actions[cloud.ActionExportTasks].PollTimes) {
		if !t.Before(t2) && t.Before(t3) {
			polls = append(polls, t)
		}
	}
	if len(polls) > 1 {
		res.readRate = float64(len(polls)-1) / polls[len(polls)-1].Sub(polls[0]).Seconds()
	}
	res.readBunching = gridBunching(polls, time.Duration(float64(time.Second)/fleetBestRate))

	flipped := time.Now()
	if err := e.finishAll(ctx, answered, &done); err != nil {
		return nil, err
	}
	var lastEnd time.Time
	for _, fl := range follows {
		if fl.err != nil || !finished(fl.last) {
			res.notFinished++
		}
		res.resumed += fl.resumes
		lastEnd = later(lastEnd, fl.ended)
	}
	res.finishedAll = lastEnd.Sub(flipped)

	st, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	cr, rd := st.Actions[cloud.ActionExportLicenseDetail], st.Actions[cloud.ActionExportTasks]
	res.limited = [2]int64{cr.Errors["RequestLimitExceeded"], rd.Errors["RequestLimitExceeded"]}
	res.peak = [2]int64{cr.PeakPerSecond, rd.PeakPerSecond}
	res.peakAt = [2]time.Duration{cr.PeakAt.Sub(t0), rd.PeakAt.Sub(t0)}
	res.created, res.createCalls = cr.TasksCreated, int64(n)
	tasks, err := e.cloudTasks()
	if err != nil {
		return nil, err
	}
	if len(tasks) > 1 {
		res.createRate = float64(len(tasks)-1) / tasks[len(tasks)-1].created.Sub(tasks[0].created).Seconds()
	}
	res.minCreateGap = time.Hour
	for i := 1; i < len(tasks); i++ {
		res.minCreateGap = min(res.minCreateGap, tasks[i].created.Sub(tasks[i-1].created))
		if i >= fleetRate && tasks[i].created.Sub(tasks[i-fleetRate].created) < time.Second {
			res.crowded++
		}
	}
	arrivals := make([]time.Time, len(tasks))
	for i, t := range tasks {
		arrivals[i] = t.created
	}
	res.bunching = gridBunching(arrivals, time.Duration(float64(time.Second)/fleetBestRate))
	if e.counter != nil {
		res.durations = map[string][]time.Duration{}
		for l := range diff(rt0, trips()) {
			res.durations[l] = e.counter.durations(l)
		}
	}
	return res, nil
}

// gridBunching measures how late calls started against the grid of slots
// gap apart that a saturated budget hands out: a call may start up to L
// after its slot, so two calls i < j (in arrival order) are at least
// (j−i)·gap − L apart when every one keeps to that. It returns the largest
// (j−i)·gap − (t_j − t_i), a lower bound of the spread of the calls'
// lateness (slots dropped would widen the grid).
func gridBunching(ts []time.Time, gap time.Duration) time.Duration {
	var worst time.Duration
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			worst = max(worst, time.Duration(j-i)*gap-ts[j].Sub(ts[i]))
		}
	}
	return worst
}

// ms1 is a duration in milliseconds with one decimal.
func ms1(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func createCalls(s emulator.Stats) int64 { return s.Actions[cloud.ActionExportLicenseDetail].Requests }
func readCalls(s emulator.Stats) int64   { return s.Actions[cloud.ActionExportTasks].Requests }
