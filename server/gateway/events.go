package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// Server-Sent Events of the two watch endpoints. A request whose Accept
// header prefers text/event-stream gets one event per stream message:
//
//	retry: 2000                       (first event only)
//	id: <task_id>:<n>                 (n counts the messages, across resumes)
//	event: snapshot | state_changed | heartbeat
//	data: <the message as JSON, as NDJSON's "result">
//
// After the terminal message comes "event: end" with id "<task_id>:end";
// an error after the first event comes as "event: error" whose data is the
// google.rpc.Status, with the last message's id. A request carrying
// Last-Event-ID resumes the watch of the task it names; the service keeps
// no event log, so a resumed stream begins with a new snapshot.
const (
	eventSnapshot     = "snapshot"
	eventStateChanged = "state_changed"
	eventHeartbeat    = "heartbeat"
	eventEnd          = "end"
	eventError        = "error"
	// endSeq is the sequence part of the end event's id.
	endSeq = "end"
)

// sseRetry is the reconnection delay advised to clients: long enough not to
// hammer a service that is restarting, short enough to resume promptly.
const sseRetry = 2 * time.Second

// Routes with an event-stream variant.
const (
	watchPattern          = "/v1/export-tasks/{task_id}:watch"
	watchMethod           = "/cwpexport.v1.LicenseExportService/WatchExportTask"
	exportAndWatchPath    = "/v1/license-detail:exportAndWatch"
	exportAndWatchMethod  = "/cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch"
	lastEventIDHeader     = "Last-Event-ID"
	eventStreamType       = "text/event-stream"
	lastEventIDViolations = "must be an event id of this API, <task_id>:<n> or <task_id>:end"
)

// events serves the event-stream variant of the watch endpoints, as a
// client of the gRPC server (so authentication and limits apply as for any
// call).
type events struct {
	mux       *runtime.ServeMux
	marshaler runtime.Marshaler
	client    cwpexportv1.LicenseExportServiceClient
}

// serve answers r and reports true when r asks a watch endpoint for an
// event stream; otherwise it does nothing and reports false.
func (e events) serve(w http.ResponseWriter, r *http.Request) bool {
	if !prefersEventStream(r.Header.Values("Accept")) {
		return false
	}
	switch {
	case r.Method == http.MethodGet && watchTaskID(r.URL.Path) != "":
		setRoute(r.Context(), watchPattern)
		e.watch(w, r, watchTaskID(r.URL.Path))
	case r.Method == http.MethodPost && r.URL.Path == exportAndWatchPath:
		setRoute(r.Context(), exportAndWatchPath)
		e.exportAndWatch(w, r)
	default:
		return false
	}
	return true
}

// watchTaskID returns the task id of a watch path, or "".
func watchTaskID(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1/export-tasks/")
	if !ok {
		return ""
	}
	id, ok := strings.CutSuffix(rest, ":watch")
	if !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	return id
}

// prefersEventStream reports whether the Accept header values list
// text/event-stream with a quality at least as high as JSON's. JSON's
// quality is that of its most specific match (application/json, then
// application/*, then */*); text/event-stream must be named, since a
// wildcard alone keeps the NDJSON default.
func prefersEventStream(accept []string) bool {
	var sse float64
	jsonQ := map[string]float64{}
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(s, 64); err == nil {
					q = f
				}
			}
			switch mt {
			case eventStreamType:
				sse = max(sse, q)
			case "application/json", "application/*", "*/*":
				jsonQ[mt] = max(jsonQ[mt], q)
			}
		}
	}
	if sse <= 0 {
		return false
	}
	for _, mt := range []string{"application/json", "application/*", "*/*"} {
		if q, ok := jsonQ[mt]; ok {
			return sse >= q
		}
	}
	return true
}

// resumePoint is what a Last-Event-ID says: the task, the last message's
// number, and whether that stream had already ended.
type resumePoint struct {
	taskID string
	seq    int64
	ended  bool
}

// lastEventID parses the Last-Event-ID header; ok is false without one.
func lastEventID(r *http.Request) (p resumePoint, ok bool, err error) {
	v := strings.TrimSpace(r.Header.Get(lastEventIDHeader))
	if v == "" {
		return p, false, nil
	}
	task, seq, found := strings.Cut(v, ":")
	if !found || task == "" || len(task) > 19 || strings.Trim(task, "0123456789") != "" {
		return p, true, badLastEventID(v)
	}
	p.taskID = task
	if seq == endSeq {
		p.ended = true
		return p, true, nil
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n < 0 {
		return p, true, badLastEventID(v)
	}
	p.seq = n
	return p, true, nil
}

func badLastEventID(v string) error {
	return lastEventIDError(fmt.Sprintf("%s, got %q", lastEventIDViolations, clip(v)))
}

func lastEventIDError(desc string) error { return apierror.InvalidField(lastEventIDHeader, desc) }

// watch answers GET /v1/export-tasks/{task_id}:watch as events.
func (e events) watch(w http.ResponseWriter, r *http.Request, taskID string) {
	resume, resuming, err := lastEventID(r)
	if err == nil && resuming && resume.taskID != taskID {
		err = lastEventIDError(fmt.Sprintf("names task %s, not the watched task %s", resume.taskID, taskID))
	}
	ctx, err := e.annotate(r, watchMethod, watchPattern, err)
	if err != nil {
		e.fail(ctx, w, r, err)
		return
	}
	if resume.ended {
		w.WriteHeader(http.StatusNoContent) // tells EventSource not to reconnect
		return
	}
	stream, err := e.client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: taskID})
	if err != nil {
		e.fail(ctx, w, r, err)
		return
	}
	e.stream(ctx, w, r, taskID, resume.seq, func() (proto.Message, error) { return stream.Recv() })
}

