package tracker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/tracker"
	"github.com/cwpexport/cwpexport/server/tracker/trackertest"
)

// These tests run the tracker against the CWP emulator over loopback HTTP
// through the real SDK client, and count the cloud calls the emulator saw.
// They assert counts and orderings, never durations: a loaded machine only
// makes polls rarer, so upper bounds on polls hold under any load.

const (
	secretID  = "AKIDtracker000000000000000000000000"
	secretKey = "tracker-secret-key-0123456789abcdef"
	minPoll   = 100 * time.Millisecond
)

type env struct {
	emu   *emulator.Emulator
	cloud *cloud.Client
	tr    *tracker.Tracker
	// run starts the scheduler of an environment started stopped.
	run     func()
	running bool
}

// start runs the scheduler of an environment started stopped.
func (e *env) start() { e.running = true; e.run() }

type config struct {
	rateLimit int     // emulator requests per second; 0: the cloud's 20
	budget    float64 // tracker reads per second; 0: 50
	freshness time.Duration
	// minPoll, maxBackoff and pollTimeout: 0 means minPoll, 1s and the
	// tracker's default.
	minPoll, maxBackoff, pollTimeout time.Duration
	// stopped: the scheduler does not run until the test calls run.
	stopped bool
}

func start(t *testing.T, c config) *env {
	t.Helper()
	emu, addr := trackertest.StartEmulator(t, emulator.Options{Credentials: map[string]string{secretID: secretKey}, PendingFor: -1, RateLimit: c.rateLimit})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	cl := cloud.New(cloud.Config{Credential: common.NewCredential(secretID, secretKey), Endpoint: addr, Scheme: "HTTP", Timeout: 5 * time.Second})
	if c.budget == 0 {
		c.budget = 50
	}
	if c.minPoll == 0 {
		c.minPoll = minPoll
	}
	if c.maxBackoff == 0 {
		c.maxBackoff = time.Second
	}
	tr := tracker.New(tracker.Options{
		Scheduler: tracker.NewLocal(tracker.LocalOptions{
			Cloud:  cl,
			Budget: budget.MustNew(budget.Options{Rate: c.budget}),
			Pacing: tracker.Pacing{MinInterval: c.minPoll, MaxBackoff: c.maxBackoff, PollTimeout: c.pollTimeout},
		}),
		Freshness: c.freshness,
	})
	e := &env{emu: emu, cloud: cl, tr: tr}
	e.run = func() { go func() { defer wg.Done(); e.tr.Run(ctx) }() }
	if !c.stopped {
		e.run()
	}
	t.Cleanup(func() {
		cancel()
		if c.stopped && !e.running {
			wg.Done()
		}
		wg.Wait()
	})
	return e
}

// create starts an export in the emulator; with known, the tracker learns
// of it as the service does after creating it.
func (e *env) create(t *testing.T, known bool) int64 {
	t.Helper()
	c, err := e.cloud.ExportLicenseDetail(context.Background(), cloud.ExportParams{})
	for tries := 0; cloud.KindOf(err) == cloud.KindThrottled && tries < 100; tries++ {
		time.Sleep(50 * time.Millisecond) // the emulator's creation quota
		c, err = e.cloud.ExportLicenseDetail(context.Background(), cloud.ExportParams{})
	}
	if err != nil {
		t.Fatal(err)
	}
	if known {
		e.tr.Created(c.TaskID, c.RequestID)
	}
	return c.TaskID
}

func (e *env) polls(id int64) int64 { return e.emu.Stats().TaskPolls(id) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// follow runs a watcher the way a watch stream does: it wakes on every
// update and returns the last snapshot once the task is terminal or ctx
// ends.
func follow(ctx context.Context, w *tracker.Watch) tracker.Snapshot {
	defer w.Close()
	for {
		s, changed := w.Current()
		if s.Terminal() {
			return s
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return s
		}
	}
}

// TestGetSharesTheObservation: Get of a watched task answers from the
// shared observation; Gets of an unwatched task share one poll.
func TestGetSharesTheObservation(t *testing.T) {
	e := start(t, config{freshness: time.Hour})
	t.Run("watched", func(t *testing.T) {
		id := e.create(t, true)
		w := e.tr.Watch(id)
		defer w.Close()
		waitFor(t, "a poll", func() bool { return e.polls(id) >= 1 })
		for range 5000 {
			if s, err := e.tr.Get(context.Background(), id); err != nil || s.State != cloud.StatusPending {
				t.Fatalf("get: %+v %v", s, err)
			}
		}
		s, _ := w.Current()
		if up := e.polls(id); up > s.Polls+1 {
			t.Fatalf("5000 Gets of a watched task made %d cloud calls beside the %d scheduled polls", up-s.Polls, s.Polls)
		}
	})
	t.Run("unwatched, never seen", func(t *testing.T) {
		id := e.create(t, false)
		var wg sync.WaitGroup
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s, err := e.tr.Get(context.Background(), id); err != nil || s.State != cloud.StatusPending {
					t.Errorf("get: %+v %v", s, err)
				}
			}()
		}
		wg.Wait()
		// The Gets that came after the first answer are answered from it
		// (Freshness is an hour); those waiting together share its poll.
		if up := e.polls(id); up < 1 || up > 3 {
			t.Fatalf("200 concurrent Gets made %d cloud calls", up)
		}
		if got := e.tr.Stats(); got.Scheduled != 0 || got.Watchers != 0 {
			t.Fatalf("Gets left a poller behind: %+v", got)
		}
	})
}

