// Command benchfleet runs the fleet benchmarks (package bench/suite,
// RunFleet) from the repository root: replicas of the service on one
// PostgreSQL and one emulator, all on loopback. `make bench-fleet`, or
// `go run ./bench/cmd/benchfleet -only fleet1,fleet3`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cwpexport/cwpexport/bench/suite"
)

func main() {
	var cfg suite.FleetConfig
	flag.IntVar(&cfg.Replicas, "replicas", 3, "replicas of the service")
	flag.IntVar(&cfg.Creations, "creations", 200, "fleet1: creations spread round-robin over the replicas")
	flag.IntVar(&cfg.RequestIDs, "request-ids", 200, "fleet2: request ids, each sent to two replicas at once")
	flag.IntVar(&cfg.Streams, "streams", 10000, "fleet3: watchers of one task, spread over the replicas")
	flag.IntVar(&cfg.Conns, "conns", 99, "fleet3: client connections the watchers share, spread over the replicas")
	flag.IntVar(&cfg.KillTasks, "kill-tasks", 100, "fleet4: pending, watched tasks when a replica is killed")
	flag.IntVar(&cfg.InFlight, "in-flight", 20, "fleet4: creations with request ids sent to the replica just before it is killed")
	flag.IntVar(&cfg.CLIWatchers, "cli-watchers", 10, "fleet4: tasks also watched by `cwpexport watch` with every replica in --addr")
	flag.IntVar(&cfg.DBTasks, "db-tasks", 30, "fleet5: pending, watched tasks while PostgreSQL is stopped")
	flag.DurationVar(&cfg.DBDown, "db-down", 0, "fleet5: how long PostgreSQL stays stopped (default 5s)")
	flag.IntVar(&cfg.Runs, "runs", 1, "runs of each benchmark; the summary gives medians")
	flag.BoolVar(&cfg.Baselines, "baselines", true, "also measure the single process (SQLite) in the same run (fleet1-fleet3)")
	flag.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the processes' logs (in a temporary directory it names)")
	only := flag.String("only", os.Getenv("BENCH_FLEET_ONLY"), "comma-separated benchmarks to run: fleet1,...,fleet5 (also env BENCH_FLEET_ONLY)")
	flag.Parse()
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := suite.RunFleet(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}
