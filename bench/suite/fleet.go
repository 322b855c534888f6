package suite

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// FleetConfig sizes a run of the fleet benchmarks: replicas of the service
// sharing one PostgreSQL (Debian's server, a throwaway cluster) and one
// emulator that enforces the cloud's 20 requests per second per action.
type FleetConfig struct {
	// Replicas is the size of the fleet; default 3.
	Replicas int
	// Creations is the burst of fleet1; default 200.
	Creations int
	// RequestIDs is the number of request ids of fleet2, each sent to two
	// replicas at once; default 200.
	RequestIDs int
	// Streams is the number of watchers of fleet3; default 10,000.
	Streams int
	// Conns is the number of client connections fleet3's streams share,
	// spread over the replicas; default 99.
	Conns int
	// KillTasks is the number of pending, watched tasks of fleet4; default 100.
	KillTasks int
	// InFlight is the number of creations with request ids sent to the
	// replica fleet4 kills just before it dies; default 20.
	InFlight int
	// CLIWatchers is the number of fleet4's tasks also watched by the CLI
	// (cwpexport watch with every replica in --addr); default 10.
	CLIWatchers int
	// DBTasks is the number of pending, watched tasks of fleet5; default 30.
	DBTasks int
	// DBDown is how long fleet5 keeps PostgreSQL stopped; default 5s.
	DBDown time.Duration
	// Runs is the number of runs of each benchmark; the summary gives
	// their medians. Default 1.
	Runs int
	// Baselines also measures the single process (SQLite, default flags)
	// in the same run, for fleet1-fleet3.
	Baselines bool
	// Only runs the named benchmarks (fleet1 ... fleet5); empty runs all.
	Only []string
	// KeepLogs keeps the processes' logs (the last run of each name) and
	// says where.
	KeepLogs bool
	// Out receives the report.
	Out io.Writer
}

func (c *FleetConfig) defaults() {
	setInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setInt(&c.Replicas, 3)
	setInt(&c.Creations, 200)
	setInt(&c.RequestIDs, 200)
	setInt(&c.Streams, 10000)
	setInt(&c.Conns, 99)
	setInt(&c.KillTasks, 100)
	setInt(&c.InFlight, 20)
	setInt(&c.CLIWatchers, 10)
	setInt(&c.DBTasks, 30)
	setInt(&c.Runs, 1)
	if c.DBDown <= 0 {
		c.DBDown = 5 * time.Second
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
}

// fleetRate is the rate both budgets of the fleet's replicas are given
// (-create-rate, -read-rate): the cloud's quota. The fleet's budget spaces
// its slots (1s + L)/R apart (L = 50 ms), so it starts at most
// fleetBestRate calls per second.
const (
	fleetRate     = 20
	fleetLateness = 50 * time.Millisecond
)

var fleetBestRate = fleetRate / (1 + fleetLateness.Seconds())

// fleetRunner runs the fleet benchmarks.
type fleetRunner struct {
	*Runner
	cfg FleetConfig
	pg  *pgCluster
	dbs int // databases created so far, to name the next
	// figures are each run's headline figures, for the summary.
	figures []figure
}

// RunFleet builds the binaries, starts a PostgreSQL cluster and runs the
// fleet benchmarks, writing their tables to cfg.Out as it goes and a
// summary at the end.
func RunFleet(ctx context.Context, cfg FleetConfig) error {
	cfg.defaults()
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "cwpfleetbench")
	if err != nil {
		return err
	}
	if cfg.KeepLogs {
		fmt.Fprintf(os.Stderr, "benchfleet: the processes' logs are in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	r := &fleetRunner{Runner: &Runner{dir: dir, out: cfg.Out}, cfg: cfg}
	r.printf("# build\n")
	build := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/cwp-emulator", "./cmd/cwpexportd", "./cmd/cwpexport")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if r.pg, err = startPGCluster(ctx); err != nil {
		return err
	}
	defer r.pg.destroy()
	r.printf("# PostgreSQL %s (scripts/pg-cluster.sh, fsync off), %d replicas, load average at start: %s\n\n", r.pg.version, cfg.Replicas, loadAverage())
	benches := []struct {
		name string
		run  func(context.Context, int) error
	}{
		{"fleet1", r.fleetBudget},
		{"fleet2", r.fleetRequestIDs},
		{"fleet3", r.fleetFanout},
		{"fleet4", r.fleetKill},
		{"fleet5", r.fleetDatabaseStop},
		{"fleet6", r.fleetLatency},
	}
	for _, b := range benches {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, b.name) {
			continue
		}
		for run := 1; run <= cfg.Runs; run++ {
			start := time.Now()
			if err := b.run(ctx, run); err != nil {
				return fmt.Errorf("%s (run %d): %w", b.name, run, err)
			}
			r.printf("(%s run %d took %s; load average %s)\n\n", b.name, run, time.Since(start).Round(time.Second), loadAverage())
		}
	}
	r.summary()
	return nil
}

