package fleet

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cwpexport/cwpexport/server/budget"
)

// Defaults of the slots' spacing. A replica that would start a call more
// than Lateness (L) after its slot drops the slot instead, and slots are
// (1 s + L + Jitter)/R apart: then R + 1 consecutive starts span at least
// 1 s + J, whatever the replicas and their timers do, so that no 1-second
// window at the cloud holds more than R calls as long as the time from a
// call's start to its arrival varies by less than J (J, the margin for the
// client's and the network's own delays). The fleet's best is R/(1 + L + J),
// 19.05 calls per second at R = 20 with the defaults.
const (
	DefaultLateness = 25 * time.Millisecond
	DefaultJitter   = 25 * time.Millisecond
)

// BudgetOptions configure one action's budget for the fleet.
type BudgetOptions struct {
	// Action is the cloud action ("ExportTasks", "ExportLicenseDetail").
	Action string
	// Rate is the fleet's configured rate, in calls per second; required.
	Rate float64
	// Lateness and Jitter: see DefaultLateness and DefaultJitter.
	Lateness, Jitter time.Duration
	// Min, Backoff, Recovery and Hold adapt the rate to a shared quota as
	// package budget does (see budget.Options); zero values take its
	// defaults.
	Min      float64
	Backoff  float64
	Recovery time.Duration
	Hold     time.Duration
	// TracerProvider makes the spans of waits; nil means the global one.
	TracerProvider trace.TracerProvider
}

func (o *BudgetOptions) defaults() error {
	if o.Rate <= 0 || math.IsInf(o.Rate, 0) || math.IsNaN(o.Rate) {
		return errors.New("fleet: the rate must be a positive number of calls per second")
	}
	if o.Lateness <= 0 {
		o.Lateness = DefaultLateness
	}
	if o.Jitter <= 0 {
		o.Jitter = DefaultJitter
	}
	if o.Min <= 0 {
		o.Min = o.Rate / 8
	}
	if o.Backoff <= 0 || o.Backoff >= 1 {
		o.Backoff = budget.DefaultBackoff
	}
	if o.Recovery <= 0 {
		o.Recovery = budget.DefaultRecovery
	}
	if o.Hold <= 0 {
		o.Hold = budget.DefaultHold
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	return nil
}

// Budget is one cloud action's budget, shared by every replica: start slots
// handed out by the action's row in fleet_budget, one database round trip
// per call. It is safe for concurrent use.
type Budget struct {
	f    *Fleet
	opts BudgetOptions
	// rate is the effective rate last read (float64 bits); throttles, the
	// fleet's count of refusals last read; read, when (unix nanoseconds).
	rate      atomic.Uint64
	throttles atomic.Int64
	read      atomic.Int64
	tracer    trace.Tracer
}

// Budget returns the fleet's budget of an action.
func (f *Fleet) Budget(opts BudgetOptions) (*Budget, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	b := &Budget{f: f, opts: opts, tracer: opts.TracerProvider.Tracer(budget.TracerName)}
	b.rate.Store(math.Float64bits(opts.Rate))
	return b, nil
}

// spacing is what a slot adds to one second, the margins L + J, in seconds:
// slots are (1 + spacing)/rate apart.
func (b *Budget) spacing() float64 { return (b.opts.Lateness + b.opts.Jitter).Seconds() }

// rateArgs are the adaptation's arguments of fleet_budget_rate, after cut_at,
// base and ceiling.
func (b *Budget) rateArgs() []any {
	return []any{b.opts.Rate, b.opts.Min, b.opts.Backoff, b.opts.Recovery.Seconds()}
}

// takeSlot takes the next start slot, unless it is more than maxWait away
// ($7 < 0: any). The slot and the database's now are computed in the row's
// UPDATE, after its lock: a statement that waited for the lock behind
// other replicas' learns the time after the wait, so that the replica's
// wait for the slot is not short by it. No row: refused (see slotDelay).
const takeSlot = `
UPDATE fleet_budget SET
  last_gap = (1 + $6::float8) / fleet_budget_rate(cut_at, base, ceiling, $2, $3, $4, $5, clock_timestamp()),
  next_slot = greatest(next_slot, clock_timestamp())
    + make_interval(secs => (1 + $6::float8) / fleet_budget_rate(cut_at, base, ceiling, $2, $3, $4, $5, clock_timestamp()))
WHERE action = $1 AND ($7::float8 < 0 OR next_slot <= clock_timestamp() + make_interval(secs => $7::float8))
RETURNING next_slot - make_interval(secs => last_gap), clock_timestamp(), (1 + $6::float8) / last_gap, throttles`

// slotDelay is how long until the next slot, for a call refused by
// takeSlot.
const slotDelay = `SELECT extract(epoch FROM greatest(next_slot, clock_timestamp()) - clock_timestamp())::float8 FROM fleet_budget WHERE action = $1`

// Admit waits until a call may start and returns how long it waited. A call
// that would have to wait past latest fails at once with a
// *budget.LateError, using nothing of the budget. While the database cannot
// be reached it fails with an error wrapping ErrUnavailable: no call starts.
// The wait is traced as budget.TraceWait says.
func (b *Budget) Admit(ctx context.Context, latest time.Time) (time.Duration, error) {
	return budget.TraceWait(ctx, b.tracer, b.opts.Action, b.Rate(), func(ctx context.Context) (time.Duration, error) {
		return b.admit(ctx, latest)
	})
}

func (b *Budget) admit(ctx context.Context, latest time.Time) (time.Duration, error) {
	began := time.Now()
	for {
		maxWait := -1.0
		if !latest.IsZero() {
			maxWait = max(0, time.Until(latest).Seconds())
		}
		var (
			slot, now time.Time
			rate      float64
			throttles int64
		)
		args := append([]any{b.opts.Action}, b.rateArgs()...)
		args = append(args, b.spacing(), maxWait)
		err := b.f.pool.QueryRow(ctx, takeSlot, args...).Scan(&slot, &now, &rate, &throttles)
		if errors.Is(err, pgx.ErrNoRows) {
			var secs float64
			err = b.f.pool.QueryRow(ctx, slotDelay, b.opts.Action).Scan(&secs)
			if err := b.f.check(ctx, err); err != nil {
				return 0, err
			}
			return 0, &budget.LateError{Delay: time.Duration(secs * float64(time.Second))}
		}
		if err := b.f.check(ctx, err); err != nil {
			return 0, err
		}
		received := time.Now()
		b.store(rate, throttles)
		wait := slot.Sub(now)
		// The slot is in the database's time; the answer came after its now.
		target := received.Add(wait)
		if err := budget.Sleep(ctx, time.Until(target)); err != nil {
			return 0, err
		}
		if late := time.Since(target); late <= b.opts.Lateness {
			return time.Since(began), nil
		}
		// Woken too late: starting now could crowd the next slot's call
		// into one window with this one. Take another slot.
	}
}

// Again waits until a call the cloud refused for its rate limit may be
// made again: in the fleet's queue of slots, like any call.
func (b *Budget) Again(ctx context.Context, latest time.Time) (time.Duration, error) {
	return b.Admit(ctx, latest)
}

// Wait blocks until a call may start, or ctx ends.
func (b *Budget) Wait(ctx context.Context) error {
	_, err := b.Admit(ctx, time.Time{})
	return err
}

// throttle counts a refusal and cuts the rate, unless a replica did within
// the hold: to Backoff × the rate then, and CUBIC's curve brings it back.
const throttle = `
WITH n AS (SELECT clock_timestamp() AS now),
cur AS (
  SELECT fleet_budget_rate(cut_at, base, ceiling, $2, $3, $4, $5, n.now) AS rate,
         cut_at IS NULL OR cut_at < n.now - make_interval(secs => $6::float8) AS cut
  FROM fleet_budget, n WHERE action = $1 FOR UPDATE
)
UPDATE fleet_budget b SET throttles = b.throttles + 1,
  ceiling = CASE WHEN cur.cut THEN cur.rate ELSE b.ceiling END,
  base    = CASE WHEN cur.cut THEN greatest($3::float8, cur.rate * $4::float8) ELSE b.base END,
  cut_at  = CASE WHEN cur.cut THEN n.now ELSE b.cut_at END
FROM cur, n WHERE b.action = $1
RETURNING fleet_budget_rate(b.cut_at, b.base, b.ceiling, $2, $3, $4, $5, n.now), b.throttles`

// Throttled tells the fleet's budget that the cloud refused a call for its
// rate limit. It does not block the caller on the database.
func (b *Budget) Throttled() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		args := append([]any{b.opts.Action}, b.rateArgs()...)
		args = append(args, b.opts.Hold.Seconds())
		var (
			rate      float64
			throttles int64
		)
		err := b.f.pool.QueryRow(ctx, throttle, args...).Scan(&rate, &throttles)
		if err := b.f.check(ctx, err); err != nil {
			b.f.opts.Logger.Warn("record a throttled call in the fleet's budget", "action", b.opts.Action, "err", err)
			return
		}
		b.store(rate, throttles)
	}()
}

