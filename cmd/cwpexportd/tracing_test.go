package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/telemetry/otlptest"
)

// TestTracesExportedOverOTLP: the daemon, configured by the OTEL_*
// environment only, sends a REST export's trace to an OTLP/HTTP collector:
// the caller's trace continued through the gateway, the gRPC handling, the
// budget wait and the cloud call with its RequestId. The batch is sent at
// exit: SIGTERM flushes it.
func TestTracesExportedOverOTLP(t *testing.T) {
	rcv := otlptest.NewHTTP(t)
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.Endpoint,
		"OTEL_SERVICE_NAME":           "cwpexportd-otlp-test",
		"OTEL_BSP_SCHEDULE_DELAY":     "600000", // nothing leaves before the exit
		"OTEL_TRACES_EXPORTER":        "",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "",
		"OTEL_SDK_DISABLED":           "",
	} {
		t.Setenv(k, v)
	}
	d := startEmbedded(t, t.TempDir(), "1h")
	const traceID = "5bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodPost, d.restURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer struct{ UpstreamRequestID string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &answer) != nil || answer.UpstreamRequestID == "" {
		t.Fatalf("export: %d %s", resp.StatusCode, body)
	}
	if n := rcv.Requests(); n != 0 {
		t.Fatalf("%d export requests before the exit; the batch delay is 10 minutes", n)
	}
	d.stop(t)

	byName := map[string][]otlptest.Span{}
	for _, s := range rcv.Spans() {
		if s.TraceID() == traceID {
			byName[s.GetName()] = append(byName[s.GetName()], s)
		}
		if s.Resource["service.name"] != "cwpexportd-otlp-test" {
			t.Errorf("span %q from service %q", s.GetName(), s.Resource["service.name"])
		}
	}
	one := func(name string) otlptest.Span {
		t.Helper()
		if len(byName[name]) != 1 {
			t.Fatalf("%d spans %q in the caller's trace, want 1; got %v", len(byName[name]), name, byName)
		}
		return byName[name][0]
	}
	rest := one("POST /v1/license-detail:export")
	if rest.ParentID() != "00f067aa0ba902b7" {
		t.Errorf("the REST span's parent is %q, want the caller's span", rest.ParentID())
	}
	if len(byName["cwpexport.v1.LicenseExportService/ExportLicenseDetail"]) != 2 { // the gateway's call, and its handling
		t.Errorf("gRPC spans: %v", byName["cwpexport.v1.LicenseExportService/ExportLicenseDetail"])
	}
	one("budget " + cloud.ActionExportLicenseDetail)
	call := one("cwp " + cloud.ActionExportLicenseDetail)
	if rid := call.Attr(cloud.AttrRequestID); rid != answer.UpstreamRequestID {
		t.Errorf("the cloud span's RequestId %q, the answer's %q", rid, answer.UpstreamRequestID)
	}
}
