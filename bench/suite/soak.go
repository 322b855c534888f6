package suite

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// SoakConfig sizes a soak run (`make soak`): replicas on one PostgreSQL,
// an emulator with intermittent faults, creations and watchers for
// Duration, replicas SIGKILLed and restarted, the database restarted once
// and delayed once, invariants checked as it goes and at the end.
type SoakConfig struct {
	// Duration is how long creations are sent; default 30m.
	Duration time.Duration
	// Replicas is the size of the fleet; default 3.
	Replicas int
	// KillEvery is the time between two SIGKILLs (each of the next
	// replica in turn, restarted 5 s later); default Duration/6, at
	// least 30 s.
	KillEvery time.Duration
	// CreateEvery is the time between two creations (alternately with
	// and without a request id); default 250ms.
	CreateEvery time.Duration
	// DBDelay is the latency added each way to every replica's database
	// connections once, for DBDelayFor; defaults 150ms and Duration/10
	// (at most 1 m).
	DBDelay    time.Duration
	DBDelayFor time.Duration
	// KeepLogs keeps the processes' logs and says where.
	KeepLogs bool
	// Command is the command line the report names.
	Command string
	// Out receives the progress and the report.
	Out io.Writer
	// Report, when set, also receives the report alone.
	Report io.Writer
}

