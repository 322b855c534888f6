package service

import (
	"context"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/exports"
)

// ExportLicenseDetail starts an export.
func (s *Service) ExportLicenseDetail(ctx context.Context, req *cwpexportv1.ExportLicenseDetailRequest) (*cwpexportv1.ExportLicenseDetailResponse, error) {
	task, rid, err := s.create(ctx, req)
	if err != nil {
		return nil, err
	}
	return &cwpexportv1.ExportLicenseDetailResponse{Task: task, UpstreamRequestId: rid}, nil
}

// ExportLicenseDetailAndWatch starts an export and streams it to its end.
func (s *Service) ExportLicenseDetailAndWatch(req *cwpexportv1.ExportLicenseDetailAndWatchRequest, stream cwpexportv1.LicenseExportService_ExportLicenseDetailAndWatchServer) error {
	ctx := stream.Context()
	task, rid, err := s.create(ctx, req)
	if err != nil {
		return err
	}
	id, _ := parseTaskID(task.GetTaskId())
	info, _ := s.opts.Saga.Record(ctx, id) // cached by the creation; a task ends only later
	first := true
	return s.streamTask(ctx, id, info, func(kind cwpexportv1.WatchEventKind, t *cwpexportv1.ExportTask, p *cwpexportv1.Progress) error {
		msg := &cwpexportv1.ExportLicenseDetailAndWatchResponse{Kind: kind, Task: t, Progress: p}
		if first {
			msg.UpstreamRequestId, first = rid, false
			t.Parameters = task.GetParameters()
			t.RequestId = task.GetRequestId()
		}
		return stream.Send(msg)
	})
}

// create validates an export request and starts the export.
func (s *Service) create(ctx context.Context, req exportRequest) (*cwpexportv1.ExportTask, string, error) {
	params, err := validateExport(req)
	if err != nil {
		return nil, "", err
	}
	return s.opts.Saga.Create(ctx, exports.Request{Parameters: toParameters(req), Cloud: params, RequestID: req.GetRequestId()})
}
