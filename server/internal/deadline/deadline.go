// Package deadline ends waits on the cloud shortly before their caller's
// deadline, so that callers learn why the wait failed.
package deadline

import (
	"context"
	"time"
)

// maxAnswerMargin bounds how much earlier than the caller's deadline a call
// that waits on the cloud gives up.
const maxAnswerMargin = 100 * time.Millisecond

// AnswerBefore bounds a wait by limit and ends it shortly before the
// caller's deadline (a tenth of the time left, at most maxAnswerMargin), so
// that the caller receives the reason of the wait's failure (say, the cloud's
// last error) rather than its own DeadlineExceeded.
func AnswerBefore(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok {
		margin := min(time.Until(d)/10, maxAnswerMargin)
		if margin > 0 && time.Until(d)-margin < limit {
			return context.WithDeadline(ctx, d.Add(-margin))
		}
	}
	return context.WithTimeout(ctx, limit)
}
