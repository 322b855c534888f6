package budget

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// Admission admits calls a caller waits for into an Engine, answering the
// caller with a status it can act on when the budget cannot start the call
// in time.
type Admission struct {
	// Engine is the budget; required.
	Engine Engine
	// CallTime is the time a call keeps for itself after its wait: a
	// caller whose deadline leaves less is told ResourceExhausted rather
	// than risk a call that outlives it.
	CallTime time.Duration
	// QueueWait bounds a wait when the caller set no earlier deadline (the
	// answers name it).
	QueueWait time.Duration
	// Waited, when set, is told how long each admitted call waited.
	Waited func(time.Duration)
}

// Admit waits for the budget, again for a call the cloud refused
// for its rate. A caller whose deadline (or giveUp, the end of the
// service's queue) would pass first, leaving less than CreateCallTime for
// the cloud call, gets ResourceExhausted at once with a retry hint, rather
// than a wait that cannot succeed.
func (a Admission) Admit(ctx context.Context, giveUp time.Time, again bool) error {
	latest, deadline := giveUp, false
	if d, ok := ctx.Deadline(); ok && d.Add(-a.CallTime).Before(latest) {
		latest, deadline = d.Add(-a.CallTime), true
	}
	wait := a.Engine.Admit
	if again {
		wait = a.Engine.Again
	}
	waited, err := wait(ctx, latest)
	var late *LateError
	switch {
	case errors.As(err, &late):
		return Exhausted(late.Delay, deadline, a.QueueWait)
	case err != nil && ctx.Err() != nil:
		return apierror.Context(ctx, ctx.Err())
	case err != nil:
		return apierror.New(cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED, "the export budget cannot be reached; retry later").Code(codes.Unavailable).Err()
	}
	if a.Waited != nil {
		a.Waited(waited)
	}
	return nil
}

// Exhausted is the ResourceExhausted answer to a call the budget cannot
// start in time: retry is when it could, deadline whether the caller's
// deadline (rather than the queue's bound, queue) was the limit.
func Exhausted(retry time.Duration, deadline bool, queue time.Duration) error {
	msg := fmt.Sprintf("too many exports are queued for the cloud's request budget to start this one before the call's deadline; retry in %s or with a longer deadline", retry.Round(time.Millisecond))
	if !deadline {
		msg = fmt.Sprintf("too many exports are queued for the cloud's request budget to start this one within the %s an export may wait; retry in %s", queue, retry.Round(time.Millisecond))
	}
	return apierror.New(cwpexportv1.ErrorReason_EXPORT_BUDGET_EXHAUSTED, msg).RetryAfter(retry).Err()
}
