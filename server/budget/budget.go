// Package budget paces the service's calls to one cloud action within the
// cloud's per-account quota, and adapts the pace when the quota is shared.
// It owns the budget as one concept:
//
//   - Engine, the interface of one action's budget, and DefaultRate;
//   - Local, the engine of one process (this file);
//   - Admission and Shares, which admit an export into the budget for a
//     caller (with answers it can act on) and give each caller its share;
//   - Window, the per-second count of the calls made, and Status, what
//     GetBudgetStatus reports.
//
// The fleet's engine, shared by the replicas of one PostgreSQL database,
// lives in package fleet (fleet.Budget) for now: it is built on the
// fleet's schema, connection and liveness, and is being reworked there;
// the rest of the service reaches it only through Engine.
//
// A Local budget is a token bucket (golang.org/x/time/rate) at an effective
// rate that starts at the configured rate. When the cloud answers
// RequestLimitExceeded, other programs are using the account's quota too:
// the effective rate drops to a fraction of the calls the cloud admitted in
// the last second, and then grows back along CUBIC's window curve (RFC 9438,
// section 4.2): slowly near the rate at which the cloud refused, faster
// beyond it, so the service settles just under what the others leave and
// still finds the whole quota again when it frees up.
//
// Each call also starts at least 1/rate after the previous one: a token
// bucket grants on its schedule even when a wait ended late (a busy machine
// wakes timers late), and the cloud counts calls per 1-second window.
//
// A wait made on behalf of a traced call is a span of its own, a child of
// the call's span, named after the action the budget paces.
package budget

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// Defaults of the adaptation.
const (
	// DefaultBackoff is the fraction of the calls the cloud admitted in the
	// last second that the rate drops to after a refusal.
	DefaultBackoff = 0.9
	// DefaultRecovery is how long the rate takes to grow back to where the
	// cloud refused (CUBIC's K); past it the rate grows faster.
	DefaultRecovery = 5 * time.Second
	// DefaultHold is the least time between two decreases: the refusals of
	// calls already under way do not count twice.
	DefaultHold = time.Second
)

// Options configure a Local budget. Zero values take the defaults named.
type Options struct {
	// Rate is the configured rate, in calls per second; required.
	Rate float64
	// Min is the least effective rate; default Rate/8. Refusals the cloud
	// makes whatever the rate (an error storm) must not stall the service.
	Min float64
	// Backoff, Recovery and Hold tune the adaptation (see the defaults).
	Backoff  float64
	Recovery time.Duration
	Hold     time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Action names the cloud action the budget paces in its spans
	// ("budget ExportTasks"); default "cloud".
	Action string
	// TracerProvider makes the spans of waits; nil means the global one.
	TracerProvider trace.TracerProvider
}

// Local is one action's budget in one process. It is safe for concurrent
// use.
type Local struct {
	opts   Options
	lim    *rate.Limiter
	tracer trace.Tracer

	mu sync.Mutex
	// last is when the last call started (for the spacing).
	last time.Time
	// The adaptation: the rate was cut to base at cut, from a ceiling
	// where the cloud refused; zero cut means never cut.
	base, ceiling float64
	cut           time.Time
	// starts and refusals in the last second, oldest first.
	starts, refusals []time.Time
	throttles        int64
}

