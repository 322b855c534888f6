package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cwpexport/cwpexport/clients/cli"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestLiveLineFitsTheTerminal watches a task whose polls fail, which makes
// the longest progress line, as on a terminal without a size of its own:
// every redraw fits in 80 columns, so it never wraps and scrolls.
func TestLiveLineFitsTheTerminal(t *testing.T) {
	env := testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{PendingFor: -1},
		App:      app.Options{MinPollInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond},
	})
	id := newTask(t, env)
	if err := env.Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultInternalError, Action: "ExportTasks"}); err != nil {
		t.Fatal(err)
	}
	r := launchAs(t, true, "watch", id, "--addr", env.GRPCAddr)
	r.waitFor(t, "last poll", 1)
	env.Emulator.ClearFaults()
	n, _ := strconv.ParseInt(id, 10, 64)
	if err := env.Emulator.FinishTask(n); err != nil {
		t.Fatal(err)
	}
	if code := r.exit(t); code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, r.errOut.String())
	}
	for _, line := range regexp.MustCompile("[\r\n]").Split(r.out.String(), -1) {
		line = strings.TrimPrefix(line, "\x1b[K")
		if w := utf8.RuneCountInString(line); w >= 80 {
			t.Errorf("a line of %d columns wraps on an 80-column terminal: %q", w, line)
		}
	}
}

// TestDownloadTakesTheFilesOwnName downloads without naming a file: the
// file is saved under the name the service gives it, in the current
// directory, and a second download does not replace it.
func TestDownloadTakesTheFilesOwnName(t *testing.T) {
	env := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := newTask(t, env)
	if code, _, errOut := run(t, env, "watch", id); code != cli.ExitOK {
		t.Fatalf("watch: exit %d: %s", code, errOut)
	}
	stream, err := env.Client.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: id})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	name := first.GetFileName()
	dir := t.TempDir()
	t.Chdir(dir)
	code, out, errOut := run(t, env, "download", id)
	if code != cli.ExitOK || !strings.Contains(out, " to "+name+" ") {
		t.Fatalf("download %s: exit %d, stdout %q, stderr %s; want it saved to %s", id, code, out, errOut, name)
	}
	saved, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || len(saved) == 0 {
		t.Fatalf("%s: %d bytes, %v", name, len(saved), err)
	}
	code, _, errOut = run(t, env, "download", id)
	if code == cli.ExitOK || !strings.Contains(errOut, name+" already exists") {
		t.Errorf("a second download over %s: exit %d, stderr %q; want a refusal", name, code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d files, want only %s", len(entries), name)
	}
}

// TestInvalidArgumentIsPrintedOnce: each field violation is printed once,
// on its own line, not also in the message above them.
func TestInvalidArgumentIsPrintedOnce(t *testing.T) {
	env := start(t)
	code, _, errOut := run(t, env, "export", "--filter", "Bogus=1", "--month", "2026-13")
	if code != cli.ExitInvalid {
		t.Fatalf("exit %d, want %d: %s", code, cli.ExitInvalid, errOut)
	}
	for _, text := range []string{`unknown filter name "Bogus"`, `got "2026-13"`} {
		if n := strings.Count(errOut, text); n != 1 {
			t.Errorf("%s appears %d times:\n%s", text, n, errOut)
		}
	}
	if !strings.HasPrefix(errOut, "cwpexport: InvalidArgument: invalid request\n") {
		t.Errorf("stderr begins %q", errOut)
	}
}

// newTask starts an export through env's service and returns its task id.
func newTask(t *testing.T, env *testserver.Env) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetTask().GetTaskId()
}
