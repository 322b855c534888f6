package service

import (
	"context"

	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/taskstore"
)

// Page sizes of ListExportTasks.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// ListExportTasks lists the tasks this service created that the caller may
// see, newest first, in pages bounded by count and by size.
func (s *Service) ListExportTasks(ctx context.Context, req *cwpexportv1.ListExportTasksRequest) (*cwpexportv1.ListExportTasksResponse, error) {
	var v fieldErrors
	caller := callerauth.Caller(ctx)
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultPageSize
	case size < 0 || size > MaxPageSize:
		v.add("page_size", "must be between 1 and %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, size)
	}
	state := ""
	switch req.GetState() {
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_UNSPECIFIED:
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING:
		state = taskstore.StatePending
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED:
		state = taskstore.StateFinished
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR:
		state = taskstore.StateError
	default:
		v.add("state", "must be one of EXPORT_TASK_STATE_PENDING, EXPORT_TASK_STATE_FINISHED, EXPORT_TASK_STATE_ERROR or unspecified, got %d", req.GetState())
	}
	var after *taskstore.Cursor
	if tok := req.GetPageToken(); tok != "" {
		c, tokState, err := s.decodePageToken(caller, tok)
		switch {
		case err != nil:
			v.add("page_token", "is not a token this service issued to this caller; pass next_page_token from the previous page unchanged")
		case tokState != state:
			v.add("page_token", "was issued for a different state filter; use the same state on every page")
		default:
			after = &c
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	q := taskstore.Query{State: state, After: after, Limit: size + 1}
	if scope := s.scope(ctx); !scope.All() {
		q.Creators = scope.Owners()
		if q.Creators == nil {
			q.Creators = []string{} // sees nothing
		}
	}
	rows, err := s.opts.Registry.List(ctx, q)
	if err != nil {
		return nil, apierror.Registry(ctx, err)
	}
	resp := &cwpexportv1.ListExportTasksResponse{}
	bytes := 0
	for i, r := range rows {
		if i == size {
			break
		}
		t := exports.FromRow(r)
		// Bounded in bytes as well as rows, so that a page always fits in
		// a gRPC message; one task always fits (MaxParametersBytes).
		bytes += proto.Size(t)
		if i > 0 && bytes > s.opts.MaxPageBytes {
			break
		}
		resp.Tasks = append(resp.Tasks, t)
	}
	if n := len(resp.Tasks); n < len(rows) {
		last := rows[n-1]
		resp.NextPageToken = s.encodePageToken(caller, taskstore.Cursor{Seq: last.Seq}, state)
	}
	return resp, nil
}