// New returns a budget at opts.Rate.
func New(opts Options) (*Local, error) {
	if opts.Rate <= 0 || math.IsInf(opts.Rate, 0) || math.IsNaN(opts.Rate) {
		return nil, fmt.Errorf("budget: the rate must be a positive number of calls per second, got %v", opts.Rate)
	}
	if opts.Min <= 0 {
		opts.Min = opts.Rate / 8
	}
	opts.Min = min(opts.Min, opts.Rate)
	if opts.Backoff <= 0 || opts.Backoff >= 1 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Recovery <= 0 {
		opts.Recovery = DefaultRecovery
	}
	if opts.Hold <= 0 {
		opts.Hold = DefaultHold
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Action == "" {
		opts.Action = "cloud"
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	return &Local{opts: opts, lim: rate.NewLimiter(rate.Limit(opts.Rate), 1), tracer: opts.TracerProvider.Tracer(TracerName)}, nil
}

// MustNew is New for rates known to be valid.
func MustNew(opts Options) *Local {
	b, err := New(opts)
	if err != nil {
		panic(err)
	}
	return b
}

// LateError says that the budget cannot start a call before the latest
// time the caller allowed; Delay is how long the call would have waited.
type LateError struct {
	Delay time.Duration
}

// Error says how long the call would have waited.
func (e *LateError) Error() string {
	return fmt.Sprintf("budget: the next start is %s away, later than the caller allows", e.Delay.Round(time.Millisecond))
}

// Wait blocks until a call may start, or until ctx ends (then it returns
// ctx's error and the call must not be made).
func (b *Local) Wait(ctx context.Context) error {
	_, err := b.Admit(ctx, time.Time{})
	return err
}

// Admit blocks until a call may start and returns how long it waited. When
// the call must wait, latest is set and the call could not start by then,
// it returns a *LateError at once, without waiting and without using the
// budget. It returns ctx's error if ctx ends first.
//
// When ctx carries a span, the wait is a child span "budget <action>" with
// the time waited (cwpexport.budget.waited_ms) and, when the call may not
// start, the reason as its error status. A wait outside any span (the
// tracker's scheduler, which picks the task after the wait) makes none:
// a root span per wait would follow nothing.
func (b *Local) Admit(ctx context.Context, latest time.Time) (time.Duration, error) {
	return TraceWait(ctx, b.tracer, b.opts.Action, b.Rate(), func(ctx context.Context) (time.Duration, error) {
		return b.admit(ctx, latest)
	})
}

// TraceWait runs admit, a budget's wait for a call to action at rate, as
// the child span "budget <action>" of ctx's span, with the time waited
// (cwpexport.budget.waited_ms) and, when the call may not start, the
// reason as its error status. A wait outside any span (a scheduler, which
// picks the task after the wait) makes none: a root span per wait would
// follow nothing.
func TraceWait(ctx context.Context, tracer trace.Tracer, action string, rate float64, admit func(context.Context) (time.Duration, error)) (time.Duration, error) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return admit(ctx)
	}
	ctx, span := tracer.Start(ctx, "budget "+action, trace.WithAttributes(
		attribute.String(AttrAction, action),
		attribute.Float64(AttrRate, rate),
	))
	defer span.End()
	waited, err := admit(ctx)
	span.SetAttributes(attribute.Float64(AttrWaitedMillis, float64(waited.Microseconds())/1000))
	if err != nil {
		var late *LateError
		if errors.As(err, &late) {
			span.SetAttributes(attribute.Float64(AttrLateMillis, float64(late.Delay.Microseconds())/1000))
		}
		span.SetStatus(otelcodes.Error, err.Error())
	}
	return waited, err
}

// Attributes of the budget's spans.
const (
	// AttrAction is the cloud action the budget paces.
	AttrAction = "cwp.action"
	// AttrRate is the budget's effective rate when the wait began, in
	// calls per second.
	AttrRate = "cwpexport.budget.rate"
	// AttrWaitedMillis is how long the call waited, in milliseconds.
	AttrWaitedMillis = "cwpexport.budget.waited_ms"
	// AttrLateMillis is, for a call refused because it could not start in
	// time, how long it would have waited.
	AttrLateMillis = "cwpexport.budget.would_wait_ms"
)

// TracerName is the instrumentation scope of the budgets' spans.
const TracerName = "github.com/cwpexport/cwpexport/server/budget"

func (b *Local) admit(ctx context.Context, latest time.Time) (time.Duration, error) {
	now := b.opts.Now()
	b.adapt(now)
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return 0, errors.New("budget: the limiter cannot grant a call")
	}
	delay := r.DelayFrom(now)
	if delay > 0 && !latest.IsZero() && now.Add(delay).After(latest) {
		r.CancelAt(now)
		return 0, &LateError{Delay: delay}
	}
	if err := Sleep(ctx, delay); err != nil {
		r.Cancel()
		return 0, err
	}
	if err := b.space(ctx); err != nil {
		return 0, err
	}
	return b.opts.Now().Sub(now), nil
}

