package calllog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// syncBuffer is written by the server's goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// calls returns the logged "call" lines for method.
func (s *syncBuffer) calls(t *testing.T, method string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(s.b.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if m["msg"] == "call" && strings.HasSuffix(m["method"].(string), "/"+method) {
			out = append(out, m)
		}
	}
	return out
}

func TestOneLinePerCall(t *testing.T) {
	var buf syncBuffer
	env := testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{PendingFor: 200 * time.Millisecond},
		App: app.Options{
			MinPollInterval: 100 * time.Millisecond,
			Logger:          slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if _, err := env.Client.GetExportTask(ctx, &cwpexportv1.GetExportTaskRequest{TaskId: "987654"}); err == nil {
		t.Fatalf("unknown task answered without error")
	}
	_, lines := env.Stream(t, ctx, "GET", "/v1/export-tasks/"+res.GetTask().GetTaskId()+":watch", "")
	if len(lines) < 2 {
		t.Fatalf("watch over REST answered %d lines", len(lines))
	}

	// The REST watch's log line is written when its handler returns, just
	// after the last message reached the client.
	deadline := time.Now().Add(5 * time.Second)
	for len(buf.calls(t, "WatchExportTask")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	exp := buf.calls(t, "ExportLicenseDetail")
	if len(exp) != 1 {
		t.Fatalf("ExportLicenseDetail logged %d times, want once: %v", len(exp), exp)
	}
	want := map[string]any{"level": "INFO", "code": "OK", "task_id": res.GetTask().GetTaskId()}
	for k, v := range want {
		if exp[0][k] != v {
			t.Errorf("export line %s = %v, want %v", k, exp[0][k], v)
		}
	}
	if !strings.HasPrefix(exp[0]["caller"].(string), "grpc:127.0.0.1:") {
		t.Errorf("export line caller = %v, want the gRPC peer", exp[0]["caller"])
	}
	if _, ok := exp[0]["latency_ms"].(float64); !ok {
		t.Errorf("export line has no latency_ms: %v", exp[0])
	}

	get := buf.calls(t, "GetExportTask")
	if len(get) != 1 {
		t.Fatalf("GetExportTask logged %d times: %v", len(get), get)
	}
	if get[0]["code"] != "NotFound" || get[0]["level"] != "WARN" || get[0]["task_id"] != "987654" {
		t.Errorf("failed get logged as %v", get[0])
	}
	if rid, _ := get[0]["upstream_request_id"].(string); rid == "" {
		t.Errorf("failed get line lacks the cloud's RequestId: %v", get[0])
	}

	watch := buf.calls(t, "WatchExportTask")
	if len(watch) != 1 {
		t.Fatalf("WatchExportTask logged %d times: %v", len(watch), watch)
	}
	if watch[0]["code"] != "OK" || watch[0]["task_id"] != res.GetTask().GetTaskId() || !strings.HasPrefix(watch[0]["caller"].(string), "rest:") {
		t.Errorf("REST watch logged as %v", watch[0])
	}
	if n, _ := watch[0]["messages"].(float64); int(n) != len(lines) {
		t.Errorf("watch line says %v messages, the client received %d", watch[0]["messages"], len(lines))
	}
}
