package gateway_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/testserver"
)

func TestPageAndMetricsBesideTheAPI(t *testing.T) {
	env := testserver.Start(t, testserver.Config{})
	page := env.Do(t, "GET", "/", "")
	if page.Status != 200 || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page.Body), `<form id="export-form"`) {
		t.Fatalf("/ answered %d %s", page.Status, page.Header.Get("Content-Type"))
	}
	// Everything the page loads comes from this service: no CDN.
	external := regexp.MustCompile(`(src|href)="(https?:)?//`)
	for _, path := range []string{"/", "/ui/app.js", "/ui/api.js", "/ui/stream.js", "/ui/chart.js", "/ui/style.css", "/ui/favicon.svg"} {
		r := env.Do(t, "GET", path, "")
		if r.Status != 200 {
			t.Errorf("%s answered %d", path, r.Status)
		}
		// ES modules load only with a JavaScript media type.
		if strings.HasSuffix(path, ".js") && !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("%s answered Content-Type %q", path, r.Header.Get("Content-Type"))
		}
		if external.Match(r.Body) {
			t.Errorf("%s loads something from another origin", path)
		}
	}
	if r := env.Do(t, "GET", "/ui/missing.js", ""); r.Status != 404 {
		t.Errorf("/ui/missing.js answered %d, want 404", r.Status)
	}
	m := env.Metrics(t)
	if m.Status != 200 || !strings.Contains(string(m.Body), "cwpexport_tracker_active_watchers") {
		t.Errorf("/metrics answered %d without the tracker gauges", m.Status)
	}
	// The API still answers beside them.
	if r := env.Do(t, "GET", "/v1/export-tasks/0", ""); r.Status != 400 {
		t.Errorf("GET /v1/export-tasks/0 answered %d, want 400", r.Status)
	}
}