// TestFairShareOfTheBudget: K watched tasks share a budget of B reads per
// second: each gets about the same number of polls, none starves, the
// cloud never sees more than the budget, and a task a caller waits for
// gets its first poll ahead of the round.
func TestFairShareOfTheBudget(t *testing.T) {
	const (
		k      = 15
		budget = 15 // reads per second, under the cloud's 20: each task polled about every k/budget = 1s
	)
	e := start(t, config{budget: budget})
	ids := make([]int64, k)
	for i := range ids {
		ids[i] = e.create(t, true)
		w := e.tr.Watch(ids[i])
		t.Cleanup(w.Close)
	}
	total := func() (sum int64, lo, hi int64) {
		st := e.emu.Stats()
		lo = 1 << 62
		for _, id := range ids {
			n := st.TaskPolls(id)
			sum += n
			lo, hi = min(lo, n), max(hi, n)
		}
		return sum, lo, hi
	}
	waitFor(t, "three rounds of polls", func() bool { _, lo, _ := total(); return lo >= 3 })
	sum, lo, hi := total()
	if hi-lo > 2 {
		t.Errorf("unfair schedule: polls per task range from %d to %d (%d in all)", lo, hi, sum)
	}
	s, _ := e.tr.Get(context.Background(), ids[0])
	if s.Pending != k {
		t.Errorf("snapshot says %d pending tasks, want %d", s.Pending, k)
	}

	// A task nobody has seen yet: a watcher waits for its first state, so
	// it is polled before the scheduled round goes on.
	fresh := e.create(t, false)
	before, _, _ := total()
	w := e.tr.Watch(fresh)
	t.Cleanup(w.Close)
	waitFor(t, "the new task's first poll", func() bool { return e.polls(fresh) >= 1 })
	if after, _, _ := total(); after > before+2 {
		t.Errorf("the new task waited for %d polls of others", after-before)
	}
	// A task just created is known to be pending: its first poll waits its
	// share, within about one round of the others, not after them all
	// twice.
	created := e.create(t, true)
	before, _, _ = total()
	w2 := e.tr.Watch(created)
	t.Cleanup(w2.Close)
	waitFor(t, "the created task's first poll", func() bool { return e.polls(created) >= 1 })
	if after, _, _ := total(); after > before+2*k {
		t.Errorf("the created task waited for %d polls of %d others", after-before, k)
	}
	peak := e.emu.Stats().Actions[cloud.ActionExportTasks].PeakPerSecond
	if peak > budget+1 {
		t.Errorf("the cloud saw %d reads within one second; the budget is %d", peak, budget)
	}
	if n := e.emu.Stats().Actions[cloud.ActionExportTasks].Errors["RequestLimitExceeded"]; n != 0 {
		t.Errorf("the cloud throttled %d reads", n)
	}
}