func (c *SoakConfig) defaults() {
	if c.Duration <= 0 {
		c.Duration = 30 * time.Minute
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.KillEvery <= 0 {
		c.KillEvery = max(30*time.Second, c.Duration/6)
	}
	if c.CreateEvery <= 0 {
		c.CreateEvery = 250 * time.Millisecond
	}
	if c.DBDelay <= 0 {
		c.DBDelay = 150 * time.Millisecond
	}
	if c.DBDelayFor <= 0 {
		c.DBDelayFor = min(time.Minute, c.Duration/10)
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
}

// The soak's limits: the cloud's quota per action and window, the
// emulator's time to finish a task, and the warm-up after which memory
// and rows must stay flat.
const (
	soakQuota   = 20
	soakPending = 5 * time.Second
	soakWarmUp  = time.Minute
	// soakGrowth is how much a figure may grow after warm-up and still be
	// called flat.
	soakGrowth = 1.5
)

// soakFaults are the emulator's intermittent faults for the whole run.
var soakFaults = []emulator.Fault{
	{Kind: emulator.FaultServiceUnavailable, Probability: 0.02},
	{Kind: emulator.FaultInternalError, Action: cloud.ActionExportTasks, Probability: 0.02},
	// Latency on creations only, at a rate well under the quota: the
	// emulator admits a delayed request at its arrival time, after later
	// ones, and its limiter then refuses it (RequestLimitExceeded) though
	// the window held fewer than the quota; on polls, near the quota, that
	// would read as the fleet exceeding it.
	{Kind: emulator.FaultLatency, Action: cloud.ActionExportLicenseDetail, Probability: 0.03, Delay: time.Second},
	{Kind: emulator.FaultReset, Action: cloud.ActionExportTasks, Probability: 0.01},
}

// soak is one soak run.
type soak struct {
	*fleetRunner
	cfg      SoakConfig
	start    time.Time
	creds    []string
	emuAddr  string
	database string // through the delay proxy
	args     []string
	env      *fleetEnv
	proxy    *delayProxy
	db       *pgx.Conn // direct, for row counts; nil while down

	mu         sync.Mutex
	gen        []int       // each slot's incarnation
	born       []time.Time // each slot's current incarnation's start
	events     []string    // chaos, in order
	findings   []string    // violated invariants, in order
	outcomes   map[string]int
	failedAt   map[string][]soakFailure // when and where each failed outcome was answered
	tasks      []string                 // task ids answered OK
	ridTasks   map[string]string
	watches    []*soakWatch
	rss        map[string][]soakSample // per incarnation (replicaN)
	rows       map[string][]soakSample // per table
	peakSeen   map[string]int64
	dupSeen    map[string]bool
	creations  sync.WaitGroup
	watching   sync.WaitGroup
	createStop time.Time
	end        soakEnd
}

// soakSample is one figure at a time since the start.
type soakSample struct {
	at time.Duration
	v  int64
}

// soakFailure is a failed creation: when it was answered, by which
// process.
type soakFailure struct {
	at      time.Duration
	replica string
}

// soakWatch is one watched task.
type soakWatch struct {
	id      string
	resumes int
	errs    map[codes.Code]int
	ended   bool
	took    time.Duration
}

// RunSoak builds the binaries, starts PostgreSQL and runs the soak,
// writing progress and findings as they happen and the report at the end.
// A violated invariant is reported, not returned: the error is for a run
// that could not be made.
func RunSoak(ctx context.Context, cfg SoakConfig) error {
	cfg.defaults()
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "cwpsoak")
	if err != nil {
		return err
	}
	if cfg.KeepLogs {
		fmt.Fprintf(os.Stderr, "soak: the processes' logs are in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	s := &soak{
		fleetRunner: &fleetRunner{Runner: &Runner{dir: dir, out: cfg.Out}},
		cfg:         cfg,
		outcomes:    map[string]int{},
		failedAt:    map[string][]soakFailure{},
		ridTasks:    map[string]string{},
		rss:         map[string][]soakSample{},
		rows:        map[string][]soakSample{},
		peakSeen:    map[string]int64{},
		dupSeen:     map[string]bool{},
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/cwp-emulator", "./cmd/cwpexportd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if s.pg, err = startPGCluster(ctx); err != nil {
		return err
	}
	defer s.pg.destroy()
	if err := s.startFleet(ctx); err != nil {
		return err
	}
	defer s.close()
	return s.run(ctx)
}

// startFleet starts the emulator (faults on), the delay proxy in front of
// PostgreSQL and the replicas behind it.
func (s *soak) startFleet(ctx context.Context) error {
	s.creds = []string{"TENCENTCLOUD_SECRET_ID=AKIDsoak" + rand.Text(), "TENCENTCLOUD_SECRET_KEY=" + rand.Text()}
	e := &fleetEnv{}
	s.env = e
	var err error
	if s.emuAddr, err = freeAddr(); err != nil {
		return err
	}
	if e.stateDir, err = os.MkdirTemp(s.dir, "emulator-"); err != nil {
		return err
	}
	emu, err := startProc(s.dir, "emulator", s.creds, s.bin("cwp-emulator"), "-listen", s.emuAddr,
		"-pending", soakPending.String(), "-rate-limit", fmt.Sprint(soakQuota), "-state-dir", e.stateDir)
	if err != nil {
		return err
	}
	e.emu = &cluster{emu: emu, emuAddr: s.emuAddr}
	if err := waitHTTP(ctx, "http://"+s.emuAddr+"/_emulator/stats"); err != nil {
		return err
	}
	for _, f := range soakFaults {
		if err := e.emu.injectFault(f); err != nil {
			return err
		}
	}
	if e.db, err = s.createDatabase(ctx, "soak"); err != nil {
		return err
	}
	if s.proxy, err = startDelayProxy(fmt.Sprintf("127.0.0.1:%d", s.pg.port)); err != nil {
		return err
	}
	s.database = strings.Replace(s.pg.url(e.db), fmt.Sprintf(":%d/", s.pg.port), ":"+portOf(s.proxy.addr())+"/", 1)
	s.args = append(slices.Clone(fleetRates), "-heartbeat", "1s")
	s.start = time.Now()
	for i := range s.cfg.Replicas {
		rep, err := s.startReplica(ctx, i, s.creds, s.emuAddr, s.database, s.args)
		if err != nil {
			return err
		}
		e.replicas = append(e.replicas, rep)
		s.gen = append(s.gen, 0)
		s.born = append(s.born, time.Now())
	}
	return nil
}

func (s *soak) close() {
	s.mu.Lock()
	e := s.env
	s.mu.Unlock()
	e.close()
	if s.proxy != nil {
		s.proxy.close()
	}
	if s.db != nil {
		s.db.Close(context.Background())
	}
}

// since is the time since the start, for the log and the report.
func (s *soak) since() string { return fmt.Sprintf("+%s", time.Since(s.start).Round(time.Second)) }

// event logs a step of the chaos; finding logs a violated invariant.
func (s *soak) event(format string, args ...any) { s.note(&s.events, "", format, args...) }

func (s *soak) finding(format string, args ...any) {
	s.note(&s.findings, "VIOLATION ", format, args...)
}

func (s *soak) note(list *[]string, prefix, format string, args ...any) {
	line := s.since() + " " + fmt.Sprintf(format, args...)
	s.mu.Lock()
	*list = append(*list, line)
	s.mu.Unlock()
	s.printf("%s%s\n", prefix, line)
}

// live returns a live replica, the k-th in turn; nil when none is.
func (s *soak) live(k int) *replica {
	s.mu.Lock()
	defer s.mu.Unlock()
	reps := s.env.replicas
	for j := range reps {
		if rep := reps[(k+j)%len(reps)]; !rep.killed {
			return rep
		}
	}
	return nil
}

func (s *soak) run(ctx context.Context) error {
	s.printf("# soak: %d replicas on PostgreSQL %s, emulator faults %s, %s of creations every %s, load average %s\n",
		s.cfg.Replicas, s.pg.version, faultList(), s.cfg.Duration, s.cfg.CreateEvery, loadAverage())
	loadCtx, stopLoad := context.WithTimeout(ctx, s.cfg.Duration)
	defer stopLoad()
	// Watchers and the final checks may run past the load's end.
	watchCtx, stopWatch := context.WithTimeout(ctx, s.cfg.Duration+5*time.Minute)
	defer stopWatch()

	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); s.chaos(loadCtx) }()
	go func() { defer bg.Done(); s.monitor(watchCtx) }()

	tick := time.NewTicker(s.cfg.CreateEvery)
	for k := 0; loadCtx.Err() == nil; k++ {
		s.creations.Add(1)
		go func() { defer s.creations.Done(); s.create(watchCtx, k) }()
		select {
		case <-loadCtx.Done():
		case <-tick.C:
		}
	}
	tick.Stop()
	s.createStop = time.Now()
	s.creations.Wait()
	s.event("creations stopped; waiting for the watchers")
	done := make(chan struct{})
	go func() { s.watching.Wait(); close(done) }()
	select {
	case <-done:
	case <-watchCtx.Done():
	}
	s.checkRegistry(watchCtx)
	stopWatch()
	bg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.report()
}

func faultList() string {
	var out []string
	for _, f := range soakFaults {
		a := f.Action
		if a == "" {
			a = "both actions"
		}
		out = append(out, fmt.Sprintf("%s on %s p=%.2f", f.Kind, a, f.Probability))
	}
	return strings.Join(out, ", ")
}

// create sends creation k: odd ones carry a request id and are retried
// with it on another replica while the answer is Unavailable or
// DeadlineExceeded (a client's safe retry); even ones are sent once.
func (s *soak) create(watchCtx context.Context, k int) {
	rid := ""
	if k%2 == 1 {
		rid = uuid.NewString()
	}
	var (
		id  string
		err error
	)
	last := "" // the process that gave the last answer
	for try := 0; ; try++ {
		rep := s.live(k + try)
		if rep != nil {
			last = rep.p.name
		} else {
			last = "(no live replica)"
		}
		if rep == nil {
			err = status.Error(codes.Unavailable, "no live replica")
		} else {
			cctx, cancel := context.WithTimeout(watchCtx, 30*time.Second)
			var res *cwpexportv1.ExportLicenseDetailResponse
			res, err = rep.client.ExportLicenseDetail(cctx, exportRequest(rid))
			cancel()
			id = res.GetTask().GetTaskId()
		}
		c := status.Code(err)
		if rid == "" || try >= 5 || (c != codes.Unavailable && c != codes.DeadlineExceeded) || watchCtx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	kind := "without id"
	if rid != "" {
		kind = "with id"
	}
	s.mu.Lock()
	outcome := kind + ": " + status.Code(err).String()
	s.outcomes[outcome]++
	if err != nil {
		s.failedAt[outcome] = append(s.failedAt[outcome], soakFailure{time.Since(s.start), last})
	}
	if err == nil {
		s.tasks = append(s.tasks, id)
		if rid != "" {
			s.ridTasks[rid] = id
		}
	}
	s.mu.Unlock()
	if err != nil || k%2 != 0 {
		return
	}
	// The tasks created without a request id are watched, each by one
	// resuming watcher.
	w := &soakWatch{id: id, errs: map[codes.Code]int{}}
	s.mu.Lock()
	s.watches = append(s.watches, w)
	s.mu.Unlock()
	s.watching.Add(1)
	go func() { defer s.watching.Done(); s.watch(watchCtx, w, k) }()
}

// watch follows w's task until it ends, resuming on the next live replica
// after any error (counted by code) or a stream that ends early. Unlike
// followTask it resumes after every error (a database restart may end
// streams with other codes than Unavailable) and picks replicas under the
// soak's lock, since restarts replace them while watchers run.
func (s *soak) watch(ctx context.Context, w *soakWatch, k int) {
	began := time.Now()
	for try := k; ctx.Err() == nil; try++ {
		rep := s.live(try)
		if rep != nil {
			err := func() error {
				stream, err := rep.client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: w.id})
				if err != nil {
					return err
				}
				for {
					m, err := stream.Recv()
					if err != nil {
						return err
					}
					if ended(m) {
						return nil
					}
				}
			}()
			s.mu.Lock()
			if err == nil {
				w.ended, w.took = true, time.Since(began)
				s.mu.Unlock()
				return
			}
			if !errors.Is(err, io.EOF) {
				w.errs[status.Code(err)]++
			}
			w.resumes++
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// chaos kills and restarts replicas in turn, restarts PostgreSQL once
// (at 40% of the run) and delays it once (at 65%).
func (s *soak) chaos(ctx context.Context) {
	type step struct {
		at time.Duration
		do func()
	}
	var steps []step
	n := 0
	for at := s.cfg.KillEvery; at < s.cfg.Duration; at += s.cfg.KillEvery {
		slot := n % s.cfg.Replicas
		n++
		steps = append(steps, step{at, func() { s.killRestart(ctx, slot) }})
	}
	steps = append(steps,
		step{s.cfg.Duration * 4 / 10, func() { s.restartDatabase(ctx) }},
		step{s.cfg.Duration * 65 / 100, func() { s.delayDatabase(ctx) }})
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	for _, st := range steps {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(s.start.Add(st.at))):
		}
		st.do()
	}
}

func (s *soak) killRestart(ctx context.Context, slot int) {
	// Killed under the lock: live() reads rep.killed.
	s.mu.Lock()
	rep := s.env.replicas[slot]
	err := rep.kill()
	s.mu.Unlock()
	name := rep.p.name
	if err != nil {
		s.event("SIGKILL %s failed: %v", name, err)
		return
	}
	s.event("SIGKILL %s (%s)", name, rep.name)
	time.Sleep(5 * time.Second)
	s.mu.Lock()
	s.gen[slot]++
	g := s.gen[slot]
	s.mu.Unlock()
	next, err := s.startReplica(ctx, slot+g*s.cfg.Replicas, s.creds, s.emuAddr, s.database, s.args)
	if err != nil {
		s.finding("restart of slot %d after SIGKILL of %s failed: %v", slot+1, name, err)
		return
	}
	s.mu.Lock()
	s.env.replicas[slot] = next
	s.born[slot] = time.Now()
	s.mu.Unlock()
	// Calls on the dead process's connection have failed by now.
	rep.conn.Close()
	s.event("restarted slot %d as %s (%s)", slot+1, next.p.name, next.name)
}

func (s *soak) restartDatabase(ctx context.Context) {
	s.event("PostgreSQL stopped (fast shutdown)")
	if err := s.pg.stop(ctx); err != nil {
		s.event("PostgreSQL stop failed: %v", err)
	}
	time.Sleep(5 * time.Second)
	if err := s.pg.start(ctx); err != nil {
		s.finding("PostgreSQL did not start again: %v", err)
		return
	}
	s.event("PostgreSQL started again")
}

func (s *soak) delayDatabase(ctx context.Context) {
	s.proxy.setDelay(s.cfg.DBDelay)
	s.event("PostgreSQL delayed %s each way for %s", s.cfg.DBDelay, s.cfg.DBDelayFor)
	select {
	case <-ctx.Done():
	case <-time.After(s.cfg.DBDelayFor):
	}
	s.proxy.setDelay(0)
	s.event("PostgreSQL delay removed")
}
