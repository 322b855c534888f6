package taskstore

import (
	"context"
	"log/slog"
	"time"
)

// DefaultRetention is how long ended tasks stay in the registry after
// their creation: a year and a month, so that a year of monthly exports
// stays listable.
const DefaultRetention = 395 * 24 * time.Hour

// Defaults of a retention pass: one pass per fleet every
// DefaultRetentionEvery, deleting DefaultPruneBatch records per statement.
const (
	DefaultRetentionEvery = time.Hour
	DefaultPruneBatch     = 500
)

// pruneSelect selects a batch of ended tasks created before $1, oldest
// first, from the index of creation times.
const pruneSelect = `SELECT id FROM export_tasks WHERE created_at < $1 AND (state IN ('FINISHED', 'ERROR') OR end_reason <> '')
	ORDER BY created_at LIMIT $2`

// Prune deletes up to batch ended tasks (finished, failed, or given up)
// created before before, oldest first, and returns how many it deleted.
// Tasks still followed are kept whatever their age.
func (s *Store) Prune(ctx context.Context, before time.Time, batch int) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM export_tasks WHERE id IN (`+pruneSelect+`)`, micros(before), batch)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// TakePass reports whether holder runs the named periodic pass now: true
// for the first of the processes sharing the registry to ask once every
// has passed since the last pass started, by the database's clock.
func (s *Store) TakePass(ctx context.Context, name, holder string, every time.Duration) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE registry_passes SET holder = $1, at = `+s.d.now+`
		WHERE name = $2 AND at <= `+s.d.now+` - $3`, holder, name, every.Microseconds())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RetentionOptions configure RunRetention. Zero values take the defaults
// named.
type RetentionOptions struct {
	// Age is how long ended tasks are kept after their creation; default
	// DefaultRetention.
	Age time.Duration
	// Every is how often the fleet runs a pass; default
	// DefaultRetentionEvery.
	Every time.Duration
	// Batch is how many records one statement deletes; default
	// DefaultPruneBatch.
	Batch int
	// Holder names this process in the registry's passes.
	Holder string
	// Logger receives a line per pass; nil discards.
	Logger *slog.Logger
	// Pruned, when set, is told how many records each pass deleted.
	Pruned func(int64)
}

// RunRetention prunes ended tasks older than opts.Age until ctx ends: one
// pass per Every for all the processes sharing the registry (the one that
// takes the pass runs it), in batches of Batch records, each its own short
// statement, so that the registry's other statements never wait long.
func (s *Store) RunRetention(ctx context.Context, opts RetentionOptions) {
	if opts.Age <= 0 {
		opts.Age = DefaultRetention
	}
	if opts.Every <= 0 {
		opts.Every = DefaultRetentionEvery
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultPruneBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Pruned == nil {
		opts.Pruned = func(int64) {}
	}
	// Ask a few times per period, so that the pass is not late by a whole
	// period when the process that ran the last one stopped.
	tick := time.NewTicker(max(opts.Every/8, time.Second))
	defer tick.Stop()
	for {
		if err := s.retentionPass(ctx, opts); err != nil && ctx.Err() == nil {
			opts.Logger.Warn("registry retention: the pass failed; it is tried again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// retentionPass runs one pass, if this process takes it.
func (s *Store) retentionPass(ctx context.Context, opts RetentionOptions) error {
	took, err := s.TakePass(ctx, "retention", opts.Holder, opts.Every)
	if err != nil || !took {
		return err
	}
	began := time.Now()
	before := began.Add(-opts.Age)
	var total int64
	for {
		n, err := s.Prune(ctx, before, opts.Batch)
		total += n
		if err != nil {
			opts.Pruned(total)
			return err
		}
		if n < int64(opts.Batch) {
			break
		}
	}
	opts.Pruned(total)
	opts.Logger.Info("registry retention: pass done", "pruned", total, "created_before", before.UTC().Format(time.RFC3339),
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}
