package suite

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// The shared-quota benchmark's setting: another consumer takes half of the
// account's quota, so the emulator admits sharedLimit calls per second per
// action; the figures leave out the first settleSeconds, while the service
// finds the rate that is left.
const (
	sharedLimit   = 10
	settleSeconds = 2
	// rateSampling is how often the service's effective rates are read:
	// well under the budget's hold between two cuts (1 s), so that every
	// cut shows as a decrease between two samples.
	rateSampling = 100 * time.Millisecond
	// busyAfter is how long the watches keep the reads busy after the last
	// creation, before the benchmark finishes the tasks.
	busyAfter = 5 * time.Second
)

// rateSample is the service's effective rates at one moment.
type rateSample struct {
	at           time.Time
	create, read float64
}

// creation is the outcome of one ExportLicenseDetail call of the burst.
type creation struct {
	id   string
	err  error
	done time.Time
}

// shared: the cloud admits only sharedLimit calls per second per action
// (another consumer takes the rest of the quota). A burst of creations and
// a watch of each task keep both actions busy; the emulator's per-second
// counts show how many of the service's calls it refused and how much of
// what is left the service used.
func (r *Runner) shared(ctx context.Context) error {
	n := r.cfg.SharedCreations
	r.printf("## 5. Shared quota: the cloud admits %d calls/s per action, %d ExportLicenseDetail calls at once, a watch of each task\n\n", sharedLimit, n)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := r.startCluster(ctx, 10, sharedLimit)
	if err != nil {
		return err
	}
	defer c.close()

	// Start on a whole second, so that the emulator's seconds are the
	// benchmark's: second k is [start+k, start+k+1).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	start := time.Now()

	sctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	samples := make(chan []rateSample, 1)
	go func() { samples <- sampleRates(sctx, c) }()

	results := make([]creation, n)
	watches := make([]*watchers, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cwpexportv1.NewLicenseExportServiceClient(c.conns[i%len(c.conns)]).ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
			results[i] = creation{id: res.GetTask().GetTaskId(), err: err, done: time.Now()}
			if err != nil {
				return
			}
			// The watch begins as soon as its task exists, as a client's would.
			w, err := openWatches(ctx, c.conns, results[i].id, 1)
			if err != nil {
				results[i].err = fmt.Errorf("watch: %w", err)
				return
			}
			watches[i] = w
		}()
	}
	wg.Wait()
	var lastDone time.Time
	failed := map[string]int{}
	for _, res := range results {
		lastDone = later(lastDone, res.done)
		if res.err != nil {
			code := status.Code(res.err).String()
			if failed[code] == 0 {
				r.printf("A creation failed: %v (after %s)\n\n", res.err, res.done.Sub(start).Round(time.Millisecond))
			}
			failed[code]++
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	time.Sleep(busyAfter)
	flipped := time.Now()
	for _, res := range results {
		if res.err == nil {
			if err := c.finish(res.id); err != nil {
				return err
			}
		}
	}
	finishedWatches := 0
	for _, w := range watches {
		if w == nil {
			continue
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for FINISHED: %w", ctx.Err())
		}
		if e := w.ends[0]; e.err == nil && e.last.GetTask().GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
			finishedWatches++
		}
	}
	allEnded := time.Since(flipped)
	stopSampling()
	rates := <-samples
	st, err := c.stats()
	if err != nil {
		return err
	}

	s0 := start.Unix()
	cr := perSecond(st.Actions[cloud.ActionExportLicenseDetail], s0)
	rd := perSecond(st.Actions[cloud.ActionExportTasks], s0)
	endAll := int(time.Since(start)/time.Second) + 1 // the whole run
	// Creations are busy while a second's worth of calls is left to make:
	// the last few, retries of refused ones among them, cannot use a
	// whole second (the makespan shows that tail). Reads stay busy until
	// the flip: every task is watched and pending until then.
	crEnd := min(cr.busyUntil(endAll), int(lastDone.Sub(start)/time.Second))
	rdEnd := int(flipped.Sub(start) / time.Second)
	crRates := traceOf(rates, start, func(s rateSample) float64 { return s.create })
	rdRates := traceOf(rates, start, func(s rateSample) float64 { return s.read })

	r.printf("Per second k (from the burst; k = 0 is [0 s, 1 s)), as the emulator counted them: calls the service made / refused (RequestLimitExceeded); the service's effective rate, lowest sample in the second. The last creation was answered in second %d (fewer than %d creation calls were left to make from second %d on); the tasks were finished in second %d.\n\n", int(lastDone.Sub(start)/time.Second), sharedLimit, crEnd, rdEnd)
	r.printf("| k | creations: calls / refused | create rate | reads: calls / refused | read rate |\n|---|---|---|---|---|\n")
	for k := range endAll {
		if cr.at(k).Offered == 0 && rd.at(k).Offered == 0 && k > rdEnd {
			continue
		}
		r.printf("| %d | %d / %d | %s | %d / %d | %s |\n", k, cr.at(k).Offered, cr.at(k).Refused, crRates.low(k), rd.at(k).Offered, rd.at(k).Refused, rdRates.low(k))
	}
	r.printf("\n")

	created := n
	for _, v := range failed {
		created -= v
	}
	ideal := float64(n) / sharedLimit
	whole := float64(n) / createRate
	r.printf("| figure | measured | best at %d/s (0 refused, every slot used) | whole quota free (§2) | target |\n|---|---|---|---|---|\n", sharedLimit)
	printShare := func(name string, a seriesCounts, end int, rs rateTrace) {
		calls, refused := a.sum(settleSeconds, end)
		secs := max(end-settleSeconds, 1)
		used := float64(calls-refused) / float64(secs) / sharedLimit
		r.printf("| %s: refused / calls, seconds %d–%d | **%d / %d = %.1f%%** | 0 | 0 | ≤ 5%% |\n",
			name, settleSeconds, end-1, refused, calls, pct(refused, calls))
		r.printf("| %s: admitted calls per second, seconds %d–%d, / %d | **%.2f/s = %.0f%%** | %d/s = 100%% | %d/s of %d | ≥ 85%% |\n",
			name, settleSeconds, end-1, sharedLimit, float64(calls-refused)/float64(secs), 100*used, sharedLimit, createRate, cloudQuota)
		c2, r2 := a.sum(0, settleSeconds)
		r.printf("| %s: first %d s, calls / refused / admitted | %d / %d / %d | %d / 0 / %d | | reported |\n",
			name, settleSeconds, c2, r2, c2-r2, settleSeconds*sharedLimit, settleSeconds*sharedLimit)
		r.printf("| %s: effective rate, lowest / median / highest, seconds %d–%d; at the end | %.1f / %.1f / %.1f; %.1f | %d | %d | reported |\n",
			name, settleSeconds, end-1, rs.min(settleSeconds, end), rs.median(settleSeconds, end), rs.max(settleSeconds, end), rs.last(), sharedLimit, createRate)
		r.printf("| %s: cuts (decreases of the effective rate between samples %s apart) | %d | | 0 | reported |\n", name, rateSampling, rs.cuts())
	}
	printShare("creations", cr, crEnd, crRates)
	printShare("reads", rd, rdEnd, rdRates)
	makespan := lastDone.Sub(start)
	r.printf("| makespan of the %d creations | **%.2f s** = %.3f × %d/%d | %.1f s | %.1f s (%d/18) | reported |\n",
		n, makespan.Seconds(), makespan.Seconds()/ideal, n, sharedLimit, ideal, whole, n)
	r.printf("| creations answered OK / failed (by code) | %d / %d%s | %d / 0 | %d / 0 | all OK |\n", created, n-created, byCode(failed), n, n)
	r.printf("| tasks the cloud created / calls it refused over the run | %d / %d | %d / 0 | | equal to the OK answers |\n",
		st.Actions[cloud.ActionExportLicenseDetail].TasksCreated, st.Actions[cloud.ActionExportLicenseDetail].Errors["RequestLimitExceeded"], n)
	r.printf("| watches ended with FINISHED / all ended after the flip | %d / %s | | | all |\n\n", finishedWatches, ms(allEnded))
	return nil
}

