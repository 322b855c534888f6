package main

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// TestBannerShowsTheConsole: the first screen of a started service names
// the console's URL, and the page is there.
func TestBannerShowsTheConsole(t *testing.T) {
	dir := t.TempDir()
	cmd, stderr := runMain(t, dir, "-data-dir "+dir+"/data")
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	var console string
	lines := bufio.NewScanner(stderr)
	for lines.Scan() && !strings.Contains(lines.Text(), "grpcurl") {
		if u, ok := strings.CutPrefix(lines.Text(), "Console: "); ok {
			console = u
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if !strings.HasPrefix(console, "http://127.0.0.1:") {
		t.Fatalf("the banner names no console (got %q)", console)
	}
	resp, err := http.Get(console)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(page), `<form id="export-form"`) {
		t.Errorf("%s answered %d without the console page", console, resp.StatusCode)
	}
}
