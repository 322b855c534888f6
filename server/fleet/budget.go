package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
// per call, at the rate the fleet shares in that row. It is safe for
// concurrent use.
type Budget struct {
	f    *Fleet
	opts BudgetOptions
	// rate is the effective rate last read (float64 bits); configured, the
	// fleet's configured rate last read; throttles, the fleet's count of
	// refusals last read; read, when (unix nanoseconds).
	rate       atomic.Uint64
	configured atomic.Uint64
	throttles  atomic.Int64
	read       atomic.Int64
	trips      roundTrips
	tracer     trace.Tracer
}

// setRate makes the replica's rate the fleet's, and returns the rate the
// fleet had before (0: none).
const setRate = `
WITH old AS (SELECT action, rate FROM fleet_budget WHERE action = $1 FOR UPDATE)
UPDATE fleet_budget b SET rate = $2 FROM old WHERE b.action = old.action RETURNING coalesce(old.rate, 0)`

// Budget returns the fleet's budget of an action. The fleet has one rate
// per action, the one the latest replica to start was configured with:
// every replica's slots are spaced by it, whatever its own configuration.
func (f *Fleet) Budget(opts BudgetOptions) (*Budget, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	b := &Budget{f: f, opts: opts, tracer: opts.TracerProvider.Tracer(budget.TracerName)}
	ctx, cancel := context.WithTimeout(context.Background(), budgetSetup)
	defer cancel()
	var old float64
	sent := time.Now()
	if err := f.check(ctx, f.pool.QueryRow(ctx, setRate, opts.Action, opts.Rate).Scan(&old)); err != nil {
		return nil, fmt.Errorf("set the fleet's rate of %s: %w", opts.Action, err)
	}
	if old != 0 && old != opts.Rate {
		f.opts.Logger.Warn("fleet: this replica changes the fleet's rate of an action; every replica now uses it",
			"action", opts.Action, "rate", opts.Rate, "previous_rate", old)
	}
	b.trips.add(time.Since(sent))
	b.rate.Store(math.Float64bits(opts.Rate))
	b.configured.Store(math.Float64bits(opts.Rate))
	return b, nil
}

// budgetSetup bounds the statement that sets the fleet's rate.
const budgetSetup = 30 * time.Second

// margin is what a slot adds to one second, the margins L + J, in seconds:
// slots are (1 + margin)/rate apart.
func (b *Budget) margin() float64 { return (b.opts.Lateness + b.opts.Jitter).Seconds() }

// adaptArgs are the adaptation's arguments of fleet_take_slot and
// fleet_budget_rate after the configured rate: the floor (-1: an eighth
// of the fleet's rate), the backoff and the recovery.
func (b *Budget) adaptArgs() []any {
	floor := -1.0
	if b.opts.Min > 0 {
		floor = b.opts.Min
	}
	return []any{floor, b.opts.Backoff, b.opts.Recovery.Seconds()}
}

// slotArgs are fleet_take_slot's arguments after the action: the
// adaptation's, the margins, the width of the window in which this
// replica's start will fall, and maxWait.
func (b *Budget) slotArgs(width time.Duration, maxWait float64) []any {
	return append(b.adaptArgs(), b.margin(), b.opts.Jitter.Seconds(), width.Seconds(), maxWait)
}

// width is the window a slot taken now reserves for this replica's start:
// the lateness it allows plus the time its answers may take to arrive
// after the database read its clock (at most a round trip), with a margin
// for a round trip longer than the latest ones (a slot whose answer came
// later than its window allowed is dropped: a slot, and a wait, lost).
func (b *Budget) width() time.Duration {
	rt := b.trips.bound()
	return b.opts.Lateness + rt + rt/4 + roundTripMargin
}

// roundTripMargin is what a slot's window allows beyond the latest round
// trips, for a busy host's scheduling.
const roundTripMargin = 10 * time.Millisecond

// takeSlot takes the next start slot (see fleet_take_slot).
const takeSlot = `SELECT slot, db_now, rate, throttles, configured FROM fleet_take_slot($1, $2, $3, $4, $5, $6, $7, $8)`

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
			st        slotTaken
			throttles int64
		)
		width := b.width()
		err := b.f.roundTrip(ctx, &b.trips, &st, func(conn *pgxpool.Conn) error {
			return conn.QueryRow(ctx, takeSlot, append([]any{b.opts.Action}, b.slotArgs(width, maxWait)...)...).
				Scan(&st.slot, &st.now, &st.rate, &throttles, &st.configured)
		})
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
		b.store(st.rate, throttles, st.configured)
		if err := budget.Sleep(ctx, time.Until(st.latest())); err != nil {
			return 0, err
		}
		if st.within(width) {
			return time.Since(began), nil
		}
		// Woken too late, or the answer took longer than the window allowed
		// for: starting now could crowd a later slot's call into one window
		// with this one. Take another slot.
	}
}

// slotTaken is a slot as a replica learnt it: the slot and the database's
// clock when it answered, both on the database's clock, and when the
// statement was sent, on this replica's.
type slotTaken struct {
	slot, now      time.Time
	sent, received time.Time
	// rate is the effective rate; configured, the fleet's.
	rate, configured float64
}

