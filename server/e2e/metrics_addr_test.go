package e2e_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestMetricsOnTheirOwnAddress: the REST port, which callers reach, does
// not serve the metrics (every caller's calls by method and outcome); the
// metrics address does, to requests that name it by address, not by a
// name a browser page could rebind.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	env := testserver.Start(t, testserver.Config{})
	if r := env.Do(t, http.MethodGet, "/metrics", ""); r.Status == http.StatusOK {
		t.Errorf("the REST port serves /metrics: HTTP %d", r.Status)
	}
	m := env.Metrics(t)
	if m.Status != http.StatusOK || !strings.Contains(string(m.Body), "grpc_server_handled_total") {
		t.Errorf("the metrics address: HTTP %d %.200s", m.Status, m.Body)
	}
	req, _ := http.NewRequest(http.MethodGet, env.MetricsURL, nil)
	req.Host = "rebound.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("a request naming another host was answered")
	}
}
