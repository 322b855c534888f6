package exports

import (
	"context"
	"fmt"
	"time"

	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// Polled records a poll's outcome in the registry (tracker.Observer), after
// telling the tracker's other observer; the tracker calls it on every
// replica that learns a task's ending, and the write is idempotent. A task
// whose ending is recorded is no longer followed; a task the cloud no
// longer knows ends in ERROR. A failed write leaves the task followed: the
// next follow pass reports the ending again, and the write is retried.
func (s *Saga) Polled(snap tracker.Snapshot, settled bool) {
	if s.next != nil {
		s.next.Polled(snap, settled)
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	var err error
	switch {
	case snap.Err != nil && cloud.KindOf(snap.Err) == cloud.KindNotFound:
		err = s.opts.Registry.Lost(ctx, snap.TaskID, LostReason(snap.Err), snap.LastPoll)
		if err == nil {
			s.tracker.Unfollow(snap.TaskID)
		}
	case snap.Err != nil:
		// The service's own trouble (credentials, permissions): the task
		// is followed again by the next registry pass.
	default:
		err = s.opts.Registry.Observe(ctx, taskstore.Observation{TaskID: snap.TaskID, State: string(snap.State), DownloadURL: snap.DownloadURL,
			RequestID: snap.RequestID, Observed: snap.Observed, Changed: snap.Changed})
		if snap.Terminal() && err == nil {
			s.tracker.Unfollow(snap.TaskID)
		}
	}
	if snap.Terminal() {
		// The record's final state is read again from the registry.
		s.records.Remove(snap.TaskID)
	}
	if err != nil {
		s.opts.Logger.Error("record an observation in the registry; retried at the next follow pass", "task_id", snap.TaskID, "err", err)
	}
}

// LostReason is why a task the cloud answers ResourceNotFound for ended.
func LostReason(err error) string {
	return "the cloud no longer knows the task (" + apierror.CloudMessage(err) + ")"
}

// Run keeps the registry's unfinished tasks followed until ctx ends:
// at once (resuming after a restart) and then every FollowPass. A task still
// not terminal MaxFollowAge after its creation is abandoned, with the reason
// recorded.
func (s *Saga) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.FollowPass)
	defer t.Stop()
	for {
		s.followPass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Saga) followPass(ctx context.Context) {
	rows, err := s.opts.Registry.Following(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.Error("read the registry's unfinished tasks", "err", err)
		}
		return
	}
	now := s.tracker.Now() // the clock r.Created was read from
	for _, r := range rows {
		if age := now.Sub(r.Created); age > s.opts.MaxFollowAge {
			reason := fmt.Sprintf("still %s after %s, longer than the service follows a task (%s)",
				apierror.OrDefault(r.State, "unobserved"), age.Round(time.Second), s.opts.MaxFollowAge)
			if err := s.opts.Registry.Abandon(ctx, r.TaskID, reason); err != nil {
				s.opts.Logger.Error("abandon a task", "task_id", r.TaskID, "err", err)
				continue
			}
			s.tracker.Unfollow(r.TaskID)
			s.opts.Logger.Warn("no longer following a task", "task_id", r.TaskID, "reason", reason)
			continue
		}
		s.tracker.Follow(r.TaskID, r.Created)
	}
}
