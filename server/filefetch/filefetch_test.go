package filefetch

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNoPrivateDestinations: without AllowPrivate, the client connects to
// nothing on loopback — a name that resolves there included, as the
// address dialed is checked — and speaks no plain HTTP.
func TestNoPrivateDestinations(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	c := NewClient(Options{})
	for _, url := range []string{
		"https://127.0.0.1:" + port + "/file",
		"https://localhost:" + port + "/file",
		"http://127.0.0.1:" + port + "/file",
		"http://example.com/file",
	} {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: fetched (HTTP %d)", url, resp.StatusCode)
			continue
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want a refusal", url, err)
		}
	}
	// Give a connection that got through the time to be counted.
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("the loopback listener accepted %d connections", n)
	}
}

func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2001:4860:4860::8888": true, "203.0.113.7": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "169.254.0.23": false, "fe80::1": false, "fd00::1": false,
		"100.100.100.200": false, "0.0.0.0": false, "::": false, "224.0.0.1": false, "::ffff:127.0.0.1": false,
		"::ffff:169.254.169.254": false, "0.1.2.3": false,
	} {
		if got := Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestCheckRefusesWhatCannotBeAnExport(t *testing.T) {
	answer := func(ct string, n int64) *http.Response {
		r := &http.Response{Header: http.Header{}, ContentLength: n}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return r
	}
	for _, tc := range []struct {
		ct   string
		n    int64
		want string
	}{
		{"text/csv", 10, ""},
		{"text/csv; charset=utf-8", -1, ""},
		{"", 10, ""},
		{"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 10, ""},
		{"text/html", 10, "media type"},
		{"application/json", 10, "media type"},
		{"text/csv", 101, "more than"},
		{"not a type;;", 10, "cannot be read"},
	} {
		err := Check(answer(tc.ct, tc.n), 100)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q %d: %v", tc.ct, tc.n, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q %d: %v, want %q", tc.ct, tc.n, err, tc.want)
		}
	}
}
