package exports

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/taskstore"
)

// Record returns what the registry holds of a task, from the cache when it
// can; a task the registry does not know has Recorded false.
func (s *Saga) Record(ctx context.Context, id int64) (Record, error) {
	now := s.opts.Now()
	if info, ok := s.cached(id, now); ok {
		return info, nil
	}
	row, found, err := s.opts.Registry.Get(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if !found {
		s.records.AddAbsent(id, now) // not created through this service, yet
		return Record{}, nil
	}
	return s.remember(row), nil
}

// absentFor is how long the registry's answer that it does not know a task
// stands: another replica sharing the registry may record the task in the
// meantime.
const absentFor = time.Second

// Apply adds what the registry knows of a task (its parameters, request id,
// creator and creation time) to an answer built from the tracker.
func (r Record) Apply(t *cwpexportv1.ExportTask) *cwpexportv1.ExportTask {
	if r.Recorded {
		t.Parameters, t.RequestId, t.Creator, t.CreateTime = r.Params, r.RequestID, r.Creator, r.Created
	}
	return t
}

// Record is what the registry holds of a task and never changes.
type Record struct {
	// Recorded is false when the registry does not know the task (it was
	// not created through this service); the other fields are then zero.
	Recorded bool
	// Params, RequestID, Creator and Created are the task's creation.
	Params    *cwpexportv1.ExportParameters
	RequestID string
	Creator   string
	Created   *timestamppb.Timestamp
	// Final is the task as recorded once it ended (FINISHED or ERROR,
	// which never change again); nil before.
	Final *cwpexportv1.ExportTask
	// absentSince is when the registry said it does not know the task
	// (Recorded false).
	absentSince time.Time
}

// remember caches the unchanging part of a registry row.
func (s *Saga) remember(row taskstore.Task) Record {
	rec := FromRow(row)
	info := Record{Recorded: true, Params: rec.GetParameters(), RequestID: rec.GetRequestId(), Creator: rec.GetCreator(), Created: rec.GetCreateTime()}
	if row.Terminal() {
		info.Final = rec
	}
	s.records.Add(row.TaskID, info)
	return info
}

// cached returns the record of task id that reads may use without asking
// the registry.
func (s *Saga) cached(id int64, now time.Time) (Record, bool) {
	info, ok := s.records.Get(id)
	return info, ok && (info.Recorded || now.Sub(info.absentSince) < absentFor)
}

// Cached reports whether Record would answer about task id from the cache.
func (s *Saga) Cached(id int64) bool {
	_, ok := s.cached(id, s.opts.Now())
	return ok
}

// Reread reads what the registry holds of task id, past the cache (which it
// then updates); a task the registry does not know has Recorded false.
func (s *Saga) Reread(ctx context.Context, id int64) (Record, error) {
	row, found, err := s.opts.Registry.Get(ctx, id)
	if err != nil || !found {
		return Record{}, err
	}
	return s.remember(row), nil
}

// Forget drops what the cache holds of a task, so that the next read takes
// it from the registry again (its final state is being recorded).
func (s *Saga) Forget(id int64) { s.records.Remove(id) }
