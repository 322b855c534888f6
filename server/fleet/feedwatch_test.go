package fleet_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/fleet"
)

// halfOpen wraps a replica's database connections; freeze makes the
// listener's (the one that sent LISTEN) half-open: nothing it sends reaches
// the database, nothing arrives, and no error says so.
type halfOpen struct {
	mu        sync.Mutex
	listeners []*freezable
}

func (h *halfOpen) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &freezable{Conn: c, h: h, frozen: make(chan struct{}), closed: make(chan struct{})}, nil
}

// listenersSeen is how many connections have sent LISTEN.
func (h *halfOpen) listenersSeen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.listeners)
}

// freeze makes the latest listener's connection half-open.
func (h *halfOpen) freeze() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.listeners[len(h.listeners)-1].frozen)
}

type freezable struct {
	net.Conn
	h              *halfOpen
	once, doneOnce sync.Once
	frozen, closed chan struct{}
	deadline       atomic.Int64 // read deadline, unix nanoseconds; 0: none
}

// SetDeadline and SetReadDeadline are honoured by a frozen read too: pgx
// interrupts a read that way when its context ends.
func (c *freezable) SetDeadline(t time.Time) error {
	c.setDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *freezable) SetReadDeadline(t time.Time) error {
	c.setDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *freezable) setDeadline(t time.Time) {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
}

// silent waits, as a half-open connection does, until it is closed on this
// side or its read deadline passes.
func (c *freezable) silent() (int, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-tick.C:
			if d := c.deadline.Load(); d != 0 && time.Now().UnixNano() > d {
				return 0, os.ErrDeadlineExceeded
			}
		}
	}
}

func (c *freezable) Write(p []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(p), []byte("listen ")) {
		c.once.Do(func() { c.h.mu.Lock(); c.h.listeners = append(c.h.listeners, c); c.h.mu.Unlock() })
	}
	select {
	case <-c.frozen:
		return len(p), nil // swallowed
	default:
		return c.Conn.Write(p)
	}
}

func (c *freezable) Read(p []byte) (int, error) {
	select {
	case <-c.frozen: // half-open: nothing more
		return c.silent()
	default:
	}
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() { n, err := c.Conn.Read(p); got <- result{n, err} }()
	var r result
	select {
	case r = <-got:
	case <-c.frozen:
		// The read under it ends at the deadline, or when closed.
		n, err := c.silent()
		<-got
		return n, err
	case <-c.closed:
		<-got
		return 0, net.ErrClosed
	}
	select {
	case <-c.frozen: // arrived after the freeze: lost
		return c.silent()
	default:
		return r.n, r.err
	}
}

func (c *freezable) Close() error {
	c.doneOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestAHalfOpenFeedIsNoticedAndReconnected: the feed's listener connection
// goes half-open while the database keeps answering the replica's other
// connections. Within seconds the replica reports itself unhealthy, closes
// it, listens again on a new connection, and is healthy again.
func TestAHalfOpenFeedIsNoticedAndReconnected(t *testing.T) {
	e := startEmulator(t)
	h := &halfOpen{}
	r := joinWith(t, database(t), fleet.Options{Replica: "a"}, func(cfg *pgxpool.Config) { cfg.ConnConfig.DialFunc = h.dial })
	e.nodeOf(t, r, e.cloud)
	waitFor(t, "the feed's listener to connect", func() bool { return h.listenersSeen() == 1 && r.fleet.Healthy() })

	h.freeze()
	waitFor(t, "the replica to report its half-open feed", func() bool { return !r.fleet.Healthy() })
	waitFor(t, "the feed's listener to connect again", func() bool { return h.listenersSeen() == 2 })
	waitFor(t, "the replica to be healthy again", r.fleet.Healthy)
}
