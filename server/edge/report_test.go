package edge_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/edge"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// counts returns the count of each line, per peer.
func (l *lockedBuffer) counts(t *testing.T) map[string][]float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]float64{}
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m struct {
			Peer  string
			Count float64
		}
		if line != "" {
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			out[m.Peer] = append(out[m.Peer], m.Count)
		}
	}
	return out
}

// TestReporterLogsOneLinePerPeerPerInterval: a peer's first refusal is
// logged at once, the thousand that follow within the interval as one
// line with their count; another peer has lines of its own.
func TestReporterLogsOneLinePerPeerPerInterval(t *testing.T) {
	var buf lockedBuffer
	r := edge.NewReporter(slog.New(slog.NewJSONHandler(&buf, nil)), time.Hour)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range 1001 {
		r.Note(a, "authentication failed", "wrong token")
	}
	r.Note(b, "authentication failed", "wrong token")
	if got := buf.counts(t); len(got[a.String()]) != 1 || len(got[b.String()]) != 1 {
		t.Fatalf("lines before the interval ends: %v, want one per peer", got)
	}
	r.Close() // ends the windows: their counts are logged
	got := buf.counts(t)
	if c := got[a.String()]; len(c) != 2 || c[0] != 1 || c[1] != 1000 {
		t.Errorf("peer a's counts: %v, want [1 1000]", c)
	}
	if c := got[b.String()]; len(c) != 1 {
		t.Errorf("peer b's counts: %v, want [1]", c)
	}
	r.Note(a, "authentication failed", "after close")
	if c := buf.counts(t)[a.String()]; len(c) != 2 {
		t.Errorf("a closed reporter logged: %v", c)
	}
}

// TestReporterWindowsRollOver: refusals that go on are logged once per
// interval, each line with the count since the last.
func TestReporterWindowsRollOver(t *testing.T) {
	var buf lockedBuffer
	r := edge.NewReporter(slog.New(slog.NewJSONHandler(&buf, nil)), 20*time.Millisecond)
	defer r.Close()
	a := netip.MustParseAddr("192.0.2.1")
	r.Note(a, "connection refused", "")
	r.Note(a, "connection refused", "")
	deadline := time.Now().Add(30 * time.Second)
	for len(buf.counts(t)[a.String()]) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c := buf.counts(t)[a.String()]; len(c) != 2 || c[1] != 1 {
		t.Errorf("counts: %v, want [1 1]", c)
	}
}
