// Package trackertest is the conformance suite of tracker.Scheduler: the
// properties every engine of the schedule keeps, written once and run
// against each engine (tracker.Local in one process, the fleet's schedule
// on PostgreSQL), as river's riverdrivertest is for its drivers.
//
// The suite runs real trackers on the engine's schedulers against the CWP
// emulator over loopback HTTP through the real SDK client, and asserts
// what the emulator saw and what the trackers report. It waits on
// conditions with generous deadlines and asserts counts and orderings; the
// only durations it checks are the schedule's own bounds (the floor
// between two polls of a task).
package trackertest

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Options configure one replica's scheduler.
type Options struct {
	// Cloud answers the polls.
	Cloud tracker.Reader
	// Rate is the read budget of the schedule, in polls per second.
	Rate float64
	// Pacing paces each task's polls.
	Pacing tracker.Pacing
	// Clock is the replica's own clock (which may be off the others').
	Clock func() time.Time
}

// Engine is a tracker.Scheduler implementation under test.
type Engine struct {
	// Replicas is how many processes can share one schedule: 1 for an
	// engine of one process.
	Replicas int
	// New returns a new, empty schedule for the test; the replicas that
	// join it share it.
	New func(t *testing.T) Schedule
}

// Schedule is one schedule, shared by the replicas that join it.
type Schedule interface {
	// Join returns the scheduler of a new replica of the schedule.
	Join(t *testing.T, o Options) tracker.Scheduler
	// Drop makes the schedule forget task id, as it does of a task nobody
	// wanted for long (the tracker may still hold it).
	Drop(t *testing.T, id int64)
}

const (
	secretID  = "AKIDconformance00000000000000000000"
	secretKey = "conformance-secret-key-0123456789ab"
	floor     = 200 * time.Millisecond
	rate      = 20
	deadline  = 30 * time.Second
)

// Run runs the suite against the engine.
func Run(t *testing.T, e Engine) {
	for _, p := range []struct {
		name string
		test func(*testing.T, Engine)
	}{
		{"OnePollerPerTask", onePollerPerTask},
		{"NoPollsOnceNobodyWatches", noPollsOnceNobodyWatches},
		{"BackoffKeepsTheFloor", backoffKeepsTheFloor},
		{"FairShare", fairShare},
		{"GenerationsNeverGoBack", generationsNeverGoBack},
		{"EndingsAlwaysReachTheRegistry", endingsAlwaysReachTheRegistry},
		{"OneClock", oneClock},
		{"ReadsAnswerDuringAnOutage", readsAnswerDuringAnOutage},
	} {
		t.Run(p.name, func(t *testing.T) { p.test(t, e) })
	}
}

// world is one test's cloud and schedule.
type world struct {
	emu   *emulator.Emulator
	cloud *cloud.Client
	sched Schedule
}

// StartEmulator serves an emulator made with opts on a loopback port
// until the test ends, and returns it with its address.
func StartEmulator(t *testing.T, opts emulator.Options) (*emulator.Emulator, string) {
	t.Helper()
	emu, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = emu.Serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	return emu, lis.Addr().String()
}

func newWorld(t *testing.T, e Engine) *world {
	t.Helper()
	emu, addr := StartEmulator(t, emulator.Options{Credentials: map[string]string{secretID: secretKey}, PendingFor: -1})
	cl := cloud.New(cloud.Config{Credential: common.NewCredential(secretID, secretKey), Endpoint: addr, Scheme: "HTTP", Timeout: 5 * time.Second})
	return &world{emu: emu, cloud: cl, sched: e.New(t)}
}

// replica is one process: a tracker on the schedule.
type replica struct {
	*tracker.Tracker
	stop func()
}

// replicaOptions configure a replica; zero values take the suite's.
type replicaOptions struct {
	Options
	observer  tracker.Observer
	retention time.Duration
}

