package tracker

import (
	"context"
	"sync"
	"time"
)

// await waits for an observation after the since'th, a refusal, or the end
// of ctx (then the last transient failure is the error, if any). With
// patience, it waits that long at most when it has something to answer:
// the state last observed, or the last poll's failure.
func (w *Watch) await(ctx context.Context, since uint64, patience time.Duration) (Snapshot, error) {
	var impatient <-chan time.Time
	if patience > 0 {
		timer := time.NewTimer(patience)
		defer timer.Stop()
		impatient = timer.C
	}
	for {
		s, observations, polled := w.afterPoll()
		switch {
		case s.Err != nil:
			return s, s.Err
		case observations > since:
			return s, nil
		}
		select {
		case <-polled:
		case <-impatient:
			impatient = nil
			switch s, _, _ = w.afterPoll(); {
			case s.State != "":
				return s, nil // as last observed, s.Observed
			case s.LastErr != nil:
				return s, s.LastErr
			}
		case <-ctx.Done():
			s, _, _ = w.afterPoll()
			if s.LastErr != nil {
				return s, s.LastErr
			}
			return s, ctx.Err()
		}
	}
}

// Watch is one caller's interest in a task.
type Watch struct {
	t    *Tracker
	e    *entry
	once sync.Once
}

// Current returns the latest snapshot and a channel closed at the next
// change of the task's state, download URL or refusal.
func (w *Watch) Current() (Snapshot, <-chan struct{}) {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.snapshotLocked(w.e), w.e.changed
}

// afterPoll returns the latest snapshot, the number of observations so
// far, and a channel closed after the next poll.
func (w *Watch) afterPoll() (Snapshot, uint64, <-chan struct{}) {
	w.t.mu.Lock()
	defer w.t.mu.Unlock()
	return w.t.snapshotLocked(w.e), w.e.observations, w.e.polled
}

// Close ends the interest; the last one to leave stops the polling.
func (w *Watch) Close() {
	w.once.Do(func() {
		t := w.t
		t.mu.Lock()
		defer t.mu.Unlock()
		w.e.watchers--
		t.interestLocked(w.e, t.sched.Now())
	})
}
