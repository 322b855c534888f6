package suite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// fleetHeartbeat is the heartbeat fleet5's replicas send on watches, so
// that a 5-s outage spans several.
const fleetHeartbeat = time.Second

// probe is one creation fleet5 sent around the outage.
type probe struct {
	replica    int
	withID     bool
	sent, done time.Time
	code       codes.Code
}

// message is one watch message fleet5 received.
type message struct {
	at   time.Time
	kind cwpexportv1.WatchEventKind
}

// fleetDatabaseStop is fleet5: PostgreSQL stopped for a few seconds under
// watched tasks and creations on every replica, then started again.
func (r *fleetRunner) fleetDatabaseStop(ctx context.Context, run int) error {
	n, reps := r.cfg.DBTasks, r.cfg.Replicas
	r.printf("## fleet5. PostgreSQL stopped for %s: %d tasks pending and watched over %d replicas (-heartbeat %s), creations sent to every replica every 250 ms (run %d)\n\n",
		r.cfg.DBDown, n, reps, fleetHeartbeat, run)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	e, err := r.startFleet(ctx, fleetOpts{replicas: reps, postgres: true, args: append(slices.Clone(fleetRates), "-heartbeat", fleetHeartbeat.String())})
	if err != nil {
		return err
	}
	defer e.close()
	time.Sleep(time.Second)

	ids := make([]string, n)
	for i := range n {
		res, err := e.replicas[i%reps].client.ExportLicenseDetail(ctx, exportRequest(uuid.NewString()))
		if err != nil {
			return fmt.Errorf("create task %d: %w", i, err)
		}
		ids[i] = res.GetTask().GetTaskId()
	}
	var (
		mu       sync.Mutex
		msgs     = make([][]message, n)
		follows  = make([]*follow, n)
		watching sync.WaitGroup
	)
	for i, id := range ids {
		watching.Add(1)
		go func() {
			defer watching.Done()
			follows[i] = e.followTask(ctx, id, i, func(m *cwpexportv1.WatchExportTaskResponse) {
				mu.Lock()
				msgs[i] = append(msgs[i], message{time.Now(), m.GetKind()})
				mu.Unlock()
			})
		}()
	}
	if err := waitPolled(ctx, e, ids, 2, time.Time{}); err != nil {
		return err
	}

	// Creations on every replica, every 250 ms, from a second before the
	// stop until each replica has created again after the start.
	var (
		probes   []probe
		probing  sync.WaitGroup
		upAt     time.Time // PostgreSQL accepts connections again
		stopProb = make(chan struct{})
	)
	for _, rep := range e.replicas {
		probing.Add(1)
		go func() {
			defer probing.Done()
			for k := 0; ; k++ {
				select {
				case <-stopProb:
					return
				case <-ctx.Done():
					return
				case <-time.After(250 * time.Millisecond):
				}
				rid := ""
				if k%2 == 1 {
					rid = uuid.NewString()
				}
				p := probe{replica: rep.i, withID: rid != "", sent: time.Now()}
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := rep.client.ExportLicenseDetail(pctx, exportRequest(rid))
				cancel()
				p.done, p.code = time.Now(), status.Code(err)
				mu.Lock()
				probes = append(probes, p)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)

	stopAt := time.Now()
	if err := r.pg.stop(ctx); err != nil {
		return err
	}
	downAt := time.Now()
	atDown, err := e.emu.stats()
	if err != nil {
		return err
	}
	time.Sleep(time.Until(downAt.Add(r.cfg.DBDown)))
	atStart, err := e.emu.stats()
	if err != nil {
		return err
	}
	startAt := time.Now()
	if err := r.pg.start(ctx); err != nil {
		return err
	}
	upAt = time.Now()

	// Recovery: a creation answered on every replica, every task polled.
	firstCreate := make([]time.Duration, len(e.replicas))
	for {
		mu.Lock()
		ok := 0
		for i := range e.replicas {
			if firstCreate[i] == 0 {
				for _, p := range probes {
					if p.replica == i && p.code == codes.OK && p.sent.After(upAt) {
						firstCreate[i] = p.done.Sub(upAt)
						break
					}
				}
			}
			if firstCreate[i] != 0 {
				ok++
			}
		}
		mu.Unlock()
		if ok == len(e.replicas) {
			break
		}
		if time.Since(upAt) > time.Minute {
			return fmt.Errorf("%d of %d replicas created nothing within a minute of PostgreSQL's start", len(e.replicas)-ok, len(e.replicas))
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopProb)
	probing.Wait()
	if err := waitPolled(ctx, e, ids, 1, upAt); err != nil {
		return err
	}
	st, err := e.emu.stats()
	if err != nil {
		return err
	}
	polls := allPollTimes(st.Actions[cloud.ActionExportTasks].PollTimes)
	var firstPoll, allPolled time.Duration
	for _, t := range polls {
		if t.After(upAt) {
			firstPoll = t.Sub(upAt)
			break
		}
	}
	// Each task's gap across the outage: a poll whose result could not be
	// written leaves its lease to expire.
	var worstGap time.Duration
	leaseBound := 0
	for _, id := range ids {
		ts := st.Actions[cloud.ActionExportTasks].PollTimes[parseID(id)]
		for k, t := range ts {
			if t.After(upAt) {
				allPolled = max(allPolled, t.Sub(upAt))
				if k > 0 {
					gap := t.Sub(ts[k-1])
					worstGap = max(worstGap, gap)
					if gap >= fleetLease-time.Second {
						leaseBound++
					}
				}
				break
			}
		}
	}

	if err := e.finishAll(ctx, ids, &watching); err != nil {
		return err
	}
	final, err := e.emu.stats()
	if err != nil {
		return err
	}

	// Upstream calls while PostgreSQL was down, and while it stopped.
	downCreates, downReads := createCalls(atStart)-createCalls(atDown), readCalls(atStart)-readCalls(atDown)
	tasks, err := e.cloudTasks()
	if err != nil {
		return err
	}
	var created []time.Time
	for _, t := range tasks {
		created = append(created, t.created)
	}
	stoppingCalls := countIn(created, stopAt, downAt) + countIn(polls, stopAt, downAt)

	// The calls the cloud answered from the stop on, from the stop.
	var downCalls []string
	for _, t := range within(created, stopAt, startAt) {
		downCalls = append(downCalls, "creation at "+signed(t.Sub(stopAt)))
	}
	for _, t := range within(polls, stopAt, startAt) {
		downCalls = append(downCalls, "read at "+signed(t.Sub(stopAt)))
	}
	// Creations sent while it was down, however late answered.
	codesDown := map[codes.Code]int{}
	var probesDown int
	for _, p := range probes {
		if !p.sent.Before(downAt) && p.sent.Before(startAt) {
			probesDown++
			codesDown[p.code]++
		}
	}
	// Heartbeats each stream received while it was down.
	var beats []float64
	for i := range msgs {
		k := 0
		for _, m := range msgs[i] {
			if m.at.After(downAt) && m.at.Before(upAt) && m.kind == cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_HEARTBEAT {
				k++
			}
		}
		beats = append(beats, float64(k))
	}
	resumed, finishedAll := 0, 0
	for _, f := range follows {
		resumed += f.resumes
		if f.err == nil && finished(f.last) {
			finishedAll++
		}
	}
	slices.Sort(beats)
	down := upAt.Sub(downAt)
	cr, rd := final.Actions[cloud.ActionExportLicenseDetail], final.Actions[cloud.ActionExportTasks]
	unavailable := codesDown[codes.Unavailable]

	r.printf("PostgreSQL: `pg-cluster.sh stop` took %s (fast shutdown), stopped for %s, `pg-cluster.sh start` took %s.\n\n", ms(downAt.Sub(stopAt)), secs(startAt.Sub(downAt)), ms(upAt.Sub(startAt)))
	r.printf("| figure | measured | target |\n|---|---|---|\n")
	r.printf("| upstream calls while it was down (creations / reads) | **%d / %d** | 0 |\n", downCreates, downReads)
	r.printf("| upstream calls while it shut down (%s) | %d | |\n", ms(downAt.Sub(stopAt)), stoppingCalls)
	r.printf("| the calls the cloud answered from the stop's start to the start's, from the stop | %s | |\n", strings.Join(downCalls, ", "))
	r.printf("| creations sent while it was down: answered Unavailable / all | **%d / %d** %v | all Unavailable |\n", unavailable, probesDown, codesDown)
	r.printf("| heartbeats each stream received in the %s it was down (%s apart): min / median / max | **%.0f / %.0f / %.0f** | ≥ %d |\n",
		secs(down), fleetHeartbeat, beats[0], median(beats), beats[len(beats)-1], int(down/fleetHeartbeat)-1)
	r.printf("| watches resumed (a stream ended Unavailable or early) | %d | 0 |\n", resumed)
	r.printf("| after the start: first successful creation on each replica | %s | reported |\n", durations(firstCreate))
	r.printf("| after the start: first poll at the emulator / every one of the %d watched tasks polled again (%d tasks pending with the probes' creations: period %s) | **%s / %s** | reported |\n",
		n, len(tasks), secs(max(fleetFloor, time.Duration(float64(len(tasks))/fleetBestRate*float64(time.Second)))), ms(firstPoll), ms(allPolled))
	r.printf("| longest gap between two polls of a task across the outage / tasks whose gap was ≥ %s (a lease left to expire) | %s / %d | |\n", secs(fleetLease-time.Second), secs(worstGap), leaseBound)
	r.printf("| RequestLimitExceeded (creations / reads) / peak in a 1-s window | %d / %d, %d / %d | 0 / ≤ 20 |\n",
		cr.Errors["RequestLimitExceeded"], rd.Errors["RequestLimitExceeded"], cr.PeakPerSecond, rd.PeakPerSecond)
	r.printf("| watchers that saw FINISHED after the outage | %d / %d | all |\n\n", finishedAll, n)
	r.record("fleet5", "upstream calls while PostgreSQL was down", float64(downCreates+downReads), "%.0f", "0", yes(downCreates+downReads == 0))
	r.record("fleet5", "creations answered Unavailable while down (share)", float64(unavailable)/float64(max(1, probesDown)), "%.2f", "1.00", yes(probesDown > 0 && unavailable == probesDown))
	r.record("fleet5", "least heartbeats of a stream while down", beats[0], "%.0f", fmt.Sprintf("≥ %d", int(down/fleetHeartbeat)-1), yes(int(beats[0]) >= int(down/fleetHeartbeat)-1))
	r.record("fleet5", "first successful creation after the start (slowest replica)", slices.Max(firstCreate).Seconds(), "%.2f s", "reported", nil)
	r.record("fleet5", "every task polled again after the start", allPolled.Seconds(), "%.2f s", "reported", nil)
	return nil
}

// waitPolled waits until every task has at least k polls after since.
func waitPolled(ctx context.Context, e *fleetEnv, ids []string, k int, since time.Time) error {
	for {
		st, err := e.emu.stats()
		if err != nil {
			return err
		}
		done := 0
		for _, id := range ids {
			if countIn(st.Actions[cloud.ActionExportTasks].PollTimes[parseID(id)], since, time.Now().Add(time.Hour)) >= k {
				done++
			}
		}
		if done == len(ids) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d polls of every task (%d of %d): %w", k, done, len(ids), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func durations(ds []time.Duration) string {
	var out []string
	for _, d := range ds {
		out = append(out, ms(d))
	}
	return fmt.Sprint(out)
}