// join starts a replica on the world's schedule.
func (w *world) join(t *testing.T, o replicaOptions) *replica {
	t.Helper()
	if o.Cloud == nil {
		o.Cloud = w.cloud
	}
	if o.Rate == 0 {
		o.Rate = rate
	}
	if o.Pacing == (tracker.Pacing{}) {
		o.Pacing = tracker.Pacing{MinInterval: floor, BackgroundInterval: floor, MaxBackoff: 4 * floor}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	tr := tracker.New(tracker.Options{Scheduler: w.sched.Join(t, o.Options), Observer: o.observer, Retention: o.retention})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &replica{Tracker: tr, stop: stop}
}

// replicas starts up to n replicas, as many as the engine shares.
func (w *world) replicas(t *testing.T, e Engine, n int) []*replica {
	var rs []*replica
	for range min(n, e.Replicas) {
		rs = append(rs, w.join(t, replicaOptions{}))
	}
	return rs
}

// create starts an export in the cloud.
func (w *world) create(t *testing.T) int64 {
	t.Helper()
	c, err := w.cloud.ExportLicenseDetail(context.Background(), cloud.ExportParams{})
	if err != nil {
		t.Fatal(err)
	}
	return c.TaskID
}

func (w *world) finish(t *testing.T, id int64) {
	t.Helper()
	if err := w.emu.FinishTask(id); err != nil {
		t.Fatal(err)
	}
}

func (w *world) polls(id int64) int64 { return w.emu.Stats().TaskPolls(id) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func current(w *tracker.Watch) tracker.Snapshot { s, _ := w.Current(); return s }

// onePollerPerTask: a task watched by many callers on every replica is
// polled as if it had one watcher: every watcher sees the polls the cloud
// answered, no more, and the task's end; the polls keep the floor.
func onePollerPerTask(t *testing.T, e Engine) {
	w := newWorld(t, e)
	reader := &timedReader{Reader: w.cloud}
	id := w.create(t)
	var watches []*tracker.Watch
	for range min(3, e.Replicas) {
		r := w.join(t, replicaOptions{Options: Options{Cloud: reader}})
		for range 50 {
			watches = append(watches, r.Watch(id))
		}
	}
	waitFor(t, "five polls", func() bool { return w.polls(id) >= 5 })
	w.finish(t, id)
	for _, wa := range watches {
		waitFor(t, "every watcher to see FINISHED", func() bool { return current(wa).State == cloud.StatusFinished })
	}
	upstream := w.polls(id)
	for i, wa := range watches {
		if s := current(wa); s.Polls != upstream {
			t.Fatalf("watcher %d saw %d polls; the cloud answered %d: polls are not shared", i, s.Polls, upstream)
		}
		wa.Close()
	}
	reader.keptFloor(t)
}

// noPollsOnceNobodyWatches: polls go on while a watcher is left on any
// replica, and stop when the last one leaves.
func noPollsOnceNobodyWatches(t *testing.T, e Engine) {
	w := newWorld(t, e)
	rs := w.replicas(t, e, 2)
	id := w.create(t)
	var watches []*tracker.Watch
	for _, r := range rs {
		watches = append(watches, r.Watch(id), r.Watch(id))
	}
	waitFor(t, "three polls", func() bool { return w.polls(id) >= 3 })
	for _, wa := range watches[:len(watches)-1] {
		wa.Close()
	}
	before := w.polls(id)
	waitFor(t, "polls for the last watcher", func() bool { return w.polls(id) >= before+3 })
	watches[len(watches)-1].Close()
	for _, r := range rs {
		waitFor(t, "the watchers to leave", func() bool { return r.Stats().Watchers == 0 })
	}
	// A poll may have been taken before the last interest left.
	time.Sleep(2 * floor)
	stopped := w.polls(id)
	time.Sleep(10 * floor)
	if after := w.polls(id); after > stopped+1 {
		t.Fatalf("polls went on for nobody: %d -> %d", stopped, after)
	}
}

// timedReader records when each poll started.
type timedReader struct {
	tracker.Reader
	mu    sync.Mutex
	times []time.Time
}

func (r *timedReader) ExportTasks(ctx context.Context, id int64) (cloud.TaskStatus, error) {
	r.mu.Lock()
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	return r.Reader.ExportTasks(ctx, id)
}

// backoffKeepsTheFloor: polls of a task the cloud keeps throttling back
// off, whichever replica makes them, and are never closer than the floor
// between two polls of one task.
func backoffKeepsTheFloor(t *testing.T, e Engine) {
	w := newWorld(t, e)
	reader := &timedReader{Reader: w.cloud}
	id := w.create(t)
	if err := w.emu.InjectFault(emulator.Fault{Kind: emulator.FaultRequestLimitExceeded, Action: cloud.ActionExportTasks}); err != nil {
		t.Fatal(err)
	}
	var watches []*tracker.Watch
	for range min(2, e.Replicas) {
		r := w.join(t, replicaOptions{Options: Options{Cloud: reader}})
		r.Created(id, "")
		wa := r.Watch(id)
		defer wa.Close()
		watches = append(watches, wa)
	}
	waitFor(t, "six throttled polls", func() bool { return current(watches[0]).Failures >= 6 })
	reader.keptFloor(t)
}

// keptFloor fails t if two polls started closer than the floor. The floor
// is kept by the schedule's clock; the starts are read on this machine's
// after a timer: a tenth of slack for the timer.
func (r *timedReader) keptFloor(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	times := slices.Clone(r.times)
	r.mu.Unlock()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < floor*9/10 {
			t.Errorf("poll %d started %v after the previous one, under the %v floor", i+1, gap, floor)
		}
	}
}

// fairShare: tasks that share the budget are polled about equally often:
// each gets its share, none is starved or favoured.
func fairShare(t *testing.T, e Engine) {
	w := newWorld(t, e)
	const k, budget = 8, 4
	var rs []*replica
	for range min(2, e.Replicas) {
		rs = append(rs, w.join(t, replicaOptions{Options: Options{Rate: budget}}))
	}
	ids := make([]int64, k)
	for i := range ids {
		ids[i] = w.create(t)
		r := rs[i%len(rs)]
		r.Created(ids[i], "")
		defer r.Watch(ids[i]).Close()
	}
	total := func() (n int64) {
		for _, id := range ids {
			n += w.polls(id)
		}
		return n
	}
	waitFor(t, "five rounds of polls", func() bool { return total() >= 5*k })
	counts := make([]int64, k)
	for i, id := range ids {
		counts[i] = w.polls(id)
	}
	if lo, hi := slices.Min(counts), slices.Max(counts); lo == 0 || hi-lo > 3 {
		t.Fatalf("polls per task %v: the budget is not shared fairly", counts)
	}
}

// generationsNeverGoBack: a replica holding a task's observations after
// the schedule forgot the task (and counts its polls from 0 again) takes
// the new polls as news: a Refresh is answered by its first poll.
func generationsNeverGoBack(t *testing.T, e Engine) {
	w := newWorld(t, e)
	r := w.join(t, replicaOptions{})
	id := w.create(t)
	wa := r.Watch(id)
	waitFor(t, "eight polls", func() bool { return current(wa).Polls >= 8 })
	w.finish(t, id)
	waitFor(t, "the watcher to see FINISHED", func() bool { return current(wa).State == cloud.StatusFinished })
	wa.Close()
	w.sched.Drop(t, id)
	before := w.polls(id)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := r.Refresh(ctx, id)
	if err != nil || s.State != cloud.StatusFinished {
		t.Fatalf("refresh of a task whose schedule was made again: %q, %v (%d polls meanwhile)", s.State, err, w.polls(id)-before)
	}
	// Its first poll is news: the old count of polls is no reason to wait
	// for more.
	if n := w.polls(id) - before; n != 1 {
		t.Fatalf("the refresh was answered after %d polls; the first one answers it", n)
	}
}

// registry stands for the task registry: it records endings, and a
// replica's writes may fail.
type registry struct {
	mu       sync.Mutex
	recorded map[int64]cloud.Status
	failing  map[*tracker.Tracker]bool
}

// observer is one replica's observer writing the registry, as the service
// does: it ends the background interest once the ending is recorded.
type observer struct {
	reg *registry
	tr  **tracker.Tracker
}

func (o observer) Polled(s tracker.Snapshot, _ bool) {
	if !s.Terminal() {
		return
	}
	o.reg.mu.Lock()
	failing := o.reg.failing[*o.tr]
	if !failing {
		o.reg.recorded[s.TaskID] = s.State
	}
	o.reg.mu.Unlock()
	if !failing {
		(*o.tr).Unfollow(s.TaskID)
	}
}

func (r *registry) state(id int64) cloud.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recorded[id]
}

