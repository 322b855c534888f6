package cloud

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Default retry pacing for requests that never reached the cloud.
const (
	DefaultRetryInitial  = 100 * time.Millisecond
	DefaultRetryMax      = 2 * time.Second
	DefaultRetryMaxTries = 5
)

// NotSent reports whether err proves that the request never reached the
// cloud: the connection could not be set up (a dial error such as
// "connection refused", or a failed name lookup), so no byte of the request
// was sent. Only such failures make a retry of ExportLicenseDetail safe; any
// later failure (a reset, a timeout, an unreadable answer) may follow a task
// the cloud did create.
func NotSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// retry runs call until it succeeds, fails with an error retryable does not
// accept, runs out of tries, or the next attempt would start after ctx's
// deadline. Delays grow exponentially with jitter; notify is told of each
// retry before its delay.
func retry[T any](ctx context.Context, cfg *Config, retryable func(error) bool, notify backoff.Notify, call func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = cfg.RetryInitial, cfg.RetryMax
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxTries(uint(cfg.RetryMaxTries)), backoff.WithNotify(notify)}
	if d, ok := ctx.Deadline(); ok {
		// Stop with the last real error rather than a context error when
		// the wait would outlast the caller.
		opts = append(opts, backoff.WithMaxElapsedTime(max(time.Until(d), time.Nanosecond)))
	}
	return backoff.Retry(ctx, func() (T, error) {
		v, err := call()
		if err != nil && !retryable(err) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, opts...)
}
