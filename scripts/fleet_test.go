// Package scripts_test runs the shell scripts of scripts/ as a user does.
package scripts_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePorts returns the first of n consecutive free loopback ports below
// 32768 (PostgreSQL's port must stay outside the ephemeral range).
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base, free := 20000+rand.IntN(12000), true
		for i := range n {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

// TestFleetTakesItsPortsAndNamesItsProcesses runs `make fleet`'s script on
// ports the user chose, and kills one replica as its banner says: by the
// process id it printed, never by a pattern that could match other
// people's processes.
func TestFleetTakesItsPortsAndNamesItsProcesses(t *testing.T) {
	if out, err := exec.Command("./pg-cluster.sh", "bindir").CombinedOutput(); err != nil {
		if os.Getenv("CWPEXPORT_REQUIRE_PG") != "" {
			t.Fatalf("PostgreSQL is required: %s", out)
		}
		t.Skipf("SKIPPED: PostgreSQL: %s", out)
	}
	pgDir, err := os.MkdirTemp("", "fleet-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pgDir) })
	rest, grpc, metrics, emu, pg := freePorts(t, 2), freePorts(t, 2), freePorts(t, 2), freePorts(t, 1), freePorts(t, 1)
	cmd := exec.Command("./fleet.sh")
	cmd.Env = append(os.Environ(), "FLEET_DIR="+t.TempDir(), "FLEET_PG_DIR="+pgDir, "FLEET_REPLICAS=2",
		fmt.Sprintf("FLEET_PG_PORT=%d", pg), fmt.Sprintf("FLEET_REST_PORT=%d", rest),
		fmt.Sprintf("FLEET_GRPC_PORT=%d", grpc), fmt.Sprintf("FLEET_METRICS_PORT=%d", metrics), fmt.Sprintf("FLEET_EMULATOR_PORT=%d", emu))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // the script stops what it started
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its own process group
		}
	})
	var banner strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "Ctrl-C") {
		banner.WriteString(lines.Text() + "\n")
	}
	go func() {
		for lines.Scan() {
		}
		exited <- cmd.Wait()
	}()
	text := banner.String()
	if strings.Contains(text, "pkill") {
		t.Errorf("the banner suggests pkill:\n%s", text)
	}
	m := regexp.MustCompile(`(?m)^fleet: replica 1 REST http://127\.0\.0\.1:(\d+), gRPC 127\.0\.0\.1:(\d+), metrics http://127\.0\.0\.1:(\d+)/metrics, pid (\d+)`).FindStringSubmatch(text)
	if m == nil || m[1] != fmt.Sprint(rest) || m[2] != fmt.Sprint(grpc) || m[3] != fmt.Sprint(metrics) {
		t.Fatalf("replica 1 is not on REST port %d, gRPC port %d and metrics port %d with its pid:\n%s", rest, grpc, metrics, text)
	}
	pid := m[4]
	if !strings.Contains(text, "kill -KILL "+pid+" ") {
		t.Errorf("the banner does not kill replica 1 by its pid %s:\n%s", pid, text)
	}
	healthy := func(port int) bool {
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return true
				}
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, port := range []int{rest, rest + 1} {
		if !healthy(port) {
			t.Fatalf("no replica became healthy on port %d", port)
		}
	}
	cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	if !strings.Contains(string(cmdline), fmt.Sprintf("127.0.0.1:%d", rest)) {
		t.Fatalf("pid %s is not replica 1: %q", pid, cmdline)
	}
}
