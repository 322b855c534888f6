package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/fleet"
	"github.com/cwpexport/cwpexport/server/pgtest"
	"github.com/cwpexport/cwpexport/server/tracker"
	"github.com/cwpexport/cwpexport/server/tracker/trackertest"
)

const (
	secretID  = "AKIDfleet0000000000000000000000000000"
	secretKey = "fleet-secret-key-0123456789abcdef"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// database returns the DSN of a fresh database for the test.
func database(t *testing.T) string { return pgtest.DSN(t) }

// replica is one process's share of the fleet: its pool, its handle.
type replica struct {
	pool  *pgxpool.Pool
	fleet *fleet.Fleet
}

func join(t *testing.T, dsn, name string) *replica { return joinTraced(t, dsn, name, nil) }

// joinTraced is join with a tracer of the replica's statements.
func joinTraced(t *testing.T, dsn, name string, tracer pgx.QueryTracer) *replica {
	t.Helper()
	return joinWith(t, dsn, fleet.Options{Replica: name}, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = tracer })
}

// joinWith is join with the fleet's options and the replica's pool
// configured by configure (nil: as parsed from dsn).
func joinWith(t *testing.T, dsn string, opts fleet.Options, configure func(*pgxpool.Config)) *replica {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f, err := fleet.Open(context.Background(), pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &replica{pool: pool, fleet: f}
}

// TestBudgetHoldsTheRateAcrossReplicas: three replicas taking slots of one
// budget as fast as they can never start more than R calls in any 1-second
// window.
func TestBudgetHoldsTheRateAcrossReplicas(t *testing.T) {
	dsn := database(t)
	const rate = 20
	var (
		mu     sync.Mutex
		starts []time.Time
		wg     sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for i := range 3 {
		r := join(t, dsn, fmt.Sprint("r", i))
		b, err := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportLicenseDetail, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if err := b.Wait(ctx); err != nil {
						return
					}
					mu.Lock()
					starts = append(starts, time.Now())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(starts) < rate {
		t.Fatalf("only %d calls started in 3s", len(starts))
	}
	peak := peakPerSecond(starts)
	if peak > rate {
		t.Fatalf("%d calls started within one second; the fleet's budget is %d", peak, rate)
	}
	t.Logf("%d calls in 3s, peak %d in a 1-s window", len(starts), peak)
}

func peakPerSecond(ts []time.Time) int {
	sortTimes(ts)
	peak, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	return peak
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

type env struct {
	emu   *emulator.Emulator
	addr  string
	cloud *cloud.Client
}

func startEmulator(t *testing.T) *env {
	t.Helper()
	emu, addr := trackertest.StartEmulator(t, emulator.Options{Credentials: map[string]string{secretID: secretKey}, PendingFor: -1})
	return &env{emu: emu, addr: addr, cloud: cloudAt(addr)}
}

// cloudAt is a cloud client of the test's account at addr.
func cloudAt(addr string) *cloud.Client {
	return cloud.New(cloud.Config{Credential: common.NewCredential(secretID, secretKey), Endpoint: addr, Scheme: "HTTP", Timeout: 5 * time.Second})
}

// createTask creates a cloud task through cl and returns its id.
func createTask(t *testing.T, cl *cloud.Client) int64 {
	t.Helper()
	created, err := cl.ExportLicenseDetail(context.Background(), cloud.ExportParams{})
	if err != nil {
		t.Fatal(err)
	}
	return created.TaskID
}

// node is a replica with a tracker on the fleet's schedule.
func (e *env) node(t *testing.T, dsn, name string) *tracker.Tracker {
	return e.nodeOf(t, join(t, dsn, name), e.cloud)
}

// nodeOf is node on a replica already joined, calling the cloud through cl.
func (e *env) nodeOf(t *testing.T, r *replica, cl *cloud.Client) *tracker.Tracker {
	t.Helper()
	b, err := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportTasks, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.fleet.Schedule(fleet.ScheduleOptions{Cloud: cl, Budget: b, Pacing: tracker.Pacing{MinInterval: 200 * time.Millisecond}, Freshness: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tr := tracker.New(tracker.Options{Scheduler: s, Freshness: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestADeadReplicasPollIsTakenOver: a replica that dies during a poll holds
// its lease until it expires; then another replica polls the task, and
// the dead replica's late result, if it came, would be refused by the
// epoch.
func TestADeadReplicasPollIsTakenOver(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	id := createTask(t, e.cloud)
	// The first poll hangs in the cloud; its replica dies meanwhile.
	if err := e.emu.InjectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: cloud.ActionExportTasks, Delay: 30 * time.Second, Count: 1}); err != nil {
		t.Fatal(err)
	}
	r := join(t, dsn, "doomed")
	b, _ := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportTasks, Rate: 20})
	s, _ := r.fleet.Schedule(fleet.ScheduleOptions{Cloud: e.cloud, Budget: b, Pacing: tracker.Pacing{MinInterval: 200 * time.Millisecond, PollTimeout: time.Second}})
	doomed := tracker.New(tracker.Options{Scheduler: s})
	ctx, kill := context.WithCancel(context.Background())
	died := make(chan struct{})
	go func() { defer close(died); doomed.Run(ctx) }()
	w := doomed.Watch(id)
	waitFor(t, "the doomed replica's poll to start", func() bool {
		var owner string
		_ = r.pool.QueryRow(context.Background(), `SELECT owner FROM fleet_tasks WHERE task_id = $1`, id).Scan(&owner)
		return owner == "doomed"
	})
	kill()
	<-died
	w.Close()

	survivor := e.node(t, dsn, "survivor")
	sw := survivor.Watch(id)
	defer sw.Close()
	waitFor(t, "the survivor to poll the task", func() bool { s, _ := sw.Current(); return s.Polls >= 1 && s.State == cloud.StatusPending })
	var owner string
	var epoch int64
	if err := r.pool.QueryRow(context.Background(), `SELECT owner, epoch FROM fleet_tasks WHERE task_id = $1`, id).Scan(&owner, &epoch); err != nil {
		t.Fatal(err)
	}
	if epoch < 2 {
		t.Fatalf("epoch %d after a takeover", epoch)
	}
	// A result under the dead replica's epoch is refused.
	tag, err := r.pool.Exec(context.Background(), `UPDATE fleet_tasks SET state = 'ERROR' WHERE task_id = $1 AND epoch = 1 AND owner = 'doomed'`, id)
	if err != nil || tag.RowsAffected() != 0 {
		t.Fatalf("a write under the old epoch: %v rows, %v", tag.RowsAffected(), err)
	}
}

// TestReadsShareTheFleetsObservation: a Get on one replica of a task
// another replica watches is answered from the shared observation, without
// a poll of its own.
func TestReadsShareTheFleetsObservation(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	a, b := e.node(t, dsn, "a"), e.node(t, dsn, "b")
	id := createTask(t, e.cloud)
	w := a.Watch(id)
	defer w.Close()
	waitFor(t, "a poll", func() bool { s, _ := w.Current(); return s.Polls >= 1 })
	for range 50 {
		s, err := b.Get(context.Background(), id)
		if err != nil || s.State != cloud.StatusPending {
			t.Fatalf("get on the other replica: %+v %v", s, err)
		}
	}
	s, _ := w.Current()
	if up := e.emu.Stats().TaskPolls(id); up > s.Polls+1 {
		t.Fatalf("50 Gets on another replica made %d polls beside the %d scheduled", up-s.Polls, s.Polls)
	}
}

// rowReads counts a replica's statements that read the rows of tasks by
// their ids (the feed's reads).
type rowReads struct{ n atomic.Int64 }

func (r *rowReads) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "t.task_id = ANY(") {
		r.n.Add(1)
	}
	return ctx
}

func (*rowReads) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestNotificationsCarryTheObservation: a replica watching a task learns
// each poll, whichever replica made it, from the poll's notification,
// without reading the task's row again.
func TestNotificationsCarryTheObservation(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	var reads rowReads
	e.node(t, dsn, "a")
	b := e.nodeOf(t, joinTraced(t, dsn, "b", &reads), e.cloud)
	id := createTask(t, e.cloud)
	w := b.Watch(id)
	defer w.Close()
	waitFor(t, "two polls", func() bool { s, _ := w.Current(); return s.Polls >= 2 })
	before, polled := reads.n.Load(), e.emu.Stats().TaskPolls(id)
	waitFor(t, "five polls more", func() bool { return e.emu.Stats().TaskPolls(id) >= polled+5 })
	if err := e.emu.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watcher to see FINISHED", func() bool { s, _ := w.Current(); return s.State == cloud.StatusFinished })
	s, _ := w.Current()
	if up := e.emu.Stats().TaskPolls(id); s.Polls != up {
		t.Errorf("the watcher saw %d polls; the cloud answered %d", s.Polls, up)
	}
	if n := reads.n.Load() - before; n != 0 {
		t.Fatalf("the watching replica read the task's row %d times over %d polls; the notifications carry it", n, s.Polls-polled)
	}
}

// TestRowsTooLargeForANotificationAreRead: a poll whose row would not fit
// in a notification (here a cloud whose download URLs are 9 KB long)
// reaches the watchers on every replica all the same: its notification
// names the task, and they read the row.
func TestRowsTooLargeForANotificationAreRead(t *testing.T) {
	dsn := database(t)
	e := startEmulator(t)
	target, err := url.Parse("http://" + e.addr)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 9000)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var answer struct{ Response map[string]any }
		if json.Unmarshal(body, &answer) == nil {
			if u, _ := answer.Response["DownloadUrl"].(string); u != "" {
				answer.Response["DownloadUrl"] = u + "#" + pad
				if body, err = json.Marshal(answer); err != nil {
					return err
				}
			}
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	long := cloudAt(lis.Addr().String())

	nodes := []*tracker.Tracker{e.nodeOf(t, join(t, dsn, "a"), long), e.nodeOf(t, join(t, dsn, "b"), long)}
	id := createTask(t, long)
	var watches []*tracker.Watch
	for _, n := range nodes {
		w := n.Watch(id)
		defer w.Close()
		watches = append(watches, w)
	}
	waitFor(t, "two polls", func() bool { return e.emu.Stats().TaskPolls(id) >= 2 })
	if err := e.emu.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	for i, w := range watches {
		waitFor(t, "every watcher to see FINISHED", func() bool { s, _ := w.Current(); return s.State == cloud.StatusFinished })
		if s, _ := w.Current(); !strings.HasSuffix(s.DownloadURL, pad) {
			t.Errorf("watcher %d: a download URL of %d bytes, without the cloud's end", i, len(s.DownloadURL))
		}
	}
}

// TestScheduleConformance runs the schedule's conformance suite against the
// fleet's schedule: replicas sharing one PostgreSQL database.
func TestScheduleConformance(t *testing.T) {
	trackertest.Run(t, trackertest.Engine{Replicas: 3, New: func(t *testing.T) trackertest.Schedule { return &sharedSchedule{dsn: database(t)} }})
}

// sharedSchedule is the fleet's schedule as the suite's: each replica
// joins the test's database with a pool, a budget and a schedule of its
// own.
type sharedSchedule struct {
	dsn      string
	replicas []*replica
}

func (s *sharedSchedule) Join(t *testing.T, o trackertest.Options) tracker.Scheduler {
	r := joinWith(t, s.dsn, fleet.Options{Replica: fmt.Sprint("r", len(s.replicas)), Clock: o.Clock}, nil)
	s.replicas = append(s.replicas, r)
	b, err := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportTasks, Rate: o.Rate})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := r.fleet.Schedule(fleet.ScheduleOptions{Cloud: o.Cloud, Budget: b, Pacing: o.Pacing})
	if err != nil {
		t.Fatal(err)
	}
	return sched
}

// Drop deletes the task's row, as the schedule's cleanup does an hour
// after its last poll when nobody wants it.
func (s *sharedSchedule) Drop(t *testing.T, id int64) {
	if _, err := s.replicas[0].pool.Exec(context.Background(), `DELETE FROM fleet_tasks WHERE task_id = $1`, id); err != nil {
		t.Fatal(err)
	}
}
