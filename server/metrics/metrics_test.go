package metrics_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestMetricsAfterExports runs one export to FINISHED and one to ERROR
// against the emulator, then reads /metrics from the metrics address.
func TestMetricsAfterExports(t *testing.T) {
	env := testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{PendingFor: 300 * time.Millisecond},
		App:      app.Options{MinPollInterval: 100 * time.Millisecond, Heartbeat: 200 * time.Millisecond},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, keyword := range []string{"ok", "EMULATOR_FAIL"} {
		stream, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{
			Filters: []*cwpexportv1.Filter{{Name: "Keywords", Values: []string{keyword}}},
		})
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		for {
			if _, err := stream.Recv(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("recv: %v", err)
			}
		}
	}
	// An unknown task: the cloud answers with an error code.
	if _, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: "999999"}); err == nil {
		t.Fatalf("unknown task answered without error")
	}

	r := env.Metrics(t)
	if r.Status != 200 {
		t.Fatalf("/metrics answered %d", r.Status)
	}
	body := string(r.Body)
	for _, want := range []string{
		`cwpexport_upstream_calls_total{action="ExportLicenseDetail",code="Success"} 2`,
		`cwpexport_upstream_calls_total{action="ExportTasks",code="ResourceNotFound"} 1`,
		`cwpexport_export_outcomes_total{outcome="finished"} 1`,
		`cwpexport_export_outcomes_total{outcome="error"} 1`,
		`cwpexport_export_outcomes_total{outcome="failed"} 1`,
		`cwpexport_task_polls_count 3`,
		`cwpexport_budget_wait_seconds_count{budget="create"} 2`,
		`cwpexport_budget_wait_seconds_count{budget="read"}`,
		`cwpexport_upstream_call_duration_seconds_count{action="ExportTasks"}`,
		`cwpexport_tracker_active_pollers 0`,
		`cwpexport_tracker_active_watchers 0`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="ExportLicenseDetailAndWatch",grpc_service="cwpexport.v1.LicenseExportService",grpc_type="server_stream"} 2`,
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="GetExportTask"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(body, "cwpexport_"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
