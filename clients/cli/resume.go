package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/apierror"
)

// DefaultReconnectTimeout is how long, by default, a broken watch, download
// or creation is tried again before the CLI gives up.
const DefaultReconnectTimeout = 2 * time.Minute

// endedEarly is a watch stream that ended cleanly before FINISHED or ERROR,
// as when a replica stops between two messages.
type endedEarly struct{ taskID string }

func (e endedEarly) Error() string {
	return fmt.Sprintf("the watch of task %s ended before the task did", e.taskID)
}

// retrier paces the retries of calls that ended Unavailable: jittered
// exponential backoff, for at most limit from the first failure of an
// outage. A watch ends the outage with each message it receives (progress);
// a download restarts from its beginning, so its partial bytes do not count.
type retrier struct {
	limit   time.Duration
	reached *reachedService
	backoff backoff.ExponentialBackOff
	began   time.Time
	attempt int
}

func (a *app) newRetrier() *retrier {
	return &retrier{
		limit:   a.reconnectTimeout,
		reached: a.reached,
		backoff: backoff.ExponentialBackOff{InitialInterval: 250 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second},
	}
}

// progress ends an outage: the next failure starts a new one.
func (r *retrier) progress() { r.began, r.attempt = time.Time{}, 0 }

// next returns how long to wait before trying again after err, or false
// when err is not worth a retry or the outage has lasted too long.
func (r *retrier) next(err error) (time.Duration, bool) {
	if r.limit <= 0 || !r.retryable(err) {
		return 0, false
	}
	if r.began.IsZero() {
		r.began = time.Now()
		r.backoff.Reset()
	}
	d := max(r.backoff.NextBackOff(), retryDelay(err))
	if time.Since(r.began)+d > r.limit {
		return 0, false
	}
	r.attempt++
	return d, true
}

// gaveUp says why the retries stopped, when there were any.
func (r *retrier) gaveUp() string {
	if r.attempt == 0 {
		return ""
	}
	return fmt.Sprintf("gave up after %d attempt(s) in %s", r.attempt+1, time.Since(r.began).Round(100*time.Millisecond))
}

// retryable reports whether err says the service, or the replica a call
// went to, is not there now: Unavailable, or a watch that ended early. An
// Unavailable before the service ever answered means there is no service
// to wait for: the CLI exits at once, as it always has.
func (r *retrier) retryable(err error) bool {
	var early endedEarly
	if errors.As(err, &early) {
		return true
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return false
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	return r.reached.answered.Load() || apierror.Info(st.Err()) != nil
}

// retryDelay is the delay the service asked for (google.rpc.RetryInfo), or 0.
func retryDelay(err error) time.Duration {
	d, _ := apierror.RetryDelay(err)
	return d
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// briefly renders an error in one line for a progress notice.
func briefly(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}
