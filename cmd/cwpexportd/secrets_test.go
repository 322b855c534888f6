package main

import (
	"bufio"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadableTokensFileRefused: a tokens file its group or others can read
// stops the start with an error naming the file and the flag; with the
// flag the daemon starts and warns.
func TestReadableTokensFileRefused(t *testing.T) {
	dir := t.TempDir()
	tokens := dir + "/tokens"
	readableFile(t, tokens, "alice alice-token-0123456789\n")
	args := "-data-dir " + dir + "/data -tokens-file " + tokens
	cmd, stderr := runMain(t, dir, args)
	out := make(chan string, 1)
	go func() {
		b := new(strings.Builder)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		out <- b.String()
	}()
	err := cmd.Wait()
	logged := <-out
	if err == nil || !strings.Contains(logged, tokens) || !strings.Contains(logged, "-insecure-allow-readable-secrets") {
		t.Fatalf("exit %v, stderr:\n%s\nwant a refusal naming the file and the flag", err, logged)
	}

	cmd, stderr = runMain(t, dir, args+" -insecure-allow-readable-secrets")
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	warned := false
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the daemon exited with the flag given")
			}
			warned = warned || strings.Contains(line, "readable by others")
			if strings.Contains(line, `"msg":"serving"`) {
				if !warned {
					t.Error("started without a warning about the readable file")
				}
				return
			}
		case <-deadline:
			t.Fatal("the daemon did not start within 30s")
		}
	}
}

// TestReadablePGPassFileRefused: a PGPASSFILE others can read stops the
// start before the database is dialled.
func TestReadablePGPassFileRefused(t *testing.T) {
	dir := t.TempDir()
	pgpass := dir + "/pgpass"
	readableFile(t, pgpass, "127.0.0.1:1:registry:cwp:pw-5f3e1\n")
	cmd, stderr := runMain(t, dir, "-data-dir "+dir+"/data -database postgres://cwp@127.0.0.1:1/registry", "PGPASSFILE="+pgpass)
	out, _ := io.ReadAll(stderr)
	if err := cmd.Wait(); err == nil || !strings.Contains(string(out), pgpass) || strings.Contains(string(out), "pw-5f3e1") {
		t.Fatalf("exit %v, stderr:\n%s\nwant a refusal naming the file, not its password", err, out)
	}
}

// readableFile writes text to path, readable by everyone (0644 whatever
// the umask).
func readableFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}
