package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelperMissingPostgres is run by TestMissingPostgres in a child
// process, as a test on a machine without PostgreSQL.
func TestHelperMissingPostgres(t *testing.T) {
	if os.Getenv("PGTEST_HELPER") != "1" {
		t.Skip("run by TestMissingPostgres")
	}
	unavailable(t, fmt.Errorf("%w (no initdb)", errNotInstalled))
	t.Error("the test went on without PostgreSQL")
}

// TestMissingPostgres: without PostgreSQL a test is skipped with a message
// starting "SKIPPED: PostgreSQL" and the binary says so on stderr at its
// end; with CWPEXPORT_REQUIRE_PG=1 the test fails instead.
func TestMissingPostgres(t *testing.T) {
	run := func(require string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMissingPostgres$", "-test.v")
		cmd.Env = append(os.Environ(), "PGTEST_HELPER=1", EnvRequire+"="+require)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "SKIPPED: PostgreSQL is not available") || !strings.Contains(out, "*** pgtest: 1 test(s) SKIPPED") {
		t.Fatalf("without PostgreSQL: %v\n%s", err, out)
	}
	out, err = run("1")
	if err == nil || !strings.Contains(out, "PostgreSQL is required ("+EnvRequire+"=1)") || strings.Contains(out, "SKIPPED") {
		t.Fatalf("without PostgreSQL, required: %v\n%s", err, out)
	}
}
