// Package suite runs the service's scale benchmarks against the CWP
// emulator, each beside a baseline measured in the same run: fan-out of one
// task to many watch streams, the creation budget, notify latency, read
// throughput, and the budget's adaptation to a quota shared with others. The emulator, the service and the baseline run as separate
// processes on loopback so that the service's memory is its own.
package suite

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Config sizes a run.
type Config struct {
	// Quick makes a smaller, shorter run.
	Quick bool
	// Streams is the number of watch streams of the fan-out benchmark.
	Streams int
	// Conns is the number of client connections the streams share.
	Conns int
	// Creations is the size of the creation burst.
	Creations int
	// Reads is the number of GetExportTask calls of each throughput run.
	Reads int
	// Rounds is the number of throughput runs of each server, alternated.
	Rounds int
	// SharedCreations is the size of the creation burst of the
	// shared-quota benchmark.
	SharedCreations int
	// Only runs the named benchmarks (fanout, budget, latency, reads,
	// shared); empty runs all.
	Only []string
	// Out receives the report.
	Out io.Writer
}

// Runner runs the benchmarks.
type Runner struct {
	cfg Config
	dir string // binaries and process logs
	out io.Writer
}

// Run builds the binaries and runs the benchmarks, writing the figures to
// cfg.Out as it goes.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "cwpbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r := &Runner{cfg: cfg, dir: dir, out: cfg.Out}
	r.printf("# build\n")
	build := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/cwp-emulator", "./cmd/cwpexportd", "./bench/cmd/baselined")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	benches := []struct {
		name string
		run  func(context.Context) error
	}{
		{"fanout", r.fanout},
		{"budget", r.budget},
		{"latency", r.latency},
		{"reads", r.reads},
		{"shared", r.shared},
	}
	for _, b := range benches {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, b.name) {
			continue
		}
		start := time.Now()
		if err := b.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		r.printf("(%s took %s)\n\n", b.name, time.Since(start).Round(time.Second))
	}
	return nil
}

func (r *Runner) bin(name string) string { return filepath.Join(r.dir, name) }

func (r *Runner) printf(format string, args ...any) { fmt.Fprintf(r.out, format, args...) }

// raiseFileLimit lifts the soft limit on open files to the hard one: the
// fan-out opens thousands of streams (and the children inherit the limit).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
