package suite

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// fanoutResult is what one run of fleet3's workload measured.
type fanoutResult struct {
	streams        int
	upstream       int64         // the emulator's polls of the task
	told           map[int64]int // poll counts the FINISHED messages carried → streams
	perStream      float64       // RSS growth per idle stream, bytes
	rss0, rss1     int64
	open           time.Duration // to open the streams and get their first message
	flipToAll      time.Duration // flip → every stream got FINISHED
	flipToPoll     time.Duration // flip → the poll that saw it
	delivery       [3]time.Duration
	failed         int
	cpuIdle        float64 // the replicas' CPU while the streams idle, in cores
	cpuNotify      time.Duration
	pollsPerReport float64
}

// fleetFanout is fleet3: watchers of one task spread over the replicas.
func (r *fleetRunner) fleetFanout(ctx context.Context, run int) error {
	n, reps := r.cfg.Streams, r.cfg.Replicas
	r.printf("## fleet3. Fan-out: %d watchers of one task over %d connections spread over %d replicas (run %d)\n\n", n, r.cfg.Conns, reps, run)
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	f, err := r.fanoutRun(ctx, fleetOpts{replicas: reps, postgres: true, args: fleetRates})
	if err != nil {
		return err
	}
	var b *fanoutResult
	if r.cfg.Baselines {
		if b, err = r.fanoutRun(ctx, fleetOpts{replicas: 1}); err != nil {
			return fmt.Errorf("single process: %w", err)
		}
	}
	col := func(fv func(*fanoutResult) string) string {
		if b == nil {
			return "— (docs/BENCHMARKS.md: 1.00, 14.7 KiB, 961 ms)"
		}
		return fv(b)
	}
	told := func(x *fanoutResult) string {
		if len(x.told) == 1 {
			return fmt.Sprintf("%d / %d (all %d streams were told %d) = **%.2f**", x.upstream, firstKey(x.told), x.streams, firstKey(x.told), x.pollsPerReport)
		}
		return fmt.Sprintf("%d / %v (streams told each count)", x.upstream, x.told)
	}
	r.printf("| figure | fleet: %d replicas, PostgreSQL | single process, SQLite | target |\n|---|---|---|---|\n", reps)
	r.printf("| upstream ExportTasks calls for the task / polls the streams were told | %s | %s | exactly 1 |\n", told(f), col(told))
	r.printf("| flip → every stream got FINISHED | **%s** | %s | ≤ 1.3 s (single process: 0.96 s) |\n", ms(f.flipToAll), col(func(b *fanoutResult) string { return ms(b.flipToAll) }))
	r.printf("|  of which flip → the poll that saw it | %s | %s | ≤ the floor (1 s) |\n", ms(f.flipToPoll), col(func(b *fanoutResult) string { return ms(b.flipToPoll) }))
	r.printf("|  of which that poll → message received, p50 / p99 / max | %s / %s / %s | %s | |\n", ms(f.delivery[0]), ms(f.delivery[1]), ms(f.delivery[2]),
		col(func(b *fanoutResult) string {
			return fmt.Sprintf("%s / %s / %s", ms(b.delivery[0]), ms(b.delivery[1]), ms(b.delivery[2]))
		}))
	r.printf("| memory per idle stream (RSS growth of the replicas together / streams) | **%s** (%s → %s) | %s | ≤ 16 KiB |\n", kib(f.perStream), mib(f.rss0), mib(f.rss1),
		col(func(b *fanoutResult) string {
			return fmt.Sprintf("%s (%s → %s)", kib(b.perStream), mib(b.rss0), mib(b.rss1))
		}))
	r.printf("| time to open the streams and get their first message | %s | %s | |\n", ms(f.open), col(func(b *fanoutResult) string { return ms(b.open) }))
	r.printf("| CPU of the replicas while the streams idle (heartbeats every 5 s) | %.1f%% of a core | %s | |\n", 100*f.cpuIdle, col(func(b *fanoutResult) string { return fmt.Sprintf("%.1f%% of a core", 100*b.cpuIdle) }))
	r.printf("| CPU of the replicas to wake and notify the streams | %s | %s | |\n", ms(f.cpuNotify), col(func(b *fanoutResult) string { return ms(b.cpuNotify) }))
	r.printf("| streams that did not end with FINISHED | %d | %s | 0 |\n\n", f.failed, col(func(b *fanoutResult) string { return fmt.Sprint(b.failed) }))
	r.record("fleet3", "upstream polls per poll the streams were told", f.pollsPerReport, "%.2f", "1.00", yes(len(f.told) == 1 && f.pollsPerReport == 1))
	r.record("fleet3", "flip → every stream got FINISHED", f.flipToAll.Seconds(), "%.2f s", "≤ 1.3 s", yes(f.flipToAll <= 1300*time.Millisecond))
	r.record("fleet3", "memory per idle stream", f.perStream/1024, "%.1f KiB", "≤ 16 KiB", yes(f.perStream <= 16*1024))
	if b != nil {
		r.record("fleet3", "single process: flip → every stream got FINISHED", b.flipToAll.Seconds(), "%.2f s", "", nil)
		r.record("fleet3", "single process: memory per idle stream", b.perStream/1024, "%.1f KiB", "", nil)
	}
	return nil
}