func (r *registry) fail(tr *tracker.Tracker, failing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing[tr] = failing
}

// endingsAlwaysReachTheRegistry: the replica that polled a task's ending
// fails to record it (its write failed, or it died after the poll); the
// registry still learns the ending — from a retry of that replica's, or
// from another replica that follows the task — and no replica keeps the
// ended task in memory once the registry stops following it.
func endingsAlwaysReachTheRegistry(t *testing.T, e Engine) {
	w := newWorld(t, e)
	reg := &registry{recorded: map[int64]cloud.Status{}, failing: map[*tracker.Tracker]bool{}}
	join := func() *replica {
		var tr *tracker.Tracker
		r := w.join(t, replicaOptions{observer: observer{reg: reg, tr: &tr}, retention: 300 * time.Millisecond})
		tr = r.Tracker
		return r
	}
	poller := join()
	reg.fail(poller.Tracker, true)
	id := w.create(t)
	poller.Created(id, "")
	poller.Follow(id, time.Time{})
	waitFor(t, "a poll", func() bool { return w.polls(id) >= 1 })
	w.finish(t, id)
	waitFor(t, "the poller to see FINISHED", func() bool { return poller.Peek(id).State == cloud.StatusFinished })
	if st := reg.state(id); st != "" {
		t.Fatalf("the registry recorded %q through a failing write", st)
	}
	followers := []*replica{poller}
	if e.Replicas > 1 {
		// Another replica follows the registry's unfinished tasks; the
		// poller's writes keep failing.
		followers = append(followers, join())
	} else {
		reg.fail(poller.Tracker, false) // the registry is back
	}
	// The registry's follow pass, while it has not recorded the ending.
	waitFor(t, "the registry to record FINISHED", func() bool {
		if reg.state(id) == cloud.StatusFinished {
			return true
		}
		for _, f := range followers {
			f.Follow(id, time.Time{})
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	for _, f := range followers {
		waitFor(t, "every replica to drop the ended task", func() bool { return f.Stats().Tasks == 0 })
	}
}

// oneClock: replicas whose clocks are 30 s apart from the schedule's agree
// on every time they share: a task created on one is seen to end by the
// watchers of all, and its times are read from one clock.
func oneClock(t *testing.T, e Engine) {
	w := newWorld(t, e)
	var rs []*replica
	for i, off := range []time.Duration{30 * time.Second, -30 * time.Second} {
		if i >= e.Replicas {
			break
		}
		rs = append(rs, w.join(t, replicaOptions{Options: Options{Clock: func() time.Time { return time.Now().Add(off) }}}))
	}
	id := w.create(t)
	rs[0].Created(id, "")
	var watches []*tracker.Watch
	for _, r := range rs {
		r.Follow(id, time.Time{})
		wa := r.Watch(id)
		defer wa.Close()
		watches = append(watches, wa)
	}
	waitFor(t, "a poll", func() bool { return w.polls(id) >= 1 })
	w.finish(t, id)
	for i, wa := range watches {
		waitFor(t, "every watcher to see FINISHED", func() bool { return current(wa).State == cloud.StatusFinished })
		s := current(wa)
		if s.Observed.Before(s.Created) || s.Changed.Before(s.Created) {
			t.Errorf("replica %d: observed %v and changed %v before the creation %v", i, s.Observed, s.Changed, s.Created)
		}
		if e.Replicas > 1 {
			// The schedule's clock is the database's, on this machine.
			if off := time.Since(s.Observed); off < -5*time.Second || off > 5*time.Second {
				t.Errorf("replica %d: observed %v, %v off the schedule's clock", i, s.Observed, off)
			}
		}
	}
}

// readsAnswerDuringAnOutage: while every poll fails, a read without a
// deadline of its own answers what was last observed (and how old it is)
// or the polls' failure, without waiting for the cloud to recover; once
// it recovers, the task is observed again.
func readsAnswerDuringAnOutage(t *testing.T, e Engine) {
	w := newWorld(t, e)
	rs := w.replicas(t, e, 2)
	seen, unseen := w.create(t), w.create(t)
	wa := rs[0].Watch(seen)
	waitFor(t, "a poll", func() bool { return current(wa).Polls >= 1 })
	wa.Close()
	observed := current(wa).Observed
	// Past every freshness: a read must ask the cloud, which fails.
	waitFor(t, "the observation to go stale", func() bool { return time.Since(observed) > 2*time.Second })
	if err := w.emu.InjectFault(emulator.Fault{Kind: emulator.FaultServiceUnavailable, Action: cloud.ActionExportTasks}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	reader := rs[len(rs)-1]
	for range 3 {
		s, err := reader.Read(ctx, seen)
		if err != nil || s.State != cloud.StatusPending || s.Observed.Before(observed) {
			t.Fatalf("a read of a task observed before, during the outage: %q observed %v (first %v), %v", s.State, s.Observed, observed, err)
		}
	}
	s, err := reader.Read(ctx, unseen)
	if err == nil || ctx.Err() != nil || cloud.KindOf(err) != cloud.KindUnavailable {
		t.Fatalf("a read of a task never observed, during the outage: %q, %v (want the cloud's unavailability)", s.State, err)
	}
	w.emu.ClearFaults()
	w.finish(t, seen)
	waitFor(t, "a read to see the task end", func() bool {
		s, err := reader.Read(ctx, seen)
		return err == nil && s.State == cloud.StatusFinished
	})
}
