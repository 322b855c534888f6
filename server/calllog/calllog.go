// Package calllog logs one line per gRPC call (and so per REST call, which
// the gateway makes over gRPC): method, caller, status code, latency, the
// task the call was about and, on failures, the cloud's RequestId; calls
// that authentication refused are left to the server's edge, which logs
// them in aggregate. Beside it, an audit log gets one line per export and
// per download an admitted caller asked for: who, which task, and the
// outcome, on a logger of its own.
//
// Every line is logged with the call's context (the REST request's, for
// refusals), so that a handler reading it adds the call's trace and span ids
// (telemetry.LogHandler, which the server installs).
package calllog

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/realip"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
)

// healthPrefix marks health checks, logged at debug level: probes would
// otherwise drown the calls that matter.
const healthPrefix = "/grpc.health.v1.Health/"

// Transports: where a call came from.
const (
	// GRPC: a client of the gRPC port; its peer is the connection's.
	GRPC = "grpc"
	// REST: the REST gateway, in process; its peer is the HTTP client's
	// address, which the gateway forwards and realip reads.
	REST = "rest"
)

// auditEvents names the calls the audit log records.
var auditEvents = map[string]string{
	"/cwpexport.v1.LicenseExportService/ExportLicenseDetail":         "export",
	"/cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch": "export",
	"/cwpexport.v1.LicenseExportService/DownloadExport":              "download",
}

// Logger logs the calls of one gRPC server.
type Logger struct {
	// Log receives one "call" line per call.
	Log *slog.Logger
	// Audit, when set, receives one "audit" line per export and download.
	Audit *slog.Logger
	// Transport is GRPC or REST.
	Transport string
}

// Unary logs each unary call when it ends.
func (l Logger) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, slot := callerauth.WithSlot(ctx)
		resp, err := handler(ctx, req)
		c := call{method: info.FullMethod, start: start, err: err, taskID: taskIDOf(req), sent: -1, slot: slot, req: req}
		if c.taskID == "" {
			c.taskID = taskIDOf(resp)
		}
		l.log(ctx, c)
		return resp, err
	}
}

// Stream logs each streaming call when it ends, with the number of
// messages it sent.
func (l Logger) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx, slot := callerauth.WithSlot(ss.Context())
		w := &stream{ServerStream: ss, ctx: ctx}
		err := handler(srv, w)
		l.log(ctx, call{method: info.FullMethod, start: start, err: err, taskID: w.taskID, sent: w.sent, slot: slot,
			req: w.req, bytes: w.bytes, sha256: w.sha256})
		return err
	}
}

// stream notes the task id of the first request or response that names one,
// and what a download sent.
type stream struct {
	grpc.ServerStream
	ctx    context.Context
	taskID string
	sent   int
	req    any
	bytes  int64
	sha256 string
}

// Context carries the slot authentication fills.
func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.req == nil {
		s.req = m
		if s.taskID == "" {
			s.taskID = taskIDOf(m)
		}
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
		if d, ok := m.(*cwpexportv1.DownloadExportResponse); ok {
			s.bytes += int64(len(d.GetData()))
			if d.GetSha256() != "" {
				s.sha256 = d.GetSha256()
			}
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

// call is what the interceptors learnt of one call.
type call struct {
	method string
	start  time.Time
	err    error
	taskID string
	sent   int // -1 for unary calls
	slot   *callerauth.Slot
	req    any
	bytes  int64
	sha256 string
}

func (l Logger) log(ctx context.Context, c call) {
	st := status.Convert(c.err)
	if !c.slot.Admitted() && st.Code() == codes.Unauthenticated {
		// Refused by authentication: the server's edge counts such
		// refusals per peer and logs them in aggregate (one line per peer
		// per interval), so that a flood of bad credentials cannot flood
		// the log.
		return
	}
	from := l.peer(ctx)
	who := c.slot.Name()
	if who == "" {
		who = from
	}
	info := apierror.Info(st.Err())
	if c.taskID == "" {
		c.taskID = info.GetMetadata()[apierror.MetadataTaskID] // a task created, then a failure
	}
	attrs := []slog.Attr{
		slog.String("method", c.method),
		slog.String("caller", who),
		slog.String("peer", from),
		slog.String("code", st.Code().String()),
		slog.Float64("latency_ms", float64(time.Since(c.start).Microseconds())/1000),
	}
	if c.taskID != "" {
		attrs = append(attrs, slog.String("task_id", c.taskID))
	}
	if c.sent >= 0 {
		attrs = append(attrs, slog.Int("messages", c.sent))
	}
	if c.err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
		if rid := info.GetMetadata()[apierror.MetadataCloudRequestID]; rid != "" {
			attrs = append(attrs, slog.String("upstream_request_id", rid))
		}
	}
	lvl := level(c.method, st.Code())
	if c.req == nil && st.Code() == codes.Canceled {
		// Cancelled by its client before its request arrived: it did
		// nothing, and a client resetting streams in a loop would make
		// these most of the log (the edge bounds how many it may).
		lvl = slog.LevelDebug
	}
	l.Log.LogAttrs(ctx, lvl, "call", attrs...)
	// The audit log records what admitted callers did, not every refused
	// attempt: a call refused before authentication admitted it, or ended
	// before its request arrived (a stream reset), did nothing.
	if event, ok := auditEvents[c.method]; ok && l.Audit != nil && c.slot.Admitted() && c.req != nil {
		l.audit(ctx, event, c, st, who, from)
	}
}

// audit writes the audit line of an export or a download.
func (l Logger) audit(ctx context.Context, event string, c call, st *status.Status, who, from string) {
	attrs := []slog.Attr{
		slog.String("event", event),
		slog.String("caller", who),
		slog.String("peer", from),
		slog.String("task_id", c.taskID),
		slog.String("outcome", st.Code().String()),
	}
	if r, ok := c.req.(interface{ GetRequestId() string }); ok && r.GetRequestId() != "" {
		attrs = append(attrs, slog.String("request_id", r.GetRequestId()))
	}
	if event == "download" {
		attrs = append(attrs, slog.Int64("bytes", c.bytes))
		if c.sha256 != "" {
			attrs = append(attrs, slog.String("sha256", c.sha256))
		}
	}
	if c.err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
	}
	l.Audit.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
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

// peer names where the call came from: the HTTP client's address for the
// REST gateway's calls (forwarded by the gateway, read by realip, which
// trusts it from the in-process server only), the connection's peer for the
// gRPC port. Client-sent forwarding metadata on the gRPC port is ignored.
func (l Logger) peer(ctx context.Context) string {
	if l.Transport == REST {
		if ip, ok := realip.FromContext(ctx); ok {
			return "rest:" + ip.String()
		}
		return "rest:unknown"
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "grpc:" + p.Addr.String()
	}
	return "unknown"
}

// Refused logs a REST request the gateway answered itself, before it became
// a gRPC call (unauthenticated, a foreign Host, a body too slow, ...), in
// the shape of a call line; method is the HTTP method and path.
func Refused(log *slog.Logger, r *http.Request, httpStatus int, st *status.Status) {
	from := "rest:" + r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		from = "rest:" + host
	}
	path := r.URL.Path
	if len(path) > 200 {
		path = path[:200] + "…"
	}
	log.LogAttrs(r.Context(), slog.LevelWarn, "call",
		slog.String("method", r.Method+" "+path),
		slog.String("caller", from),
		slog.String("peer", from),
		slog.String("code", st.Code().String()),
		slog.Int("http_status", httpStatus),
		slog.String("error", st.Message()),
	)
}
