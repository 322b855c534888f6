package app

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenEmulatorReusesItsPort: the embedded emulator listens where it
// did last time, moves when that port is taken, and never off loopback.
func TestListenEmulatorReusesItsPort(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	recorded := func() string {
		b, err := os.ReadFile(filepath.Join(dir, emulatorAddrFile))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	first, err := listenEmulator(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addr().String()
	if recorded() != addr {
		t.Fatalf("recorded %q, listening on %s", recorded(), addr)
	}
	first.Close()

	again, err := listenEmulator(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Addr().String() != addr {
		t.Errorf("second run listens on %s, want %s", again.Addr(), addr)
	}
	// The port is taken (by the second run): a third moves and records it.
	moved, err := listenEmulator(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	moved.Close()
	if moved.Addr().String() == addr || recorded() != moved.Addr().String() {
		t.Errorf("with %s taken: listened on %s, recorded %q", addr, moved.Addr(), recorded())
	}

	_, port, _ := net.SplitHostPort(moved.Addr().String())
	if err := os.WriteFile(filepath.Join(dir, emulatorAddrFile), []byte("0.0.0.0:"+port), 0o600); err != nil {
		t.Fatal(err)
	}
	lo, err := listenEmulator(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	lo.Close()
	if host, _, _ := net.SplitHostPort(lo.Addr().String()); host != "127.0.0.1" {
		t.Errorf("a recorded non-loopback address made it listen on %s", lo.Addr())
	}
}
