// Command benchscale measures the cost of the hot statements against the
// history a database holds (make bench-scale): the fleet's claim, next-due
// read, count of scheduled tasks, interest renewal and cleanups with 500
// and with 100,000 pending + 100,000 ended tasks, and claims per second;
// the registry's lookups, list pages, following pass and retention batch
// with 1,000 and with 1,000,000 records. Each is measured on a throwaway
// PostgreSQL cluster (server/pgtest) by the packages' own scale tests,
// which know the statements; it prints their Markdown tables and plans.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchscale:", err)
		os.Exit(1)
	}
}

func run() error {
	for _, pkg := range []struct{ dir, test string }{
		{"./server/fleet/", "TestScaleHotStatements"},
		{"./server/taskstore/", "TestScaleRegistry"},
	} {
		cmd := exec.Command("go", "test", "-count=1", "-timeout=30m", "-v", "-run", "^"+pkg.test+"$", pkg.dir)
		cmd.Env = append(os.Environ(), "CWPEXPORT_BENCH_SCALE=1", "CWPEXPORT_REQUIRE_PG=1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			os.Stderr.Write(out.Bytes())
			return fmt.Errorf("%s: %w", pkg.test, err)
		}
		fmt.Printf("### %s\n\n", pkg.dir)
		var plans []string
		sc := bufio.NewScanner(&out)
		inPlan := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.Contains(line, "SCALE-PLAN "):
				inPlan = true
				plans = append(plans, "", "`"+strings.TrimSpace(line[strings.Index(line, "SCALE-PLAN ")+len("SCALE-PLAN "):])+"`:", "")
			case strings.Contains(line, "SCALE |"):
				inPlan = false
				fmt.Println(line[strings.Index(line, "SCALE |")+len("SCALE "):])
			case inPlan && strings.HasPrefix(line, "        "):
				plans = append(plans, "    "+strings.TrimSpace(line))
			default:
				inPlan = false
			}
		}
		fmt.Println(strings.Join(plans, "\n"))
		fmt.Println()
	}
	return nil
}
