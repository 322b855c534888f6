package suite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// benchTag is the tag key under which a creation carries its request id
// to the cloud, so that the emulator's journal tells which request id
// made each cloud task.
const benchTag = "bench-request-id"

// fleetEnv is one benchmark's processes: an emulator with a state
// directory, and replicas of the service on PostgreSQL (or one process on
// SQLite, the baseline).
type fleetEnv struct {
	emu      *cluster // the emulator's process, stats and admin endpoints
	stateDir string
	counter  *pgCounter // nil unless round trips are counted
	delay    *delayProxy
	db       string // the PostgreSQL database; "" on SQLite
	replicas []*replica
}

// replica is one cwpexportd process.
type replica struct {
	i        int
	p        *proc
	name     string // its name in the fleet's leases
	grpcAddr string
	restURL  string
	conn     *grpc.ClientConn
	client   cwpexportv1.LicenseExportServiceClient
	killed   bool
}

// fleetOpts say what to start.
type fleetOpts struct {
	replicas int
	// postgres puts the replicas on a new database of the cluster;
	// otherwise each runs on SQLite in its data directory.
	postgres bool
	// count puts the round-trip counter between the replicas and
	// PostgreSQL.
	count bool
	// args are more cwpexportd flags.
	args []string
	// lastDelay, when set, puts the last replica's database behind a proxy
	// that delays everything it carries by lastDelay, each way.
	lastDelay time.Duration
	// countFailures counts the creations that fail instead of failing the
	// run (fleet6).
	countFailures bool
}

// startFleet starts the emulator and the replicas, and dials each.
func (r *fleetRunner) startFleet(ctx context.Context, o fleetOpts) (_ *fleetEnv, err error) {
	e := &fleetEnv{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	creds := []string{"TENCENTCLOUD_SECRET_ID=AKIDbench" + rand.Text(), "TENCENTCLOUD_SECRET_KEY=" + rand.Text()}
	emuAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if e.stateDir, err = os.MkdirTemp(r.dir, "emulator-"); err != nil {
		return nil, err
	}
	emu, err := startProc(r.dir, "emulator", creds, r.bin("cwp-emulator"), "-listen", emuAddr, "-pending", "-1s", "-rate-limit", "20", "-state-dir", e.stateDir)
	if err != nil {
		return nil, err
	}
	e.emu = &cluster{emu: emu, emuAddr: emuAddr}
	if err := waitHTTP(ctx, "http://"+emuAddr+"/_emulator/stats"); err != nil {
		return nil, err
	}
	database := "sqlite"
	if o.postgres {
		if e.db, err = r.createDatabase(ctx, "fleet"); err != nil {
			return nil, err
		}
		database = r.pg.url(e.db)
		if o.count {
			if e.counter, err = startPGCounter(fmt.Sprintf("127.0.0.1:%d", r.pg.port)); err != nil {
				return nil, err
			}
			database = strings.Replace(database, fmt.Sprintf(":%d/", r.pg.port), ":"+portOf(e.counter.addr())+"/", 1)
		}
	}
	for i := range o.replicas {
		db := database
		if o.lastDelay > 0 && i == o.replicas-1 && o.postgres {
			if e.delay, err = startDelayProxy(fmt.Sprintf("127.0.0.1:%d", r.pg.port)); err != nil {
				return nil, err
			}
			e.delay.setDelay(o.lastDelay)
			db = strings.Replace(r.pg.url(e.db), fmt.Sprintf(":%d/", r.pg.port), ":"+portOf(e.delay.addr())+"/", 1)
		}
		rep, err := r.startReplica(ctx, i, creds, emuAddr, db, o.args)
		if err != nil {
			return nil, err
		}
		e.replicas = append(e.replicas, rep)
	}
	return e, nil
}

func portOf(addr string) string {
	_, port, _ := strings.Cut(addr, ":")
	return port
}

func (r *fleetRunner) startReplica(ctx context.Context, i int, creds []string, emuAddr, database string, extra []string) (*replica, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	restAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp(r.dir, "data-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"-grpc-addr", grpcAddr, "-rest-addr", restAddr, "-metrics-addr", "127.0.0.1:0", "-cloud-endpoint", emuAddr, "-cloud-scheme", "HTTP", "-insecure-allow-private-cloud",
		"-log-format", "json", "-data-dir", dataDir, "-database", database}, extra...)
	p, err := startProc(r.dir, fmt.Sprintf("replica%d", i+1), creds, r.bin("cwpexportd"), args...)
	if err != nil {
		return nil, err
	}
	rep := &replica{i: i, p: p, grpcAddr: grpcAddr, restURL: "http://" + restAddr}
	if err := waitHTTP(ctx, rep.restURL+"/healthz"); err != nil {
		rep.stop()
		return nil, err
	}
	rep.name = replicaName(p.log.Name())
	if rep.conn, err = grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		rep.stop()
		return nil, err
	}
	rep.client = cwpexportv1.NewLicenseExportServiceClient(rep.conn)
	return rep, nil
}

// replicaName finds the replica's name in the fleet in its log (the line
// that says the fleet's engines were chosen); "" on SQLite.
func replicaName(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct{ Replica string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Replica != "" {
			return line.Replica
		}
	}
	return ""
}

func (rep *replica) stop() {
	if rep.conn != nil {
		rep.conn.Close()
	}
	if !rep.killed {
		rep.p.stop()
	}
}

// kill ends the replica with SIGKILL: no drain, no lease given back.
func (rep *replica) kill() error {
	if err := rep.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	_ = rep.p.cmd.Wait()
	rep.p.log.Close()
	rep.killed = true
	return nil
}

