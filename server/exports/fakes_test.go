package exports

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// The saga's unit tests run over small fakes of the interfaces it declares;
// the end-to-end tests (server/e2e) run it over the real registry, cloud
// client and tracker.

// fakeRegistry is a Registry in memory, with the semantics the saga relies
// on: a request id is reserved once per creator; a reservation is in
// flight until its outcome is recorded.
type fakeRegistry struct {
	mu    sync.Mutex
	rows  map[string]*taskstore.Task
	next  int
	fail  error // returned by every call when set
	calls map[string]int
	// failures makes the next n calls of a method fail with
	// errRegistryDown; gates make calls of a method wait until closed.
	// Both are set before the saga runs.
	failures map[string]int
	gates    map[string]chan struct{}
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{rows: map[string]*taskstore.Task{}, calls: map[string]int{}, failures: map[string]int{}, gates: map[string]chan struct{}{}}
}

func (r *fakeRegistry) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

func (r *fakeRegistry) enter(name string) error {
	if gate := r.gates[name]; gate != nil {
		<-gate
	}
	r.mu.Lock()
	r.calls[name]++
	if r.failures[name] > 0 {
		r.failures[name]--
		return errRegistryDown
	}
	return r.fail
}

// abandoned makes creator's reservation of rid look like its process
// stopped: owned by another process, its lease past.
func (r *fakeRegistry) abandoned(creator, rid string, callStarted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	id := fmt.Sprint(r.next)
	r.rows[id] = &taskstore.Task{ID: id, RequestID: rid, Creator: creator, Owner: "stopped", CallStarted: callStarted,
		Fingerprint: func() string { _, fp := encodeParameters(request(rid, "2026-01").Parameters, creator); return fp }()}
}

func (r *fakeRegistry) byRequest(creator, rid string) *taskstore.Task {
	for _, t := range r.rows {
		if rid != "" && t.Creator == creator && t.RequestID == rid {
			return t
		}
	}
	return nil
}

func (r *fakeRegistry) byTask(id int64) *taskstore.Task {
	for _, t := range r.rows {
		if t.TaskID == id {
			return t
		}
	}
	return nil
}

func (r *fakeRegistry) Reserve(_ context.Context, row taskstore.Task, _ time.Duration) (taskstore.Task, bool, error) {
	defer r.mu.Unlock()
	if err := r.enter("Reserve"); err != nil {
		return taskstore.Task{}, false, err
	}
	if got := r.byRequest(row.Creator, row.RequestID); got != nil {
		return *got, false, nil
	}
	r.next++
	row.ID, row.InFlight = fmt.Sprint(r.next), true
	r.rows[row.ID] = &row
	return row, true, nil
}

func (r *fakeRegistry) GetRequest(_ context.Context, creator, rid string) (taskstore.Task, bool, error) {
	defer r.mu.Unlock()
	if err := r.enter("GetRequest"); err != nil {
		return taskstore.Task{}, false, err
	}
	if got := r.byRequest(creator, rid); got != nil {
		return *got, true, nil
	}
	return taskstore.Task{}, false, nil
}

func (r *fakeRegistry) Complete(_ context.Context, id, owner string, t taskstore.Task) error {
	defer r.mu.Unlock()
	if err := r.enter("Complete"); err != nil {
		return err
	}
	if got := r.rows[id]; got == nil || got.Owner != owner {
		return taskstore.ErrLostReservation
	}
	t.InFlight = false
	r.rows[id] = &t
	return nil
}

func (r *fakeRegistry) CallStarting(_ context.Context, id, owner string, _ time.Duration) error {
	defer r.mu.Unlock()
	if err := r.enter("CallStarting"); err != nil {
		return err
	}
	got := r.rows[id]
	if got == nil || got.Owner != owner || got.TaskID != 0 || got.EndReason != "" {
		return taskstore.ErrLostReservation
	}
	got.CallStarted = true
	return nil
}

func (r *fakeRegistry) ReleaseUnstarted(_ context.Context, id string) (bool, error) {
	defer r.mu.Unlock()
	if err := r.enter("ReleaseUnstarted"); err != nil {
		return false, err
	}
	got := r.rows[id]
	if got == nil || got.TaskID != 0 || got.EndReason != "" || got.CallStarted || got.InFlight {
		return false, nil
	}
	delete(r.rows, id)
	return true, nil
}

// openRows returns copies of the creations without an outcome.
func (r *fakeRegistry) openRows() []taskstore.Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []taskstore.Task
	for _, t := range r.rows {
		if t.TaskID == 0 && t.EndReason == "" {
			out = append(out, *t)
		}
	}
	return out
}

func (r *fakeRegistry) Release(_ context.Context, id, _ string) error {
	defer r.mu.Unlock()
	if err := r.enter("Release"); err != nil {
		return err
	}
	delete(r.rows, id)
	return nil
}

