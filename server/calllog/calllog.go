// Package calllog logs one line per gRPC call (and so per REST call, which
// the gateway makes over gRPC): method, caller, status code, latency, the
// task the call was about and, on failures, the cloud's RequestId.
package calllog

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/callerauth"
)

// cloudRequestIDKey is the ErrorInfo metadata key under which the service
// reports the cloud's RequestId.
const cloudRequestIDKey = "cloud_request_id"

// healthPrefix marks health checks, logged at debug level: probes would
// otherwise drown the calls that matter.
const healthPrefix = "/grpc.health.v1.Health/"

// UnaryServerInterceptor logs each unary call when it ends.
func UnaryServerInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, slot := callerauth.WithSlot(ctx)
		resp, err := handler(ctx, req)
		taskID := taskIDOf(req)
		if taskID == "" {
			taskID = taskIDOf(resp)
		}
		logCall(ctx, log, info.FullMethod, start, err, taskID, -1, slot)
		return resp, err
	}
}

// StreamServerInterceptor logs each streaming call when it ends, with the
// number of messages it sent.
func StreamServerInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx, slot := callerauth.WithSlot(ss.Context())
		w := &stream{ServerStream: ss, ctx: ctx}
		err := handler(srv, w)
		logCall(ctx, log, info.FullMethod, start, err, w.taskID, w.sent, slot)
		return err
	}
}

// stream notes the task id of the first request or response that names one.
type stream struct {
	grpc.ServerStream
	ctx    context.Context
	taskID string
	sent   int
}

// Context carries the slot authentication fills.
func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.taskID == "" {
		s.taskID = taskIDOf(m)
	}
	return err
}

func (s *stream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.sent++
		if s.taskID == "" {
			s.taskID = taskIDOf(m)
		}
	}
	return err
}

// taskIDOf finds the task id in a request (task_id) or a response (task).
func taskIDOf(m any) string {
	switch v := m.(type) {
	case interface{ GetTaskId() string }:
		return v.GetTaskId()
	case interface {
		GetTask() *cwpexportv1.ExportTask
	}:
		return v.GetTask().GetTaskId()
	}
	return ""
}

func logCall(ctx context.Context, log *slog.Logger, method string, start time.Time, err error, taskID string, sent int, slot *callerauth.Slot) {
	st := status.Convert(err)
	peerAddr := caller(ctx)
	who := slot.Name()
	if who == "" {
		who = peerAddr
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("caller", who),
		slog.String("peer", peerAddr),
		slog.String("code", st.Code().String()),
		slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if taskID != "" {
		attrs = append(attrs, slog.String("task_id", taskID))
	}
	if sent >= 0 {
		attrs = append(attrs, slog.Int("messages", sent))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
		if rid := cloudRequestID(st); rid != "" {
			attrs = append(attrs, slog.String("upstream_request_id", rid))
		}
	}
	log.LogAttrs(ctx, level(method, st.Code()), "call", attrs...)
}

func level(method string, c codes.Code) slog.Level {
	switch {
	case strings.HasPrefix(method, healthPrefix) && c == codes.OK:
		return slog.LevelDebug
	case c == codes.OK:
		return slog.LevelInfo
	case c == codes.Internal || c == codes.Unknown || c == codes.DataLoss || c == codes.Unavailable:
		return slog.LevelError
	}
	return slog.LevelWarn
}

// caller names where the call came from: the HTTP client's address for
// calls that came through the REST gateway (which forwards it), otherwise
// the gRPC peer. The log's caller is the authenticated name when there is one.
func caller(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-forwarded-for"); len(v) > 0 && v[0] != "" {
			return "rest:" + v[0]
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "grpc:" + p.Addr.String()
	}
	return "unknown"
}

func cloudRequestID(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if rid := info.GetMetadata()[cloudRequestIDKey]; rid != "" {
				return rid
			}
		}
	}
	return ""
}
