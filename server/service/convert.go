package service

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// progress reports what the service observed; watchStart is zero outside a
// watch.
func (s *Service) progress(snap tracker.Snapshot, watchStart time.Time) *cwpexportv1.Progress {
	now := s.opts.Now()
	p := &cwpexportv1.Progress{
		PollCount:               snap.Polls,
		LastPollTime:            exports.Timestamp(snap.LastPoll),
		NextPollTime:            exports.Timestamp(snap.NextPoll),
		ConsecutivePollFailures: int32(snap.Failures),
		PendingTasks:            int32(snap.Pending),
		ReadBudgetRate:          snap.Rate,
	}
	if !snap.Created.IsZero() {
		p.TaskElapsed = durationpb.New(now.Sub(snap.Created))
	}
	if !watchStart.IsZero() {
		p.WatchElapsed = durationpb.New(now.Sub(watchStart))
	}
	if snap.LastErr != nil {
		p.LastPollError = apierror.CloudMessage(snap.LastErr)
	}
	return p
}

// toParameters is an export request's parameters as the registry records
// them.
func toParameters(r exportRequest) *cwpexportv1.ExportParameters {
	return &cwpexportv1.ExportParameters{Filters: r.GetFilters(), IsHistory: r.GetIsHistory(), Tags: r.GetTags(), ExportMonth: r.GetExportMonth()}
}