// readRate reads the budget's effective rate and refusals now.
const readRate = `
SELECT fleet_budget_rate(cut_at, base, ceiling, $2, $3, $4, $5, clock_timestamp()), throttles
FROM fleet_budget WHERE action = $1`

// refresh reads the budget's figures, so that Rate follows the fleet's
// cuts and recoveries when this replica makes no calls. Figures a call's
// statement brought within the last second are left as they are.
func (b *Budget) refresh(ctx context.Context) error {
	if time.Since(time.Unix(0, b.read.Load())) < time.Second {
		return nil
	}
	var (
		rate      float64
		throttles int64
	)
	args := append([]any{b.opts.Action}, b.rateArgs()...)
	err := b.f.pool.QueryRow(ctx, readRate, args...).Scan(&rate, &throttles)
	if err := b.f.check(ctx, err); err != nil {
		return err
	}
	b.store(rate, throttles)
	return nil
}

// store keeps the figures a statement read.
func (b *Budget) store(rate float64, throttles int64) {
	b.rate.Store(math.Float64bits(rate))
	b.throttles.Store(throttles)
	b.read.Store(time.Now().UnixNano())
}

// Rate is the fleet's effective rate for the action, as last read.
func (b *Budget) Rate() float64 { return math.Float64frombits(b.rate.Load()) }

// Configured is the fleet's configured rate for the action.
func (b *Budget) Configured() float64 { return b.opts.Rate }

// Throttles is the fleet's count of the action's refusals, as last read.
func (b *Budget) Throttles() int64 { return b.throttles.Load() }

// Follow keeps the budget's figures fresh until ctx ends.
func (b *Budget) Follow(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = b.refresh(ctx)
		}
	}
}
