package fleet_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/fleet"
)

// lateConn hands over every answer of the database late by d: a replica
// whose database is slow to answer (a distant server, a slow commit, a
// paused process), which the replica cannot tell from a clock that differs.
type lateConn struct {
	net.Conn
	d time.Duration
}

func (c *lateConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	time.Sleep(c.d)
	return n, err
}

// joinLate is join with the database's answers arriving d late.
func joinLate(t *testing.T, dsn, name string, d time.Duration) *replica {
	return joinWith(t, dsn, fleet.Options{Replica: name}, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &lateConn{Conn: c, d: d}, nil
		}
	})
}

// startAll takes slots of each budget with four callers as fast as they
// can for d, and returns when each call started.
func startAll(t *testing.T, d time.Duration, budgets ...*fleet.Budget) []time.Time {
	t.Helper()
	var (
		mu     sync.Mutex
		starts []time.Time
		wg     sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for _, b := range budgets {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b.Wait(ctx) == nil {
					mu.Lock()
					starts = append(starts, time.Now())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return starts
}

// TestBudgetHoldsWhateverTheDatabasesLatency: one replica's answers from
// the database arrive late by as much as a slow network's, another's at
// once; calls of both together never exceed the rate in any 1-second
// window.
func TestBudgetHoldsWhateverTheDatabasesLatency(t *testing.T) {
	for _, late := range []time.Duration{60 * time.Millisecond, 150 * time.Millisecond} {
		t.Run(late.String(), func(t *testing.T) {
			dsn := database(t)
			const rate = 20
			var budgets []*fleet.Budget
			for i, r := range []*replica{joinLate(t, dsn, "slow", late), join(t, dsn, "fast")} {
				b, err := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportLicenseDetail, Rate: rate})
				if err != nil {
					t.Fatal(err, i)
				}
				budgets = append(budgets, b)
			}
			starts := startAll(t, 5*time.Second, budgets...)
			if len(starts) < rate {
				t.Fatalf("only %d calls started in 5s", len(starts))
			}
			if peak := peakPerSecond(starts); peak > rate {
				t.Fatalf("%d calls started within one second; the fleet's budget is %d", peak, rate)
			}
		})
	}
}

// TestBudgetOneRateForTheFleet: replicas configured with different rates
// space their calls by one rate, the latest started replica's, and say so.
func TestBudgetOneRateForTheFleet(t *testing.T) {
	dsn := database(t)
	var budgets []*fleet.Budget
	for i, rate := range []float64{20, 20, 5} {
		r := join(t, dsn, fmt.Sprint("r", i))
		b, err := r.fleet.Budget(fleet.BudgetOptions{Action: cloud.ActionExportLicenseDetail, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		budgets = append(budgets, b)
	}
	starts := startAll(t, 4*time.Second, budgets...)
	if peak := peakPerSecond(starts); peak > 5 {
		t.Fatalf("%d calls started within one second; the fleet's rate is 5", peak)
	}
	for _, b := range budgets {
		if b.Configured() != 5 {
			t.Errorf("a replica reports the fleet's rate as %v, not 5", b.Configured())
		}
	}
}
