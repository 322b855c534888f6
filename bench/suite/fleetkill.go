package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// The schedule's defaults that bound fleet4's figures: a poll's lease is
// the poll timeout (10 s) and 2 s more; no two polls of a task closer than
// the floor.
const (
	fleetLease = 12 * time.Second
	fleetFloor = time.Second
)

// cliWatch is one `cwpexport watch` process.
type cliWatch struct {
	id     string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// lastState is the state of the CLI's last JSON message.
func (c *cliWatch) lastState() cwpexportv1.ExportTaskState {
	lines := strings.Split(strings.TrimSpace(c.stdout.String()), "\n")
	var m cwpexportv1.WatchExportTaskResponse
	if protojson.Unmarshal([]byte(lines[len(lines)-1]), &m) != nil {
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_UNSPECIFIED
	}
	return m.GetTask().GetState()
}

// inFlight is a creation sent to the replica that is killed.
type inFlight struct {
	rid       string
	before    string // the task id the victim answered before it died
	beforeErr error
	after     string // the task id the retry on a surviving replica answered
	afterErr  error
	retries   int
}

// fleetKill is fleet4: SIGKILL of the replica holding the most leases
// while every task is pending and watched, with creations in flight on it.
func (r *fleetRunner) fleetKill(ctx context.Context, run int) error {
	n, reps := r.cfg.KillTasks, r.cfg.Replicas
	r.printf("## fleet4. SIGKILL of a replica: %d tasks pending and watched on every replica (%d also by `cwpexport watch --addr <all %d>`), %d creations in flight on it (run %d)\n\n",
		n, r.cfg.CLIWatchers, reps, r.cfg.InFlight, run)
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	e, err := r.startFleet(ctx, fleetOpts{replicas: reps, postgres: true, args: fleetRates})
	if err != nil {
		return err
	}
	defer e.close()
	db, err := pgx.Connect(ctx, r.pg.url(e.db))
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	time.Sleep(time.Second)

	// The tasks, each with a request id, spread round-robin.
	ids := make([]string, n)
	rids := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		rids[i] = uuid.NewString()
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.replicas[i%reps].client.ExportLicenseDetail(ctx, exportRequest(rids[i]))
			ids[i], errs[i] = res.GetTask().GetTaskId(), err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("create the tasks: %w", err)
	}

	// Watch each task, on every replica in turn; some also with the CLI.
	follows := make([]*follow, n)
	var watching sync.WaitGroup
	for i, id := range ids {
		watching.Add(1)
		go func() {
			defer watching.Done()
			follows[i] = e.followTask(ctx, id, i, nil)
		}()
	}
	var clis []*cliWatch
	addrs := make([]string, reps)
	for i, rep := range e.replicas {
		addrs[i] = rep.grpcAddr
	}
	for i := 0; i < n && len(clis) < r.cfg.CLIWatchers; i += max(1, n/r.cfg.CLIWatchers) {
		c := &cliWatch{id: ids[i], done: make(chan struct{})}
		c.cmd = exec.CommandContext(ctx, r.bin("cwpexport"), "--addr", strings.Join(addrs, ","), "-o", "json", "watch", ids[i])
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		if err := c.cmd.Start(); err != nil {
			return fmt.Errorf("start cwpexport watch: %w", err)
		}
		go func() { c.err = c.cmd.Wait(); close(c.done) }()
		clis = append(clis, c)
	}

	// Steady state: every task polled twice.
	for {
		st, err := e.emu.stats()
		if err != nil {
			return err
		}
		polled := 0
		for _, id := range ids {
			if st.TaskPolls(parseID(id)) >= 2 {
				polled++
			}
		}
		if polled == n {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for every task to be polled twice (%d of %d): %w", polled, n, ctx.Err())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The victim: the replica seen holding the most leases over a second.
	held := map[string]int{}
	for range 50 {
		rows, err := db.Query(ctx, `SELECT owner FROM fleet_tasks WHERE lease_until > clock_timestamp()`)
		if err != nil {
			return err
		}
		owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, o := range owners {
			held[o]++
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim := e.replicas[0]
	for _, rep := range e.replicas {
		if held[rep.name] > held[victim.name] {
			victim = rep
		}
	}

	// Creations in flight on the victim when it dies: the cloud takes
	// half a second to answer them (a slow cloud), so that some are
	// answered, some are at the cloud and some wait for the budget when
	// it dies. The cloud creates a task it was asked for whether or not
	// the caller is still there.
	if err := e.emu.injectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: cloud.ActionExportLicenseDetail, Count: r.cfg.InFlight, Delay: inFlightLatency}); err != nil {
		return err
	}
	flights := make([]*inFlight, r.cfg.InFlight)
	var flying sync.WaitGroup
	for i := range flights {
		f := &inFlight{rid: uuid.NewString()}
		flights[i] = f
		flying.Add(1)
		go func() {
			defer flying.Done()
			res, err := victim.client.ExportLicenseDetail(ctx, exportRequest(f.rid))
			f.before, f.beforeErr = res.GetTask().GetTaskId(), err
		}()
	}
	time.Sleep(killAfter)
	killed := time.Now()
	if err := victim.kill(); err != nil {
		return err
	}
	rows, err := db.Query(ctx, `SELECT task_id FROM fleet_tasks WHERE owner = $1 AND lease_until > clock_timestamp()`, victim.name)
	if err != nil {
		return err
	}
	orphaned, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	flying.Wait()

	// The benchmark retries every in-flight creation on a surviving
	// replica, as a client would, until it gets a final answer.
	live := e.live()
	for i, f := range flights {
		flying.Add(1)
		go func() {
			defer flying.Done()
			rep := live[i%len(live)]
			for {
				res, err := rep.client.ExportLicenseDetail(ctx, exportRequest(f.rid))
				if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
					f.retries++
					time.Sleep(500 * time.Millisecond)
					continue
				}
				f.after, f.afterErr = res.GetTask().GetTaskId(), err
				return
			}
		}()
	}

	// Every task polled again after the kill.
	var after map[int64][]time.Time
	var allPolled time.Duration
	for {
		st, err := e.emu.stats()
		if err != nil {
			return err
		}
		after = st.Actions[cloud.ActionExportTasks].PollTimes
		polled := 0
		for _, id := range ids {
			ts := after[parseID(id)]
			if len(ts) > 0 && ts[len(ts)-1].After(killed) {
				polled++
			}
		}
		if polled == n {
			allPolled = time.Since(killed)
			break
		}
		if time.Since(killed) > 2*time.Minute {
			return fmt.Errorf("only %d of %d tasks were polled again within 2 minutes of the kill", polled, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	flying.Wait()

	// Finish every task, then every watcher must see it.
	flightIDs := map[string]bool{}
	for _, f := range flights {
		for _, id := range []string{f.before, f.after} {
			if id != "" {
				flightIDs[id] = true
			}
		}
	}
	pendingAfter := n + len(flightIDs)
	if err := e.finishAll(ctx, append(slices.Clone(ids), slices.Collect(maps.Keys(flightIDs))...), &watching); err != nil {
		return err
	}
	for _, c := range clis {
		select {
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for cwpexport watch %s: %w", c.id, ctx.Err())
		}
	}

	st, err := e.emu.stats()
	if err != nil {
		return err
	}
	pollTimes := st.Actions[cloud.ActionExportTasks].PollTimes
	// Gaps: across the kill for each task, and the least between any two
	// polls of a task over the whole run.
	var (
		worstGap, worstOrphanGap time.Duration
		leastGap                 = time.Hour
		underFloor               int
	)
	for _, id := range ids {
		ts := pollTimes[parseID(id)]
		for k := 1; k < len(ts); k++ {
			gap := ts[k].Sub(ts[k-1])
			leastGap = min(leastGap, gap)
			if gap < fleetFloor {
				underFloor++
			}
			if !ts[k-1].After(killed) && ts[k].After(killed) {
				worstGap = max(worstGap, gap)
				if slices.Contains(orphaned, parseID(id)) {
					worstOrphanGap = max(worstOrphanGap, gap)
				}
			}
		}
	}
	period := max(fleetFloor, time.Duration(float64(pendingAfter)/fleetBestRate*float64(time.Second)))
	bound := fleetLease + period

	followed, resumed := 0, 0
	for _, f := range follows {
		if f.err == nil && finished(f.last) {
			followed++
		}
		resumed += f.resumes
	}
	cliOK, cliReconnects := 0, 0
	for _, c := range clis {
		if c.err == nil && c.lastState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
			cliOK++
		}
		if strings.Contains(c.stderr.String(), "reconnecting") {
			cliReconnects++
		}
	}

	// Creations: one cloud task per request id at most, whatever the kill.
	tasks, err := e.cloudTasks()
	if err != nil {
		return err
	}
	perRID := map[string]int{}
	for _, t := range tasks {
		perRID[t.requestID]++
	}
	dupes := 0
	for _, rid := range rids {
		if perRID[rid] != 1 {
			dupes++
		}
	}
	byVictim := map[string]string{} // request id -> the task the victim's call made
	for _, t := range tasks {
		if t.created.Before(killed) {
			byVictim[t.requestID] = fmt.Sprint(t.id)
		}
	}
	var answeredBefore, atCloud, sameAfter, unanswered, newAfter, unknown, otherErr, flightDupes, flightTasks int
	var otherErrs []string
	for _, f := range flights {
		flightTasks += perRID[f.rid]
		if perRID[f.rid] > 1 {
			flightDupes++
		}
		if f.beforeErr == nil {
			answeredBefore++
		} else if byVictim[f.rid] != "" {
			atCloud++
		}
		switch {
		case f.afterErr == nil && f.before != "" && f.after == f.before:
			sameAfter++
		case f.afterErr == nil && f.before == "" && f.after == byVictim[f.rid]:
			unanswered++
		case f.afterErr == nil && f.before == "" && byVictim[f.rid] == "":
			newAfter++
		case status.Code(f.afterErr) == codes.Aborted && strings.Contains(status.Convert(f.afterErr).Message(), "unknown outcome"):
			unknown++
		default:
			otherErr++
			otherErrs = append(otherErrs, fmt.Sprintf("%s: before %q %v, after %q %v", f.rid, f.before, f.beforeErr, f.after, f.afterErr))
		}
	}
	cr, rd := st.Actions[cloud.ActionExportLicenseDetail], st.Actions[cloud.ActionExportTasks]
	// The peaks from 5 s before the kill on, of the calls the cloud
	// answered (the emulator's peak covers the whole run, the creation of
	// the tasks included).
	var createdTimes []time.Time
	for _, t := range tasks {
		createdTimes = append(createdTimes, t.created)
	}
	killPhase := killed.Add(-5 * time.Second)
	killPeaks := [2]int{peakWindow(within(createdTimes, killPhase, time.Now())), peakWindow(within(allPollTimes(pollTimes), killPhase, time.Now()))}

	r.printf("Victim: replica %d (seen holding %d leases in 50 samples; the others %v); leases it held when killed: %d (tasks %v).\n\n",
		victim.i+1, held[victim.name], otherHeld(held, victim.name, e.replicas), len(orphaned), orphaned)
	r.printf("| figure | measured | target |\n|---|---|---|\n")
	r.printf("| tasks polled again after the kill | %d / %d, all within %s | all |\n", n, n, secs(allPolled))
	r.printf("| longest gap between two polls of a task across the kill | **%s** (tasks whose lease died with it: %s) | ≤ lease %s + one period %s = %s |\n",
		secs(worstGap), secsOrNone(worstOrphanGap, len(orphaned)), secs(fleetLease), secs(period), secs(bound))
	r.printf("| least gap between two polls of a task, whole run (%d tasks) / gaps under the floor | **%s** / %d | ≥ floor %s / 0 |\n", n, ms(leastGap), underFloor, ms(fleetFloor))
	r.printf("| peak requests in any 1-s window (creations / reads), whole run; when, from the kill | **%d / %d**; %s / %s | ≤ 20 |\n", cr.PeakPerSecond, rd.PeakPerSecond,
		signed(cr.PeakAt.Sub(killed)), signed(rd.PeakAt.Sub(killed)))
	r.printf("| peak calls the cloud answered in any 1-s window from 5 s before the kill on (creations / reads) | **%d / %d** | ≤ 20 |\n", killPeaks[0], killPeaks[1])
	r.printf("| RequestLimitExceeded (creations / reads) | %d / %d | 0 |\n", cr.Errors["RequestLimitExceeded"], rd.Errors["RequestLimitExceeded"])
	r.printf("| benchmark watchers that saw FINISHED / resumed on another replica | **%d / %d** / %d | all |\n", followed, n, resumed)
	r.printf("| `cwpexport watch --addr <all>` that exited 0 after FINISHED / said it was reconnecting | **%d / %d** / %d | all |\n", cliOK, len(clis), cliReconnects)
	r.printf("| request ids of the %d tasks with exactly one cloud task | %d / %d | all |\n", n, n-dupes, n)
	r.printf("| %d creations sent to the victim %s before the kill (the cloud answering in %s): answered / at the cloud, unanswered / not yet sent | %d / %d / %d | |\n",
		r.cfg.InFlight, ms(killAfter), ms(inFlightLatency), answeredBefore, atCloud, r.cfg.InFlight-answeredBefore-atCloud)
	r.printf("| their retries on a surviving replica: the task answered before / the task the victim made unanswered / a new task / CREATION_OUTCOME_UNKNOWN / other; Unavailable retried | %d / %d / %d / %d / %d; %d | no duplicate |\n",
		sameAfter, unanswered, newAfter, unknown, otherErr, sumRetries(flights))
	r.printf("| cloud tasks of the in-flight request ids (journal, by tag) / ids with more than one | %d / **%d** | ≤ %d / 0 |\n\n", flightTasks, flightDupes, r.cfg.InFlight)
	for _, s := range otherErrs {
		r.printf("- other outcome: %s\n", s)
	}
	if len(otherErrs) > 0 {
		r.printf("\n")
	}
	r.record("fleet4", "longest gap across the kill (s) / bound", worstGap.Seconds(), "%.2f s", "≤ lease + period", yes(worstGap <= bound))
	r.record("fleet4", "least gap between two polls of a task", leastGap.Seconds()*1000, "%.0f ms", "≥ 1000 ms", yes(leastGap >= fleetFloor))
	peak := max(cr.PeakPerSecond, rd.PeakPerSecond)
	r.record("fleet4", "peak requests in a 1-s window, whole run", float64(peak), "%.0f", "≤ 20", yes(peak <= 20))
	r.record("fleet4", "peak calls in a 1-s window from 5 s before the kill", float64(max(killPeaks[0], killPeaks[1])), "%.0f", "≤ 20", yes(max(killPeaks[0], killPeaks[1]) <= 20))
	r.record("fleet4", "watchers that saw FINISHED (benchmark's + CLI's)", float64(followed+cliOK), "%.0f", fmt.Sprint(n+len(clis)), yes(followed == n && cliOK == len(clis)))
	r.record("fleet4", "request ids with more than one cloud task", float64(flightDupes+dupes), "%.0f", "0", yes(flightDupes+dupes == 0))
	return nil
}

// fleet4's in-flight creations: the cloud's delay, and the time from
// sending them to the kill.
const (
	inFlightLatency = 500 * time.Millisecond
	killAfter       = 800 * time.Millisecond
)

// signed is a duration with its sign, in seconds.
func signed(d time.Duration) string { return fmt.Sprintf("%+.2f s", d.Seconds()) }

func sumRetries(fs []*inFlight) int {
	n := 0
	for _, f := range fs {
		n += f.retries
	}
	return n
}

func otherHeld(held map[string]int, victim string, reps []*replica) []int {
	var out []int
	for _, rep := range reps {
		if rep.name != victim {
			out = append(out, held[rep.name])
		}
	}
	return out
}

func secsOrNone(d time.Duration, n int) string {
	if n == 0 {
		return "none"
	}
	return secs(d)
}
