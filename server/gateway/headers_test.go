package gateway_test

import (
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestConsoleCannotBeFramedAndAnswersAreNotKept: the console refuses to be
// framed by any origin and to send forms or resolve links elsewhere; API
// answers, which carry pre-signed URLs, are never stored by a cache.
func TestConsoleCannotBeFramedAndAnswersAreNotKept(t *testing.T) {
	env := testserver.Start(t, testserver.Config{})
	for _, path := range []string{"/", "/ui/app.js"} {
		r := env.Do(t, "GET", path, "")
		csp := r.Header.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %s", path, csp, want)
			}
		}
		if got := r.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", path, got)
		}
	}
	created := env.Do(t, "POST", "/v1/license-detail:export", "{}")
	for name, r := range map[string]testserver.Response{
		"created":   created,
		"list":      env.Do(t, "GET", "/v1/export-tasks", ""),
		"bad input": env.Do(t, "GET", "/v1/export-tasks/0", ""),
		"budget":    env.Do(t, "GET", "/v1/budget", ""),
	} {
		if got := r.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s (HTTP %d): Cache-Control %q, want no-store", name, r.Status, got)
		}
		if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", name, got)
		}
	}
}
