package taskstore_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

// TestRetentionPrunesOldEndedTasksOnly: a pass deletes the ended tasks
// (finished, failed, given up) created before the retention's age, in
// batches, and keeps the tasks still followed whatever their age, and the
// younger ones.
func TestRetentionPrunesOldEndedTasksOnly(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := newStore(t, e)
		now := time.Now().UTC()
		old := now.Add(-400 * 24 * time.Hour)
		for i := int64(1); i <= 20; i++ {
			created, state := old, taskstore.StateFinished
			switch {
			case i%5 == 0:
				state = taskstore.StateError
			case i%5 == 1:
				state = taskstore.StatePending
			case i > 15:
				created = now
			}
			if err := s.Insert(ctx, taskstore.Task{TaskID: i, Fingerprint: "f", Parameters: "{}", Created: created, State: state}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Abandon(ctx, 11, "too old"); err != nil { // given up: ended
			t.Fatal(err)
		}
		var (
			pruned atomic.Int64
			lines  logged
		)
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.RunRetention(ctx, taskstore.RetentionOptions{Batch: 3, Holder: "a", Logger: slog.New(&lines),
				Pruned: func(n int64) { pruned.Add(n) }})
		}()
		deadline := time.Now().Add(20 * time.Second)
		for len(lines.all()) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		// Old and ended: 2-5, 7-10, 12-15 and 20 (finished or failed) and 11
		// (given up); kept: 1, 6, 16 (followed) and 17-19 (young).
		if got := pruned.Load(); got != 14 {
			t.Errorf("the pass reports %d tasks pruned, want 14 (log %q)", got, lines.all())
		}
		for i := int64(1); i <= 20; i++ {
			_, found, err := s.Get(context.Background(), i)
			if err != nil {
				t.Fatal(err)
			}
			kept := i == 1 || i == 6 || (i >= 16 && i != 20)
			if found != kept {
				t.Errorf("task %d: kept %v, want %v", i, found, kept)
			}
		}
	})
}

// TestRetentionRunsOncePerFleet: of the processes sharing a registry,
// one takes each period's pass.
func TestRetentionRunsOncePerFleet(t *testing.T) {
	eachEngine(t, func(t *testing.T, e engine) {
		place := e.place(t)
		stores := []*taskstore.Store{e.open(t, place)}
		if e.name == "postgres" {
			stores = append(stores, e.open(t, place), e.open(t, place))
		}
		var (
			wg   sync.WaitGroup
			took atomic.Int32
		)
		for i, s := range stores {
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ok, err := s.TakePass(context.Background(), "retention", string(rune('a'+i)), time.Hour)
					if err != nil {
						t.Error(err)
					}
					if ok {
						took.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		if n := took.Load(); n != 1 {
			t.Fatalf("%d processes took the period's pass", n)
		}
	})
}

// logged keeps the messages a logger gets.
type logged struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logged) Enabled(context.Context, slog.Level) bool { return true }
func (l *logged) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logged) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logged) WithGroup(string) slog.Handler      { return l }

func (l *logged) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}