// latest is the latest moment, on this replica's clock, at which the
// slot may have come: the database read its clock at the latest when the
// answer arrived (now, once the statement returned).
func (st slotTaken) latest() time.Time { return st.received.Add(st.slot.Sub(st.now)) }

// within reports whether a call starting now falls in the slot's window:
// no later than width after the earliest moment the slot may have come
// (the database read its clock at the earliest when the statement was
// sent).
func (st slotTaken) within(width time.Duration) bool {
	return time.Since(st.sent.Add(st.slot.Sub(st.now))) <= width
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
  SELECT fleet_budget_rate(cut_at, base, ceiling, rate, ` + floorSQL + `, $3, $4, n.now) AS rate,
         cut_at IS NULL OR cut_at < n.now - make_interval(secs => $5::float8) AS cut
  FROM fleet_budget, n WHERE action = $1 FOR UPDATE
)
UPDATE fleet_budget b SET throttles = b.throttles + 1,
  ceiling = CASE WHEN cur.cut THEN cur.rate ELSE b.ceiling END,
  base    = CASE WHEN cur.cut THEN greatest(` + floorSQL + `, cur.rate * $3::float8) ELSE b.base END,
  cut_at  = CASE WHEN cur.cut THEN n.now ELSE b.cut_at END
FROM cur, n WHERE b.action = $1
RETURNING fleet_budget_rate(b.cut_at, b.base, b.ceiling, b.rate, ` + floorSQL + `, $3, $4, n.now), b.throttles, b.rate`

// floorSQL is the floor of the adaptation in the statements on the
// budget's row, from adaptArgs' $2 (as in fleet_take_slot).
const floorSQL = `(CASE WHEN $2::float8 < 0 THEN rate / 8 ELSE least($2::float8, rate) END)`

// Throttled tells the fleet's budget that the cloud refused a call for its
// rate limit. It does not block the caller on the database.
func (b *Budget) Throttled() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		args := append([]any{b.opts.Action}, b.adaptArgs()...)
		args = append(args, b.opts.Hold.Seconds())
		var (
			rate, configured float64
			throttles        int64
		)
		err := b.f.pool.QueryRow(ctx, throttle, args...).Scan(&rate, &throttles, &configured)
		if err := b.f.check(ctx, err); err != nil {
			b.f.opts.Logger.Warn("record a throttled call in the fleet's budget", "action", b.opts.Action, "err", err)
			return
		}
		b.store(rate, throttles, configured)
	}()
}

// readRate reads the budget's effective rate and refusals now.
const readRate = `
SELECT fleet_budget_rate(cut_at, base, ceiling, rate, ` + floorSQL + `, $3, $4, clock_timestamp()), throttles, rate
FROM fleet_budget WHERE action = $1`

// refresh reads the budget's figures, so that Rate follows the fleet's
// cuts and recoveries when this replica makes no calls. Figures a call's
// statement brought within the last second are left as they are.
func (b *Budget) refresh(ctx context.Context) error {
	if time.Since(time.Unix(0, b.read.Load())) < time.Second {
		return nil
	}
	var (
		rate, configured float64
		throttles        int64
	)
	args := append([]any{b.opts.Action}, b.adaptArgs()...)
	err := b.f.pool.QueryRow(ctx, readRate, args...).Scan(&rate, &throttles, &configured)
	if err := b.f.check(ctx, err); err != nil {
		return err
	}
	b.store(rate, throttles, configured)
	return nil
}

// store keeps the figures a statement read.
func (b *Budget) store(rate float64, throttles int64, configured float64) {
	b.rate.Store(math.Float64bits(rate))
	b.configured.Store(math.Float64bits(configured))
	b.throttles.Store(throttles)
	b.read.Store(time.Now().UnixNano())
}

// Rate is the fleet's effective rate for the action, as last read.
func (b *Budget) Rate() float64 { return math.Float64frombits(b.rate.Load()) }

// Configured is the fleet's configured rate for the action, as last read.
func (b *Budget) Configured() float64 { return math.Float64frombits(b.configured.Load()) }

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

// roundTrips keeps the latest round trips of a replica's slot statements:
// their longest bounds the time between the database's clock reading and
// the answer's arrival for the next slot.
type roundTrips struct {
	mu   sync.Mutex
	last [16]time.Duration
	next int
}

func (r *roundTrips) add(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[r.next%len(r.last)] = d
	r.next++
}

// bound is the longest of the latest round trips.
func (r *roundTrips) bound() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Max(r.last[:])
}

// roundTrip runs a slot's statement on a connection of its own, and
// notes when it was sent and when its answer arrived (the pool's wait for
// a connection is not part of the round trip).
func (f *Fleet) roundTrip(ctx context.Context, trips *roundTrips, st *slotTaken, query func(*pgxpool.Conn) error) error {
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	st.sent = time.Now()
	err = query(conn)
	st.received = time.Now()
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		trips.add(st.received.Sub(st.sent))
	}
	return err
}
