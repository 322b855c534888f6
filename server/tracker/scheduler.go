package tracker

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// Tier is how strongly the tracker wants a task polled; a lower tier is
// polled first.
type Tier int

// The tiers.
const (
	// TierUrgent: a caller waits for a first or fresh observation.
	TierUrgent Tier = iota
	// TierWatched: watch streams follow the task.
	TierWatched
	// TierBackground: only background interest (the registry follows it).
	TierBackground
	// TierNone: not wanted.
	TierNone
)

// Scheduler decides when tasks are polled and makes the polls.
type Scheduler interface {
	// Want sets how strongly this process wants task id polled; TierNone
	// withdraws its interest. It must not block on the network.
	Want(id int64, tier Tier)
	// Created tells that task id was created at at: the cloud's answer
	// said it is pending, so no poll is needed to know that.
	Created(id int64, at time.Time)
	// Forget drops what the scheduler keeps of a task nobody wants.
	Forget(id int64)
	// Next returns when task id will next be polled (zero when it is not
	// scheduled) and how many tasks share the read budget.
	Next(id int64) (time.Time, int)
	// Lookup returns the latest observation of task id that another
	// process shares and that is fresh enough to answer a read, if any.
	Lookup(ctx context.Context, id int64) (Poll, bool)
	// Rate is the read budget's rate now, in polls per second.
	Rate() float64
	// Run polls due tasks until ctx ends, handing report every observation:
	// of this process's polls, and of other processes' polls of tasks this
	// process wants.
	Run(ctx context.Context, report func(Poll))
	// Now is the schedule's clock, the one its polls' times are read from
	// (the database's, for a fleet): the tracker stamps and compares with
	// it alone.
	Now() time.Time
}

// Poll is what one poll of a task observed.
type Poll struct {
	TaskID int64
	// Local: this process made the poll (and records it: metrics, the
	// registry).
	Local bool
	// Status is the task's state as last observed: the cloud's answer to
	// this poll, or (when this poll failed) an earlier one's, if known.
	Status cloud.TaskStatus
	// Transient is this poll's failure, worth retrying; Err a refusal that
	// ends the task for its watchers.
	Transient, Err error
	// At is when the poll ended; Observed when the cloud last answered
	// about the task and Changed when its state last changed, when the
	// scheduler knows them (a shared schedule does).
	At, Observed, Changed time.Time
	// Polls is the number of polls of the task so far (by every process
	// sharing the schedule); Failures the polls in a row that failed.
	Polls    int64
	Failures int
	// Gen is the generation of the task's schedule: a schedule that forgot
	// the task and took it up again counts Polls from 0 under a higher
	// generation. Generations never go back, so (Gen, Polls) orders the
	// polls of a task whatever the clocks.
	Gen int64
	// NextPoll is when the task is next polled (zero: not scheduled);
	// Pending, how many tasks share the read budget.
	NextPoll time.Time
	Pending  int
	// Settled: the task's first terminal observation; Change: the poll
	// changed what watchers are told (state, download URL or refusal).
	Settled, Change bool
	// Span is the poll's span, when it was traced.
	Span trace.SpanContext
}

// snapshot is what a poll alone says of its task.
func (p Poll) snapshot() Snapshot {
	s := Snapshot{TaskID: p.TaskID, LastPoll: p.At, Polls: p.Polls, Failures: p.Failures, NextPoll: p.NextPoll, Err: p.Err, LastErr: p.Err}
	if p.Err == nil && p.Status.Status != "" {
		s.State, s.DownloadURL, s.RequestID = p.Status.Status, p.Status.DownloadURL, p.Status.RequestID
		s.Observed, s.Changed = latest(p.Observed, p.At), p.Changed
	}
	if rid := requestID(p.Err); rid != "" {
		s.RequestID = rid
	}
	return s
}
