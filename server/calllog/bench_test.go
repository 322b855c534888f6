package calllog_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/calllog"
)

// BenchmarkUnary measures what the interceptor adds to a call: the same
// handler called directly (baseline) and through the interceptor writing
// JSON lines to io.Discard, for a success and a failure with details.
func BenchmarkUnary(b *testing.B) {
	req := &cwpexportv1.GetExportTaskRequest{TaskId: "12"}
	resp := &cwpexportv1.GetExportTaskResponse{Task: &cwpexportv1.ExportTask{TaskId: "12"}}
	failure := status.Error(codes.NotFound, "export task 12 does not exist in the cloud")
	info := &grpc.UnaryServerInfo{FullMethod: "/cwpexport.v1.LicenseExportService/GetExportTask"}
	intercept := calllog.Logger{Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Transport: calllog.GRPC}.Unary()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		err  error
	}{{"ok", nil}, {"error", failure}} {
		handler := func(context.Context, any) (any, error) { return resp, c.err }
		b.Run(c.name+"/baseline", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = handler(ctx, req)
			}
		})
		b.Run(c.name+"/logged", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = intercept(ctx, req, info, handler)
			}
		})
	}
}
