package service

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// progress reports what the service observed of t; watchStart is zero
// outside a watch. The task's elapsed time is its age from its creation
// time (the registry's, so it goes on across resumed watches and replicas),
// and stops when its end was observed; an ended task has no next poll.
func (s *Service) progress(snap tracker.Snapshot, t *cwpexportv1.ExportTask, watchStart time.Time) *cwpexportv1.Progress {
	now := s.opts.Tracker.Now() // the clock of snap's times
	p := &cwpexportv1.Progress{
		PollCount:               snap.Polls,
		LastPollTime:            exports.Timestamp(snap.LastPoll),
		ConsecutivePollFailures: int32(snap.Failures),
		PendingTasks:            int32(snap.Pending),
		ReadBudgetRate:          snap.Rate,
	}
	created, end := snap.Created, now
	if t.GetCreateTime() != nil {
		created = t.GetCreateTime().AsTime()
	}
	if ended(t) {
		end = firstSet(t.GetUpdateTime().AsTime(), snap.Changed, snap.Observed, now)
	} else {
		p.NextPollTime = exports.Timestamp(snap.NextPoll)
	}
	if !created.IsZero() {
		p.TaskElapsed = durationpb.New(max(end.Sub(created), 0))
	}
	if !watchStart.IsZero() {
		p.WatchElapsed = durationpb.New(now.Sub(watchStart))
	}
	if snap.LastErr != nil {
		p.LastPollError = apierror.CloudMessage(snap.LastErr)
	}
	return p
}

// ended reports whether t is FINISHED or ERROR.
func ended(t *cwpexportv1.ExportTask) bool {
	switch t.GetState() {
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED, cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR:
		return true
	}
	return false
}

// firstSet returns the first of times after the Unix epoch (an unset
// timestamp reads as the epoch), or the last one.
func firstSet(times ...time.Time) time.Time {
	for _, t := range times[:len(times)-1] {
		if t.After(time.Unix(0, 0)) {
			return t
		}
	}
	return times[len(times)-1]
}

// toParameters is an export request's parameters as the registry records
// them.
func toParameters(r exportRequest) *cwpexportv1.ExportParameters {
	return &cwpexportv1.ExportParameters{Filters: r.GetFilters(), IsHistory: r.GetIsHistory(), Tags: r.GetTags(), ExportMonth: r.GetExportMonth()}
}
