package exports

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// FromRow converts a registry row to the API's task.
func FromRow(r taskstore.Task) *cwpexportv1.ExportTask {
	t := &cwpexportv1.ExportTask{
		TaskId:                fmt.Sprint(r.TaskID),
		State:                 State(cloud.Status(r.State)),
		DownloadUrl:           r.DownloadURL,
		CreateTime:            Timestamp(r.Created),
		UpdateTime:            Timestamp(r.Changed),
		ObserveTime:           Timestamp(r.Observed),
		LastUpstreamRequestId: r.LastRequestID,
		RequestId:             r.RequestID,
		Creator:               r.Creator,
	}
	if r.Parameters != "" {
		p := &cwpexportv1.ExportParameters{}
		if protojson.Unmarshal([]byte(r.Parameters), p) == nil {
			t.Parameters = p
		}
	}
	switch {
	case r.State == taskstore.StateError && r.EndReason != "":
		t.ErrorMessage = "the export cannot be followed: " + r.EndReason
	case r.State == taskstore.StateError:
		t.ErrorMessage = errExportFailed
	case r.EndReason != "":
		t.ErrorMessage = "the service stopped following this task: " + r.EndReason
	}
	return t
}

// FromSnapshot converts a tracker snapshot to the API's task.
func FromSnapshot(s tracker.Snapshot) *cwpexportv1.ExportTask {
	t := &cwpexportv1.ExportTask{
		TaskId:                fmt.Sprint(s.TaskID),
		State:                 State(s.State),
		DownloadUrl:           s.DownloadURL,
		CreateTime:            Timestamp(s.Created),
		UpdateTime:            Timestamp(s.Changed),
		ObserveTime:           Timestamp(s.Observed),
		LastUpstreamRequestId: s.RequestID,
	}
	if s.State == cloud.StatusError {
		t.ErrorMessage = errExportFailed
	}
	return t
}

// State converts a cloud task status to the API's state.
func State(s cloud.Status) cwpexportv1.ExportTaskState {
	switch s {
	case cloud.StatusPending:
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_PENDING
	case cloud.StatusFinished:
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED
	case cloud.StatusError:
		return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR
	}
	return cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_UNSPECIFIED
}

// Timestamp converts a time to the API's, nil for the zero time.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	// In microseconds, as the registry keeps times: an answer from this
	// process's observation and one from the registry tell the same time.
	return timestamppb.New(t.Truncate(time.Microsecond))
}