// fanoutRun runs fleet3's workload on the processes o describes.
func (r *fleetRunner) fanoutRun(ctx context.Context, o fleetOpts) (*fanoutResult, error) {
	n := r.cfg.Streams
	e, err := r.startFleet(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var conns []*grpc.ClientConn
	defer func() { closeAll(conns) }()
	for j := range r.cfg.Conns {
		cc, err := dialN(e.replicas[j%len(e.replicas)].grpcAddr, 1)
		if err != nil {
			return nil, err
		}
		conns = append(conns, cc...)
	}
	created, err := e.replicas[0].client.ExportLicenseDetail(ctx, exportRequest(""))
	if err != nil {
		return nil, err
	}
	id := created.GetTask().GetTaskId()
	res := &fanoutResult{streams: n}
	time.Sleep(time.Second) // let the fresh processes settle
	res.rss0 = e.rss()
	opened := time.Now()
	w, err := openWatches(ctx, conns, id, n)
	if err != nil {
		return nil, err
	}
	res.open = time.Since(opened)
	time.Sleep(2 * time.Second)
	rss1 := e.rss()
	cpuIdle0 := e.cpu()
	const idleWindow = 5 * time.Second // one heartbeat period
	time.Sleep(idleWindow)
	res.cpuIdle = float64(e.cpu()-cpuIdle0) / float64(idleWindow)
	res.rss1 = max(rss1, e.rss())
	res.perStream = float64(res.rss1-res.rss0) / float64(n)

	// Let the task be polled a few times, then finish it.
	for {
		st, err := e.emu.stats()
		if err != nil {
			return nil, err
		}
		if st.TaskPolls(parseID(id)) >= 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu0 := e.cpu()
	flipped := time.Now()
	if err := e.emu.finish(id); err != nil {
		return nil, err
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for FINISHED: %w", ctx.Err())
	}
	res.cpuNotify = e.cpu() - cpu0
	st, err := e.emu.stats()
	if err != nil {
		return nil, err
	}
	res.upstream = st.TaskPolls(parseID(id))
	res.told = map[int64]int{}
	var (
		last, observed time.Time
		delivery       []time.Duration
	)
	for _, end := range w.ends {
		if end.err != nil || !finished(end.last) {
			res.failed++
			continue
		}
		res.told[end.polls]++
		observed = end.last.GetTask().GetObserveTime().AsTime()
		delivery = append(delivery, end.at.Sub(observed))
		last = later(last, end.at)
	}
	if res.failed > 0 {
		return nil, fmt.Errorf("%d of %d streams did not end with FINISHED", res.failed, n)
	}
	res.flipToAll, res.flipToPoll = last.Sub(flipped), observed.Sub(flipped)
	res.delivery = [3]time.Duration{percentile(delivery, 0.5), percentile(delivery, 0.99), percentile(delivery, 1)}
	if k := firstKey(res.told); k > 0 {
		res.pollsPerReport = float64(res.upstream) / float64(k)
	}
	return res, nil
}

// cpu is the CPU time the live replicas used so far.
func (e *fleetEnv) cpu() time.Duration {
	var sum time.Duration
	for _, rep := range e.live() {
		d, _ := rep.p.cpu()
		sum += d
	}
	return sum
}