// exportAndWatch answers POST /v1/license-detail:exportAndWatch as events.
// With a Last-Event-ID it resumes the watch of the task that id names
// instead of starting another export: a client that lost the stream must
// never create a second task by reconnecting.
func (e events) exportAndWatch(w http.ResponseWriter, r *http.Request) {
	resume, resuming, err := lastEventID(r)
	if resuming && err == nil {
		ctx, err := e.annotate(r, watchMethod, watchPattern, nil)
		if err != nil {
			e.fail(ctx, w, r, err)
			return
		}
		if resume.ended {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		stream, err := e.client.WatchExportTask(ctx, &cwpexportv1.WatchExportTaskRequest{TaskId: resume.taskID})
		if err != nil {
			e.fail(ctx, w, r, err)
			return
		}
		// The resumed stream carries the messages this endpoint always
		// carries; upstream_request_id belonged to the first one only.
		e.stream(ctx, w, r, resume.taskID, resume.seq, func() (proto.Message, error) {
			m, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			return &cwpexportv1.ExportLicenseDetailAndWatchResponse{Kind: m.GetKind(), Task: m.GetTask(), Progress: m.GetProgress()}, nil
		})
		return
	}
	ctx, err := e.annotate(r, exportAndWatchMethod, exportAndWatchPath, err)
	if err != nil {
		e.fail(ctx, w, r, err)
		return
	}
	var req cwpexportv1.ExportLicenseDetailAndWatchRequest
	if err := e.marshaler.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		e.fail(ctx, w, r, status.Errorf(codes.InvalidArgument, "%v", err))
		return
	}
	stream, err := e.client.ExportLicenseDetailAndWatch(ctx, &req)
	if err != nil {
		e.fail(ctx, w, r, err)
		return
	}
	e.stream(ctx, w, r, "", 0, func() (proto.Message, error) { return stream.Recv() })
}

// annotate returns the outgoing gRPC context of r (its authorization and
// forwarding headers as metadata), or err when err is set already.
func (e events) annotate(r *http.Request, method, pattern string, err error) (context.Context, error) {
	if err != nil {
		return r.Context(), err
	}
	return runtime.AnnotateContext(r.Context(), e.mux, r, method, runtime.WithHTTPPathPattern(pattern))
}

// fail answers an error before the stream began, as any REST error.
func (e events) fail(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	runtime.HTTPError(ctx, e.mux, e.marshaler, w, r, err)
}

// watchMessage is what both watch streams send.
type watchMessage interface {
	proto.Message
	GetKind() cwpexportv1.WatchEventKind
	GetTask() *cwpexportv1.ExportTask
}

// stream writes each message recv returns as an event, flushed, numbering
// them after seq; it returns when the stream ends, fails, or the client
// goes (its context ends the gRPC stream).
func (e events) stream(ctx context.Context, w http.ResponseWriter, r *http.Request, taskID string, seq int64, recv func() (proto.Message, error)) {
	msg, err := recv()
	if errors.Is(err, io.EOF) {
		err = apierror.Error(cwpexportv1.ErrorReason_INTERNAL, "the stream ended before its first message")
	}
	if err != nil {
		e.fail(ctx, w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", eventStreamType)
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept")
	// Proxies that buffer responses (nginx) would hold events back.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := eventWriter{w: w, rc: http.NewResponseController(w)}
	out.retry(sseRetry)
	var state cwpexportv1.ExportTaskState
	for {
		m, _ := msg.(watchMessage)
		if id := m.GetTask().GetTaskId(); id != "" {
			taskID = id
		}
		state = m.GetTask().GetState()
		data, err := e.marshaler.Marshal(msg)
		if err != nil {
			data, _ = e.marshaler.Marshal(status.Convert(fmt.Errorf("encode a stream message: %w", err)).Proto())
			_ = out.event(eventError, fmt.Sprintf("%s:%d", taskID, seq), data)
			return
		}
		seq++
		if out.event(eventName(m.GetKind()), fmt.Sprintf("%s:%d", taskID, seq), data) != nil {
			return // the client went away; its context ends the gRPC stream
		}
		msg, err = recv()
		if errors.Is(err, io.EOF) {
			end, _ := json.Marshal(struct {
				TaskID string `json:"taskId"`
				State  string `json:"state"`
			}{taskID, state.String()})
			_ = out.event(eventEnd, taskID+":"+endSeq, end)
			return
		}
		if err != nil {
			data, _ := e.marshaler.Marshal(status.Convert(err).Proto())
			_ = out.event(eventError, fmt.Sprintf("%s:%d", taskID, seq), data)
			return
		}
	}
}

func eventName(k cwpexportv1.WatchEventKind) string {
	switch k {
	case cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT:
		return eventSnapshot
	case cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_STATE_CHANGED:
		return eventStateChanged
	case cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_HEARTBEAT:
		return eventHeartbeat
	}
	return "message" // EventSource's default type; not sent by the service
}

// eventWriter writes text/event-stream fields and flushes each event.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	pending []byte
}

// retry queues the reconnection delay; it goes out with the next event.
func (o *eventWriter) retry(d time.Duration) {
	o.pending = fmt.Appendf(o.pending, "retry: %d\n", d.Milliseconds())
}

// event writes one event and flushes it. data must be one line of JSON;
// any newline in it is sent as a further data line, as the format wants.
func (o *eventWriter) event(name, id string, data []byte) error {
	b := o.pending
	o.pending = nil
	b = fmt.Appendf(b, "id: %s\nevent: %s\n", id, name)
	for line := range strings.SplitSeq(string(data), "\n") {
		b = fmt.Appendf(b, "data: %s\n", line)
	}
	b = append(b, '\n')
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	return o.rc.Flush()
}