func (e *fleetEnv) close() {
	var wg sync.WaitGroup
	for _, rep := range e.replicas {
		wg.Add(1)
		go func() { defer wg.Done(); rep.stop() }()
	}
	wg.Wait()
	if e.counter != nil {
		e.counter.close()
	}
	if e.delay != nil {
		e.delay.close()
	}
	if e.emu != nil {
		e.emu.close()
	}
}

// injectFault makes the emulator misbehave (POST /_emulator/faults).
func (c *cluster) injectFault(f emulator.Fault) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	resp, err := http.Post("http://"+c.emuAddr+"/_emulator/faults", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("inject fault %+v: HTTP %d", f, resp.StatusCode)
	}
	return nil
}

// live are the replicas not killed.
func (e *fleetEnv) live() []*replica {
	var out []*replica
	for _, rep := range e.replicas {
		if !rep.killed {
			out = append(out, rep)
		}
	}
	return out
}

// rss is the replicas' resident memory together.
func (e *fleetEnv) rss() int64 {
	var sum int64
	for _, rep := range e.live() {
		n, _ := rep.p.rss()
		sum += n
	}
	return sum
}

// cloudTask is a task as the emulator's journal recorded it.
type cloudTask struct {
	id        int64
	created   time.Time
	requestID string // the benchTag the creation carried
}

// cloudTasks reads the emulator's journal: every task the cloud created,
// in order, with its creation time and the request id it was tagged with.
func (e *fleetEnv) cloudTasks() ([]cloudTask, error) {
	f, err := os.Open(filepath.Join(e.stateDir, "journal.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cloudTask
	dec := json.NewDecoder(f)
	for {
		var rec struct {
			Kind    string
			ID      int64
			Created time.Time
			Query   *struct{ Tags map[string][]string }
		}
		if err := dec.Decode(&rec); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("the emulator's journal: %w", err)
		}
		if rec.Kind != "task" {
			continue
		}
		t := cloudTask{id: rec.ID, created: rec.Created}
		if rec.Query != nil && len(rec.Query.Tags[benchTag]) > 0 {
			t.requestID = rec.Query.Tags[benchTag][0]
		}
		out = append(out, t)
	}
}

// exportRequest is a creation tagged with its request id (rid "" sends
// none).
func exportRequest(rid string) *cwpexportv1.ExportLicenseDetailRequest {
	req := &cwpexportv1.ExportLicenseDetailRequest{RequestId: rid}
	if rid != "" {
		req.Tags = []*cwpexportv1.Tag{{TagKey: benchTag, TagValue: rid}}
	}
	return req
}

// follow is one watcher of a task that resumes as a client should: when
// its stream ends Unavailable, or ends before FINISHED or ERROR, it opens
// another on the next live replica, by task id.
type follow struct {
	id      string
	resumes int
	last    *cwpexportv1.WatchExportTaskResponse
	err     error // the last stream's error when it gave up
	ended   time.Time
}

// followTask watches id starting at replica start until the task ends, ctx
// ends, or a stream fails with something other than Unavailable. onMsg
// (may be nil) sees every message.
func (e *fleetEnv) followTask(ctx context.Context, id string, start int, onMsg func(*cwpexportv1.WatchExportTaskResponse)) *follow {
	f := &follow{id: id}
	i := start
	for {
		reps := e.replicas
		rep := reps[i%len(reps)]
		if rep.killed {
			i++
			continue
		}
		err := func() error {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := rep.client.WatchExportTask(sctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id})
			if err != nil {
				return err
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					return err
				}
				f.last = m
				if onMsg != nil {
					onMsg(m)
				}
			}
		}()
		f.ended = time.Now()
		if errors.Is(err, io.EOF) && ended(f.last) {
			f.err = nil
			return f
		}
		if ctx.Err() != nil || (!errors.Is(err, io.EOF) && status.Code(err) != codes.Unavailable) {
			f.err = err
			return f
		}
		f.resumes++
		i++
		select {
		case <-ctx.Done():
			f.err = ctx.Err()
			return f
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ended reports whether the message says the task is FINISHED or ERROR.
func ended(m *cwpexportv1.WatchExportTaskResponse) bool {
	s := m.GetTask().GetState()
	return s == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED || s == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR
}

func finished(m *cwpexportv1.WatchExportTaskResponse) bool {
	return m.GetTask().GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED
}

// allPollTimes are the emulator's poll times of every task, sorted.
func allPollTimes(byTask map[int64][]time.Time) []time.Time {
	var all []time.Time
	for _, ts := range byTask {
		all = append(all, ts...)
	}
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	return all
}

// within returns the times in [from, to).
func within(ts []time.Time, from, to time.Time) []time.Time {
	var out []time.Time
	for _, t := range ts {
		if !t.Before(from) && t.Before(to) {
			out = append(out, t)
		}
	}
	return out
}

// countIn counts the times in [from, to).
func countIn(ts []time.Time, from, to time.Time) int { return len(within(ts, from, to)) }

// peakWindow is the largest number of times within any window (t-1s, t].
func peakWindow(ts []time.Time) int {
	s := slices.Clone(ts)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	peak, j := 0, 0
	for i := range s {
		for s[i].Sub(s[j]) >= time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	return peak
}

// finishAll makes the cloud finish the tasks, then waits until the
// watchers (done when each has ended) are done.
func (e *fleetEnv) finishAll(ctx context.Context, ids []string, watchers *sync.WaitGroup) error {
	for _, id := range ids {
		if err := e.emu.finish(id); err != nil {
			return err
		}
	}
	done := make(chan struct{})
	go func() { watchers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the watchers to see FINISHED: %w", ctx.Err())
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
