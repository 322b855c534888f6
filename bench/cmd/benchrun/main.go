// Command benchrun runs the scale benchmarks (package bench/suite) from the
// repository root: `make bench`, or `go run ./bench/cmd/benchrun -quick`.
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
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") != "", "a smaller, shorter run (also env BENCH_QUICK=1)")
	streams := flag.Int("streams", 0, "watch streams of the fan-out (default 10000, quick 2000)")
	conns := flag.Int("conns", 100, "client connections the fan-out streams share")
	creations := flag.Int("creations", 200, "size of the creation burst")
	reads := flag.Int("reads", 0, "GetExportTask calls per throughput run (default 30000, quick 10000)")
	rounds := flag.Int("rounds", 0, "throughput runs per server, alternated (default 3, quick 1)")
	shared := flag.Int("shared-creations", 0, "size of the creation burst against the shared quota (default 300, quick 150)")
	only := flag.String("only", os.Getenv("BENCH_ONLY"), "comma-separated benchmarks to run: fanout,budget,latency,reads,shared (also env BENCH_ONLY)")
	flag.Parse()
	cfg := suite.Config{Quick: *quick, Streams: *streams, Conns: *conns, Creations: *creations, Reads: *reads, Rounds: *rounds, SharedCreations: *shared}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if cfg.Streams == 0 {
		cfg.Streams = pick(*quick, 2000, 10000)
	}
	if cfg.Reads == 0 {
		cfg.Reads = pick(*quick, 10000, 30000)
	}
	if cfg.SharedCreations == 0 {
		cfg.SharedCreations = pick(*quick, 150, 300)
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = pick(*quick, 1, 3)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := suite.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func pick(quick bool, small, full int) int {
	if quick {
		return small
	}
	return full
}
