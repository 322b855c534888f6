package service

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// WatchExportTask streams a task to its end. It also resumes an
// ExportLicenseDetailAndWatch stream, under the same authorization.
func (s *Service) WatchExportTask(req *cwpexportv1.WatchExportTaskRequest, stream cwpexportv1.LicenseExportService_WatchExportTaskServer) error {
	id, err := parseTaskID(req.GetTaskId())
	if err != nil {
		return err
	}
	info, err := s.visible(stream.Context(), id)
	if err != nil {
		return err
	}
	return s.streamTask(stream.Context(), id, info, func(kind cwpexportv1.WatchEventKind, t *cwpexportv1.ExportTask, p *cwpexportv1.Progress) error {
		return stream.Send(&cwpexportv1.WatchExportTaskResponse{Kind: kind, Task: t, Progress: p})
	})
}

// sendFunc sends one watch message.
type sendFunc func(kind cwpexportv1.WatchEventKind, t *cwpexportv1.ExportTask, p *cwpexportv1.Progress) error

// streamTask sends a task's observations: a snapshot as soon as the task's
// state is known, a message on every change, heartbeats while pending; it
// returns after the terminal message, or when ctx ends (closing the
// caller's interest, so polling stops when nobody else is watching).
func (s *Service) streamTask(ctx context.Context, id int64, info exports.Record, send sendFunc) error {
	start := s.opts.Tracker.Now()
	if info.Final != nil {
		return send(cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT, proto.CloneOf(info.Final), s.progress(s.opts.Tracker.Peek(id), info.Final, start))
	}
	w := s.opts.Tracker.Watch(id)
	defer w.Close()
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	var (
		sent      bool
		lastState cloud.Status
		beat      bool
		linked    trace.SpanContext
	)
	for {
		snap, changed := w.Current()
		if snap.Err != nil {
			if t := s.lostTask(info, snap, snap.Err); t != nil {
				kind := cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_STATE_CHANGED
				if !sent {
					kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT
				}
				linkPoll(ctx, linked, snap, kind)
				return send(kind, t, s.progress(snap, t, start))
			}
			// The stream ends with the refusal that poll received.
			linkPoll(ctx, linked, snap, cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_UNSPECIFIED)
			return apierror.Cloud(ctx, id, snap.Err)
		}
		var kind cwpexportv1.WatchEventKind
		switch {
		case !sent && (snap.State != "" || beat):
			// The first message waits for the task's state, but no longer
			// than one heartbeat: a cloud in trouble shows in its progress.
			kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT
		case sent && snap.State != lastState:
			kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_STATE_CHANGED
		case sent && beat:
			kind = cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_HEARTBEAT
		}
		beat = false
		if kind != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_UNSPECIFIED {
			linked = linkPoll(ctx, linked, snap, kind)
			t := info.Apply(exports.FromSnapshot(snap))
			if err := send(kind, t, s.progress(snap, t, start)); err != nil {
				return err
			}
			sent, lastState = true, snap.State
			if snap.Terminal() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return apierror.Context(ctx, ctx.Err())
		case <-s.draining:
			return apierror.New(cwpexportv1.ErrorReason_SHUTTING_DOWN, fmt.Sprintf(
				"the server is shutting down; resume with WatchExportTask for task %d", id)).Meta(apierror.MetadataTaskID, fmt.Sprint(id)).Err()
		case <-changed:
		case <-heartbeat.C:
			beat = true
		}
	}
}

// linkPoll links the watch's span to the poll that observed what a message
// reports (kind; unspecified for the refusal that ends the stream), once
// per poll: the poll is a trace of its own, made for every watcher of the
// task. It returns the poll linked last.
func linkPoll(ctx context.Context, linked trace.SpanContext, snap tracker.Snapshot, kind cwpexportv1.WatchEventKind) trace.SpanContext {
	if !snap.ChangeSpan.IsValid() || snap.ChangeSpan.Equal(linked) {
		return linked
	}
	attrs := []attribute.KeyValue{attribute.String(cloud.AttrTaskStatus, string(snap.State))}
	if kind != cwpexportv1.WatchEventKind_WATCH_EVENT_KIND_UNSPECIFIED {
		attrs = append(attrs, attribute.String("cwpexport.watch.kind", kind.String()))
	}
	trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: snap.ChangeSpan, Attributes: attrs})
	return snap.ChangeSpan
}