// figure is one headline figure of one run.
type figure struct {
	bench, name string
	value       float64
	format      string // of value, e.g. "%.2f/s"
	target      string
	met         int // 1 met, 0 not met, -1 no target
}

// record keeps a headline figure for the summary. met is nil for a figure
// without a target.
func (r *fleetRunner) record(bench, name string, value float64, format, target string, met *bool) {
	f := figure{bench: bench, name: name, value: value, format: format, target: target, met: -1}
	if met != nil {
		f.met = 0
		if *met {
			f.met = 1
		}
	}
	r.figures = append(r.figures, f)
}

func yes(b bool) *bool { return &b }

// summary prints each headline figure: its runs, their median, the target
// and in how many runs it was met.
func (r *fleetRunner) summary() {
	if len(r.figures) == 0 {
		return
	}
	r.printf("## Fleet summary (%d run(s) of each benchmark)\n\n| # | figure | runs | median | target | met |\n|---|---|---|---|---|---|\n", r.cfg.Runs)
	type key struct{ bench, name string }
	var order []key
	byKey := map[key][]figure{}
	for _, f := range r.figures {
		k := key{f.bench, f.name}
		if _, seen := byKey[k]; !seen {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], f)
	}
	for _, k := range order {
		fs := byKey[k]
		var vals []float64
		var runs []string
		met, targeted := 0, 0
		for _, f := range fs {
			vals = append(vals, f.value)
			runs = append(runs, fmt.Sprintf(f.format, f.value))
			if f.met >= 0 {
				targeted++
				met += f.met
			}
		}
		metText := ""
		if targeted > 0 {
			metText = fmt.Sprintf("%d of %d", met, targeted)
		}
		r.printf("| %s | %s | %s | **%s** | %s | %s |\n", k.bench, k.name, strings.Join(runs, ", "), fmt.Sprintf(fs[0].format, median(vals)), fs[0].target, metText)
	}
	r.printf("\n")
}

// loadAverage is the machine's 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// pgCluster is a throwaway PostgreSQL cluster run by scripts/pg-cluster.sh.
type pgCluster struct {
	dir     string
	port    int
	version string
}

// startPGCluster creates and starts a cluster in a new directory under the
// system's temporary directory (which the postgres user can traverse when
// the benchmark runs as root), on a free port below 32768.
func startPGCluster(ctx context.Context) (*pgCluster, error) {
	var lastErr error
	for range 5 {
		dir, err := os.MkdirTemp("", "cwpfleetbench-pg-")
		if err != nil {
			return nil, err
		}
		c := &pgCluster{dir: dir, port: 20000 + rand.IntN(12000)}
		if !portFree(c.port) {
			os.RemoveAll(dir)
			continue
		}
		if lastErr = c.script(ctx, "start", strconv.Itoa(c.port)); lastErr != nil {
			c.destroy()
			continue
		}
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err != nil {
			c.destroy()
			return nil, err
		}
		err = conn.QueryRow(ctx, "SHOW server_version").Scan(&c.version)
		conn.Close(ctx)
		if err != nil {
			c.destroy()
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("start PostgreSQL: %w", lastErr)
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// script runs scripts/pg-cluster.sh CMD DIR ARGS...
func (c *pgCluster) script(ctx context.Context, cmd string, args ...string) error {
	out, err := exec.CommandContext(ctx, filepath.Join("scripts", "pg-cluster.sh"), append([]string{cmd, c.dir}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg-cluster.sh %s: %w: %s", cmd, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://test@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// stop shuts the cluster down (fast: sessions are ended); start starts it
// again on the same port and data.
func (c *pgCluster) stop(ctx context.Context) error  { return c.script(ctx, "stop") }
func (c *pgCluster) start(ctx context.Context) error { return c.script(ctx, "start") }

func (c *pgCluster) destroy() {
	_ = c.script(context.Background(), "stop")
	os.RemoveAll(c.dir)
}

// createDatabase creates an empty database and returns its name.
func (r *fleetRunner) createDatabase(ctx context.Context, prefix string) (string, error) {
	r.dbs++
	name := fmt.Sprintf("%s_%d", prefix, r.dbs)
	conn, err := pgx.Connect(ctx, r.pg.url("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}