// TestThrottledReadsBackOff: when the cloud answers RequestLimitExceeded
// (another program shares the account), polls back off with jitter, reads
// are retried within the caller's deadline, and a caller whose deadline
// passes gets the throttling error rather than a hang.
func TestThrottledReadsBackOff(t *testing.T) {
	// The emulator admits 2 reads per second; the tracker's budget is far
	// above it, as when other programs use the account's quota.
	e := start(t, config{rateLimit: 2, budget: 1000})
	const n = 5
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = e.create(t, false)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := e.tr.Get(ctx, id)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("a read was not retried to success within its deadline: %v", err)
		}
	}
	st := e.emu.Stats().Actions[cloud.ActionExportTasks]
	throttled := st.Errors["RequestLimitExceeded"]
	if throttled == 0 {
		t.Fatal("the cloud never throttled; the test proves nothing")
	}
	// Backing off, n reads need a few attempts each, not a busy loop.
	if st.Requests > 6*n {
		t.Errorf("%d cloud calls (%d throttled) for %d reads: retries do not back off", st.Requests, throttled, n)
	}
	// The throttling lowered the budget, and snapshots say so.
	if r := e.tr.Peek(ids[0]).Rate; r >= 1000 {
		t.Errorf("after %d throttled polls the budget reports %.1f polls per second, its configured rate", throttled, r)
	}

	t.Run("deadline", func(t *testing.T) {
		// Use up the emulator's window, then ask with a short deadline.
		id := e.create(t, false)
		for range 4 {
			_, _ = e.cloud.ExportTasks(context.Background(), ids[0])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := e.tr.Get(ctx, id)
		if err == nil {
			t.Skip("the cloud answered within the deadline")
		}
		if cloud.KindOf(err) != cloud.KindThrottled && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the cloud's throttling or the deadline", err)
		}
	})

	t.Run("jitter", func(t *testing.T) {
		// Tasks throttled together are not retried together.
		var ws []*tracker.Watch
		fresh := make([]int64, 4)
		for i := range fresh {
			fresh[i] = e.create(t, false)
		}
		for range 4 {
			_, _ = e.cloud.ExportTasks(context.Background(), ids[0])
		}
		for _, id := range fresh {
			ws = append(ws, e.tr.Watch(id))
		}
		defer func() {
			for _, w := range ws {
				w.Close()
			}
		}()
		// Without jitter every first retry would come exactly MinInterval
		// after its failure.
		var delays []time.Duration
		waitFor(t, "failed polls", func() bool {
			delays = delays[:0]
			for _, w := range ws {
				if s, _ := w.Current(); s.Failures == 1 && !s.NextPoll.IsZero() {
					delays = append(delays, s.NextPoll.Sub(s.LastPoll))
				}
			}
			return len(delays) >= 3
		})
		lo, hi := delays[0], delays[0]
		for _, d := range delays {
			lo, hi = min(lo, d), max(hi, d)
		}
		if hi-lo < time.Millisecond {
			t.Errorf("retries after one failure are all due %v later: no jitter", lo)
		}
	})
}

// TestUnchangedPollsWakeNoWatcher: a poll that finds the task as it was
// wakes none of its watchers (thousands of them may wait); a change does.
func TestUnchangedPollsWakeNoWatcher(t *testing.T) {
	e := start(t, config{})
	id := e.create(t, true)
	w := e.tr.Watch(id)
	defer w.Close()
	_, changed := w.Current()
	before := e.polls(id)
	waitFor(t, "three polls", func() bool { return e.polls(id) >= before+3 })
	select {
	case <-changed:
		t.Fatal("polls that found the task still pending woke its watchers")
	default:
	}
	if err := e.emu.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(20 * time.Second):
		t.Fatal("the task finished but its watchers were not woken")
	}
	if s, _ := w.Current(); s.State != cloud.StatusFinished {
		t.Fatalf("woken with %+v", s)
	}
}

// TestGetsDoNotStarveWatchers: callers reading many unwatched tasks go
// ahead of the schedule, but a watched task still gets its turns.
func TestGetsDoNotStarveWatchers(t *testing.T) {
	const budget = 10
	e := start(t, config{budget: budget, freshness: time.Millisecond})
	watched := e.create(t, true)
	w := e.tr.Watch(watched)
	defer w.Close()
	var readers []int64
	for range 30 {
		readers = append(readers, e.create(t, false))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, id := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _ = e.tr.Get(ctx, id) // each wants a fresh poll: more than the budget
			}
		}()
	}
	before := e.polls(watched)
	var readerPolls int64
	waitFor(t, "reads using the budget", func() bool {
		st := e.emu.Stats()
		readerPolls = 0
		for _, id := range readers {
			readerPolls += st.TaskPolls(id)
		}
		return readerPolls >= 4*budget
	})
	cancel()
	wg.Wait()
	// 40 reads take 4s of the budget; the watched task shares it with the
	// 30 read ones (polled about every 31/10 s), so it had its turn.
	if got := e.polls(watched) - before; got < 1 {
		t.Fatalf("the watched task got %d polls while Gets took %d", got, readerPolls)
	}
}

