package e2e_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/testserver"
)

// closedByServer waits until the server closes c (a read ends in EOF or a
// reset), reading and discarding what it sends first (its SETTINGS, a
// GOAWAY). The deadline guards against a hang; it is not a measure.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestRESTUnauthenticatedBodyIsNotAwaited: a request without valid
// credentials whose body is yet to come (under net/http's 256 KiB, which
// it would otherwise read to its end before answering) is answered 401 at
// once and its connection closed; a body no handler reads is read within
// the body timeout.
func TestRESTUnauthenticatedBodyIsNotAwaited(t *testing.T) {
	o := fastApp()
	o.Tokens = testTokens(t)
	o.RESTBodyTimeout = time.Second
	env := testserver.Start(t, testserver.Config{App: o})
	addr := strings.TrimPrefix(env.RESTURL, "http://")
	head := "POST /v1/license-detail:export HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
	for _, auth := range []string{"", "Authorization: Bearer wrong-token-0000000000000\r\n"} {
		c, r := rawRequest(t, addr, head+auth+"\r\n{")
		if code, _ := readResponse(t, c, r); code != http.StatusUnauthorized {
			t.Errorf("POST with %q and a body to come: HTTP %d, want 401", auth, code)
		}
		if !closedByServer(c) {
			t.Errorf("POST with %q: the connection is held open after the 401", auth)
		}
	}
	c, r := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 100\r\n\r\n")
	if code, _ := readResponse(t, c, r); code != http.StatusOK {
		t.Errorf("GET /healthz with a body that never comes: HTTP %d, want 200", code)
	}
}
