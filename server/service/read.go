package service

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/internal/deadline"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// GetExportTask returns a task's current state. A task the registry
// records as ended is answered from the registry, without asking the cloud.
func (s *Service) GetExportTask(ctx context.Context, req *cwpexportv1.GetExportTaskRequest) (*cwpexportv1.GetExportTaskResponse, error) {
	id, err := parseTaskID(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	info, err := s.visible(ctx, id)
	if err != nil {
		return nil, err
	}
	if info.Final != nil {
		return &cwpexportv1.GetExportTaskResponse{Task: proto.CloneOf(info.Final), Progress: s.progress(s.opts.Tracker.Peek(id), info.Final, time.Time{})}, nil
	}
	read := s.opts.Tracker.Get
	if _, set := ctx.Deadline(); !set {
		// No deadline of the caller's: what was last observed, at once.
		read = s.opts.Tracker.Read
	}
	ctx, cancel := deadline.AnswerBefore(ctx, s.opts.GetTimeout)
	defer cancel()
	snap, err := read(ctx, id)
	if err != nil {
		if t := s.lostTask(info, snap, err); t != nil {
			return &cwpexportv1.GetExportTaskResponse{Task: t, Progress: s.progress(snap, t, time.Time{})}, nil
		}
		return nil, apierror.Cloud(ctx, id, err)
	}
	if snap.Terminal() {
		s.opts.Saga.Forget(id) // its final state is being recorded
	}
	t := info.Apply(exports.FromSnapshot(snap))
	return &cwpexportv1.GetExportTaskResponse{Task: t, Progress: s.progress(snap, t, time.Time{})}, nil
}

// lostTask is the answer about a task this service created that the cloud
// no longer knows (err): it ended in ERROR. It is nil for other errors and
// for tasks the registry does not know, which are answered NotFound.
func (s *Service) lostTask(info exports.Record, snap tracker.Snapshot, err error) *cwpexportv1.ExportTask {
	if !info.Recorded || cloud.KindOf(err) != cloud.KindNotFound {
		return nil
	}
	t := info.Apply(exports.FromSnapshot(snap))
	t.State = cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR
	t.ErrorMessage = "the export cannot be followed: " + exports.LostReason(err)
	return t
}