// TestAbandonedGetsLeaveNoUrgency: a Get makes its task urgent only while
// its caller waits. Forty callers that gave up on tasks nobody else wants
// leave nothing to poll, so a caller who waits is answered at once.
func TestAbandonedGetsLeaveNoUrgency(t *testing.T) {
	e := start(t, config{budget: 10, stopped: true})
	for i := range 40 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err := e.tr.Get(ctx, 1_000_000_000+int64(i))
		cancel()
		if err == nil {
			t.Fatal("a Get answered with the scheduler stopped")
		}
	}
	if st := e.tr.Stats(); st.Scheduled != 0 || st.Tasks != 0 {
		t.Fatalf("abandoned Gets left %+v behind", st)
	}
	id := e.create(t, false)
	e.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s, err := e.tr.Get(ctx, id); err != nil || s.State != cloud.StatusPending {
		t.Fatalf("the Get a caller waits for: %+v %v", s, err)
	}
	if n := e.emu.Stats().Actions[cloud.ActionExportTasks].Requests; n != 1 {
		t.Fatalf("the cloud was asked %d times; only the waited-for task needed a poll", n)
	}
}

// TestBackoffOutlastsChurn: watchers opening and closing on a task whose
// polls fail do not make it due again: the backoff holds.
func TestBackoffOutlastsChurn(t *testing.T) {
	e := start(t, config{minPoll: 500 * time.Millisecond, maxBackoff: 4 * time.Second})
	id := e.create(t, true)
	if err := e.emu.InjectFault(emulator.Fault{Kind: emulator.FaultInternalError, Action: cloud.ActionExportTasks}); err != nil {
		t.Fatal(err)
	}
	w := e.tr.Watch(id)
	waitFor(t, "a failed poll", func() bool { s, _ := w.Current(); return s.Failures >= 1 })
	first := e.emu.Stats().Actions[cloud.ActionExportTasks].Requests
	began := time.Now()
	for range 20 {
		e.tr.Watch(id).Close()
		g, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, _ = e.tr.Get(g, id)
		cancel()
		e.tr.Follow(id, time.Time{})
		time.Sleep(100 * time.Millisecond)
	}
	w.Close()
	e.tr.Unfollow(id)
	took := time.Since(began)
	// Backoff after n failures is at least 0.5 s × 2^(n-1): within the
	// churn's time at most this many retries fit.
	allowed := int64(1)
	for d := 500 * time.Millisecond; d < took; d *= 2 {
		allowed++
	}
	if n := e.emu.Stats().Actions[cloud.ActionExportTasks].Requests - first; n > allowed {
		t.Fatalf("%d polls of a failing task in %v of churn; its backoff allows %d", n, took, allowed)
	}
}

// TestSlowCloudIsTransient: polls that outlast their timeout are failures
// to retry, not a verdict on the task: watchers keep following it and see
// it finish once the cloud answers in time again.
func TestSlowCloudIsTransient(t *testing.T) {
	e := start(t, config{pollTimeout: 200 * time.Millisecond})
	id := e.create(t, true)
	if err := e.emu.InjectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: cloud.ActionExportTasks, Delay: 600 * time.Millisecond, Count: 2}); err != nil {
		t.Fatal(err)
	}
	w := e.tr.Watch(id)
	waitFor(t, "a timed-out poll", func() bool { s, _ := w.Current(); return s.Failures >= 1 || s.Err != nil })
	if s, _ := w.Current(); s.Err != nil || !cloud.Transient(s.LastErr) {
		t.Fatalf("a poll that timed out ended the watch: err %v, last poll error %v", s.Err, s.LastErr)
	}
	waitFor(t, "the faults to pass", func() bool { return len(e.emu.Faults().Active) == 0 })
	if err := e.emu.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if s := follow(ctx, w); s.State != cloud.StatusFinished || s.Err != nil {
		t.Fatalf("the watcher ended with %+v", s)
	}
}

// TestLocalConformance runs the schedule's conformance suite against the
// engine of one process.
func TestLocalConformance(t *testing.T) {
	trackertest.Run(t, trackertest.Engine{Replicas: 1, New: func(*testing.T) trackertest.Schedule { return &localSchedule{} }})
}

// localSchedule is tracker.Local as the suite's schedule: one replica.
type localSchedule struct{ l *tracker.Local }

func (s *localSchedule) Join(t *testing.T, o trackertest.Options) tracker.Scheduler {
	if s.l != nil {
		t.Fatal("tracker.Local serves one process")
	}
	s.l = tracker.NewLocal(tracker.LocalOptions{Cloud: o.Cloud, Budget: budget.MustNew(budget.Options{Rate: o.Rate}), Pacing: o.Pacing, Now: o.Clock})
	return s.l
}

func (s *localSchedule) Drop(_ *testing.T, id int64) { s.l.Forget(id) }