// space holds the call until 1/rate after the previous call's start. It
// sleeps without holding the lock, so that other callers can give up when
// their deadline passes.
func (b *Local) space(ctx context.Context) error {
	_, err := b.spaceBy(ctx, time.Time{})
	return err
}

// spaceBy is space with a latest start: a call that could not start by
// latest fails at once with a *LateError. The gap follows the rate now,
// not the rate when the call joined the queue: calls queued before a cut
// slow down with it, and speed up again as the rate recovers.
func (b *Local) spaceBy(ctx context.Context, latest time.Time) (time.Duration, error) {
	began := b.opts.Now()
	for {
		b.mu.Lock()
		now := b.opts.Now()
		r := b.rateLocked(now)
		if !b.cut.IsZero() && math.Abs(r-float64(b.lim.Limit())) > 1e-3 {
			b.lim.SetLimitAt(now, rate.Limit(r))
		}
		d := b.last.Add(time.Duration(float64(time.Second) / r)).Sub(now)
		if d <= 0 {
			b.last = now
			b.starts = append(trim(b.starts, now), now)
			b.mu.Unlock()
			return now.Sub(began), nil
		}
		b.mu.Unlock()
		if !latest.IsZero() && now.Add(d).After(latest) {
			return 0, &LateError{Delay: d}
		}
		if err := Sleep(ctx, d); err != nil {
			return 0, err
		}
	}
}

// Again waits until a call the cloud refused for its rate limit may be
// made again, and returns how long it waited. The call keeps its place:
// its turn in the bucket was spent on the refused attempt, so it waits only
// for the spacing after the previous start, not behind every call queued
// since. latest is as in Admit.
func (b *Local) Again(ctx context.Context, latest time.Time) (time.Duration, error) {
	return TraceWait(ctx, b.tracer, b.opts.Action, b.Rate(), func(ctx context.Context) (time.Duration, error) {
		return b.spaceBy(ctx, latest)
	})
}

// Sleep waits d, or until ctx ends (its error then). The fleet's budget
// and schedule wait with it too.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Throttled tells the budget that the cloud refused a call for its rate
// limit (RequestLimitExceeded): someone else uses the account's quota too.
func (b *Local) Throttled() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Now()
	b.throttles++
	b.refusals = append(trim(b.refusals, now), now)
	if !b.cut.IsZero() && now.Sub(b.cut) < b.opts.Hold {
		return
	}
	admitted := float64(len(trim(b.starts, now)) - len(b.refusals))
	current := b.rateLocked(now)
	ceiling := min(current, max(admitted, b.opts.Min))
	b.base = max(b.opts.Min, ceiling*b.opts.Backoff)
	b.ceiling, b.cut = ceiling, now
	b.lim.SetLimitAt(now, rate.Limit(b.base))
}

// trim drops the times older than one second before now.
func trim(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Second {
		i++
	}
	return ts[i:]
}

// adapt moves the limiter to the rate the adaptation gives for now.
func (b *Local) adapt(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut.IsZero() {
		return
	}
	r := b.rateLocked(now)
	if r >= b.opts.Rate {
		b.cut = time.Time{} // fully recovered
	}
	if math.Abs(r-float64(b.lim.Limit())) > 1e-3 {
		b.lim.SetLimitAt(now, rate.Limit(r))
	}
}

// rateLocked is CUBIC's curve from base (at the cut) through ceiling (at
// Recovery after it), capped at the configured rate.
func (b *Local) rateLocked(now time.Time) float64 {
	if b.cut.IsZero() {
		return b.opts.Rate
	}
	k := b.opts.Recovery.Seconds()
	// At the floor the cut may not lower the rate at all; the curve must
	// still lead back up.
	delta := max(b.ceiling-b.base, b.ceiling*(1-b.opts.Backoff))
	c := delta / (k * k * k)
	t := now.Sub(b.cut).Seconds() - k
	return min(b.opts.Rate, max(b.opts.Min, b.ceiling+c*t*t*t))
}

// Rate is the effective rate now, in calls per second.
func (b *Local) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rateLocked(b.opts.Now())
}

// Configured is the configured rate, in calls per second.
func (b *Local) Configured() float64 { return b.opts.Rate }

// Throttles counts the refusals reported since the budget was made.
func (b *Local) Throttles() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.throttles
}
