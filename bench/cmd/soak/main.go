// Command soak runs the fleet's soak (package bench/suite, RunSoak) from
// the repository root: replicas on one PostgreSQL, a faulty emulator,
// creations and watchers for a long time while replicas are SIGKILLed and
// the database restarted and delayed, invariants checked throughout.
// `make soak` (SOAK_DURATION=5m for a short run); not part of CI.
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
	var cfg suite.SoakConfig
	flag.DurationVar(&cfg.Duration, "duration", 0, "how long creations are sent (default 30m)")
	flag.IntVar(&cfg.Replicas, "replicas", 3, "replicas of the service")
	flag.DurationVar(&cfg.KillEvery, "kill-every", 0, "time between two SIGKILLs of a replica, each restarted 5s later (default duration/6, at least 30s)")
	flag.DurationVar(&cfg.CreateEvery, "create-every", 0, "time between two creations (default 250ms)")
	flag.DurationVar(&cfg.DBDelay, "db-delay", 0, "latency added each way to the database once (default 150ms)")
	flag.DurationVar(&cfg.DBDelayFor, "db-delay-for", 0, "how long the database stays delayed (default duration/10, at most 1m)")
	flag.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the processes' logs (in a temporary directory it names)")
	appendTo := flag.String("append", "", "also append the report to this file (e.g. docs/BENCHMARKS.md)")
	flag.Parse()
	cfg.Command = "go run ./bench/cmd/soak " + strings.Join(os.Args[1:], " ")
	if *appendTo != "" {
		f, err := os.OpenFile(*appendTo, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.Exit(1)
		}
		defer f.Close()
		cfg.Report = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := suite.RunSoak(ctx, cfg); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}