// byCode lists counts by status code, " (Code: n, ...)", or "" for none.
func byCode(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", code, m[code]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// sampleRates reads the service's effective rates every rateSampling until
// ctx ends.
func sampleRates(ctx context.Context, c *cluster) []rateSample {
	var out []rateSample
	t := time.NewTicker(rateSampling)
	defer t.Stop()
	for {
		st, err := c.client.GetBudgetStatus(ctx, &cwpexportv1.GetBudgetStatusRequest{})
		if err == nil {
			s := rateSample{at: time.Now()}
			for _, a := range st.GetActions() {
				switch a.GetAction() {
				case cloud.ActionExportLicenseDetail:
					s.create = a.GetEffectiveRate()
				case cloud.ActionExportTasks:
					s.read = a.GetEffectiveRate()
				}
			}
			out = append(out, s)
		}
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
	}
}

// seriesCounts is one action's per-second counts, indexed by the second
// since the burst.
type seriesCounts map[int]emulator.SecondCount

func perSecond(a emulator.ActionStats, s0 int64) seriesCounts {
	out := seriesCounts{}
	for _, c := range a.PerSecond {
		out[int(c.Second-s0)] = c
	}
	return out
}

func (s seriesCounts) at(k int) emulator.SecondCount { return s[k] }

// busyUntil is the first second that began with fewer than sharedLimit of
// the calls of seconds [0, end) still to make.
func (s seriesCounts) busyUntil(end int) int {
	left, _ := s.sum(0, end)
	k := 0
	for ; k < end && left >= sharedLimit; k++ {
		left -= s[k].Offered
	}
	return k
}

// sum adds the calls and refusals of seconds [from, to).
func (s seriesCounts) sum(from, to int) (calls, refused int64) {
	for k := from; k < to; k++ {
		calls += s[k].Offered
		refused += s[k].Refused
	}
	return calls, refused
}

// rateTrace is one action's effective rate, sampled over time.
type rateTrace struct {
	start time.Time
	xs    []float64
	ats   []time.Time
}

func traceOf(samples []rateSample, start time.Time, f func(rateSample) float64) rateTrace {
	rs := rateTrace{start: start}
	for _, s := range samples {
		rs.xs = append(rs.xs, f(s))
		rs.ats = append(rs.ats, s.at)
	}
	return rs
}

// in returns the samples taken in seconds [from, to).
func (rs rateTrace) in(from, to int) []float64 {
	var out []float64
	for i, at := range rs.ats {
		if k := int(at.Sub(rs.start) / time.Second); at.After(rs.start) && k >= from && k < to {
			out = append(out, rs.xs[i])
		}
	}
	return out
}

func (rs rateTrace) low(k int) string {
	xs := rs.in(k, k+1)
	if len(xs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", minOf(xs))
}

func (rs rateTrace) min(from, to int) float64 { return minOf(rs.in(from, to)) }

func (rs rateTrace) max(from, to int) float64 {
	xs := rs.in(from, to)
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Max(xs)
}

func (rs rateTrace) median(from, to int) float64 { return median(rs.in(from, to)) }

func (rs rateTrace) last() float64 {
	if len(rs.xs) == 0 {
		return math.NaN()
	}
	return rs.xs[len(rs.xs)-1]
}

// cuts counts the decreases between consecutive samples: between two cuts
// the budget's rate only grows, and two cuts are at least a hold apart.
func (rs rateTrace) cuts() int {
	n := 0
	for i := 1; i < len(rs.xs); i++ {
		if rs.xs[i] < rs.xs[i-1]-1e-9 {
			n++
		}
	}
	return n
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Min(xs)
}
