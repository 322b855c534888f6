package e2e_test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// h2conn is a raw HTTP/2 connection to the gRPC port, to see the frames
// the server sends: its settings, its GOAWAYs.
func h2conn(t *testing.T, addr string) (*http2.Framer, *http2.SettingsFrame) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A guard against a hang, not a measure.
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read the server's settings: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return fr, sf
		}
	}
}

// goAway reads frames until the server's GOAWAY.
func goAway(t *testing.T, fr *http2.Framer) *http2.GoAwayFrame {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			return g
		}
	}
}

// TestGRPCTransportBounds: the gRPC port announces its bound on concurrent
// streams, sends GOAWAY ENHANCE_YOUR_CALM to a client flooding it with
// pings, and asks connections to go away when they reach their age; the
// service keeps answering new connections.
func TestGRPCTransportBounds(t *testing.T) {
	env := testserver.Start(t, testserver.Config{App: fastApp()})
	_, settings := h2conn(t, env.GRPCAddr)
	if v, ok := settings.Value(http2.SettingMaxConcurrentStreams); !ok || v != app.DefaultGRPCMaxConcurrentStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want %d", v, ok, app.DefaultGRPCMaxConcurrentStreams)
	}
	fr, _ := h2conn(t, env.GRPCAddr)
	for i := range 10 {
		if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // the server may close the connection at once
		}
	}
	if g := goAway(t, fr); g.ErrCode != http2.ErrCodeEnhanceYourCalm || string(g.DebugData()) != "too_many_pings" {
		t.Errorf("ping flood answered with GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", g.ErrCode, g.DebugData())
	}
	if _, err := env.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{}); err != nil {
		t.Errorf("another client after the flood: %v", err)
	}

	o := fastApp()
	o.GRPCMaxConnectionAge, o.GRPCMaxConnectionAgeGrace, o.GRPCMaxConcurrentStreams = 300*time.Millisecond, 300*time.Millisecond, 7
	aged := testserver.Start(t, testserver.Config{App: o})
	fr, settings = h2conn(t, aged.GRPCAddr)
	if v, _ := settings.Value(http2.SettingMaxConcurrentStreams); v != 7 {
		t.Errorf("configured SETTINGS_MAX_CONCURRENT_STREAMS %d, want 7", v)
	}
	if g := goAway(t, fr); g.ErrCode != http2.ErrCodeNo {
		t.Errorf("an aged connection got GOAWAY %v, want NO_ERROR", g.ErrCode)
	}
	if _, err := aged.Client.ListExportTasks(context.Background(), &cwpexportv1.ListExportTasksRequest{}); err != nil {
		t.Errorf("a call after connections aged: %v", err)
	}
}