func (r *fakeRegistry) Unknown(_ context.Context, id, _, reason string) error {
	defer r.mu.Unlock()
	if err := r.enter("Unknown"); err != nil {
		return err
	}
	r.rows[id].InFlight, r.rows[id].EndReason = false, reason
	return nil
}

func (r *fakeRegistry) Get(_ context.Context, id int64) (taskstore.Task, bool, error) {
	defer r.mu.Unlock()
	if err := r.enter("Get"); err != nil {
		return taskstore.Task{}, false, err
	}
	if got := r.byTask(id); got != nil {
		return *got, true, nil
	}
	return taskstore.Task{}, false, nil
}

func (r *fakeRegistry) Observe(_ context.Context, o taskstore.Observation) error {
	defer r.mu.Unlock()
	if err := r.enter("Observe"); err != nil {
		return err
	}
	if got := r.byTask(o.TaskID); got != nil {
		got.State, got.DownloadURL, got.LastRequestID, got.Observed, got.Changed = o.State, o.DownloadURL, o.RequestID, o.Observed, o.Changed
	}
	return nil
}

func (r *fakeRegistry) Abandon(_ context.Context, id int64, reason string) error {
	defer r.mu.Unlock()
	if err := r.enter("Abandon"); err != nil {
		return err
	}
	r.byTask(id).EndReason = reason
	return nil
}

func (r *fakeRegistry) Lost(_ context.Context, id int64, reason string, _ time.Time) error {
	defer r.mu.Unlock()
	if err := r.enter("Lost"); err != nil {
		return err
	}
	got := r.byTask(id)
	got.State, got.EndReason = taskstore.StateError, reason
	return nil
}

func (r *fakeRegistry) Following(context.Context) ([]taskstore.Task, error) {
	defer r.mu.Unlock()
	if err := r.enter("Following"); err != nil {
		return nil, err
	}
	var out []taskstore.Task
	for _, t := range r.rows {
		if t.TaskID != 0 && !t.Terminal() && t.EndReason == "" {
			out = append(out, *t)
		}
	}
	return out, nil
}

// fakeCloud answers creations with answer, numbering tasks from 1001.
type fakeCloud struct {
	mu     sync.Mutex
	calls  int
	answer func(call int) error // nil: every call succeeds
}

func (c *fakeCloud) ExportLicenseDetail(context.Context, cloud.ExportParams) (cloud.Created, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.answer != nil {
		if err := c.answer(c.calls); err != nil {
			return cloud.Created{}, err
		}
	}
	return cloud.Created{TaskID: int64(1000 + c.calls), RequestID: fmt.Sprintf("req-%d", c.calls)}, nil
}

func (c *fakeCloud) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// fakeBudget admits every call at once, or none (late).
type fakeBudget struct {
	mu                      sync.Mutex
	admits, again, throttle int
	late                    time.Duration // > 0: every call is refused as late
}

func (b *fakeBudget) wait(n *int) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	*n++
	if b.late > 0 {
		return 0, &budget.LateError{Delay: b.late}
	}
	return 0, nil
}

func (b *fakeBudget) Admit(context.Context, time.Time) (time.Duration, error) {
	return b.wait(&b.admits)
}
func (b *fakeBudget) Again(context.Context, time.Time) (time.Duration, error) {
	return b.wait(&b.again)
}
func (b *fakeBudget) Throttled() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.throttle++
}
func (b *fakeBudget) Configured() float64        { return 100 }
func (b *fakeBudget) Rate() float64              { return 100 }
func (b *fakeBudget) Throttles() int64           { return 0 }
func (b *fakeBudget) Wait(context.Context) error { return nil }

// fakeTracker records what the saga tells the tracker.
type fakeTracker struct {
	now                        func() time.Time // the saga's clock
	mu                         sync.Mutex
	created, followed, dropped []int64
}

func (t *fakeTracker) Created(id int64, _ string) tracker.Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.created = append(t.created, id)
	return tracker.Snapshot{TaskID: id, State: cloud.StatusPending}
}

func (t *fakeTracker) Now() time.Time { return t.now() }

func (t *fakeTracker) Follow(id int64, _ time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.followed = append(t.followed, id)
}

func (t *fakeTracker) Unfollow(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped = append(t.dropped, id)
}

var errRegistryDown = errors.New("registry down")

// fixture is a saga over fakes.
type fixture struct {
	saga    *Saga
	reg     *fakeRegistry
	cloud   *fakeCloud
	budget  *fakeBudget
	tracker *fakeTracker
}

func newFixture(opts Options) *fixture {
	f := &fixture{reg: newFakeRegistry(), cloud: &fakeCloud{}, budget: &fakeBudget{}, tracker: &fakeTracker{}}
	opts.Registry, opts.Cloud, opts.CreateBudget = f.reg, f.cloud, f.budget
	f.saga = newSaga(opts)
	f.saga.tracker, f.tracker.now = f.tracker, f.saga.opts.Now
	return f
}
