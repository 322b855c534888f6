package budget

import (
	"context"
	"time"
)

// DefaultRate is the default budget of each cloud action, in calls per
// second: under the cloud's quota (CloudQuota), so that a little is left
// for the clock differences between the service and the cloud.
const DefaultRate = 18

// CloudQuota is the cloud's documented limit of requests per second per
// action and account.
const CloudQuota = 20

// Engine paces one cloud action's calls: Local in one process, or the
// fleet's (package fleet) shared by the replicas of one database. The
// tracker's schedulers need only Wait, Throttled and Rate (tracker.Budget).
type Engine interface {
	// Admit waits until a call may start and returns how long it waited;
	// a call that could not start by latest fails at once with a
	// *LateError.
	Admit(ctx context.Context, latest time.Time) (time.Duration, error)
	// Again is Admit for a call the cloud refused for its rate limit, which
	// keeps its place in the queue where the engine can.
	Again(ctx context.Context, latest time.Time) (time.Duration, error)
	// Wait blocks until a call may start; an error means it must not.
	Wait(ctx context.Context) error
	// Throttled reports a call the cloud refused for its rate limit.
	Throttled()
	// Rate is the calls per second the budget allows now: the configured
	// rate, lowered while the cloud throttles.
	Rate() float64
	// Configured is the configured rate, in calls per second.
	Configured() float64
	// Throttles counts the refusals Throttled was told of.
	Throttles() int64
}

var _ Engine = (*Local)(nil)
