package fleet

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The feed's listener sits on one connection that only reads. A connection
// that went half-open (a peer or a middlebox gone without a reset) delivers
// nothing and reports no error, for as long as the OS's keepalive takes:
// minutes, while the replica would look healthy and miss every poll result
// of the other replicas. So each replica sends itself a ping through the
// feed every feedPing; a listener that has not heard its own ping for
// feedStale, while the database answers, is closed: the listener connects
// again and reads every wanted task's row (HandleBacklog), and the replica
// reports itself unhealthy until it has.
const (
	// PingChannel carries the replicas' pings to themselves, apart from
	// Channel, whose listeners of earlier releases expect rows.
	PingChannel = "cwpexport_feed_ping"
	feedPing    = 2 * time.Second
	feedStale   = 3 * feedPing
)

// feedWatch is what the schedule knows of its listener's connection.
type feedWatch struct {
	conn  atomic.Pointer[pgx.Conn] // the listener's connection, while it listens
	heard atomic.Int64             // when this replica last heard its own ping (unix nanoseconds)
}

// pingHandler takes the pings of PingChannel.
type pingHandler struct{ s *Schedule }

// HandleNotification notes this replica's own ping.
func (h pingHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	if n.Payload == h.s.f.opts.Replica {
		h.s.feed.heard.Store(time.Now().UnixNano())
	}
	return nil
}

// HandleBacklog runs once the listener is connected and listening: the
// feed is live again.
func (h pingHandler) HandleBacklog(_ context.Context, _ string, conn *pgx.Conn) error {
	h.s.feed.conn.Store(conn)
	h.s.feed.heard.Store(time.Now().UnixNano())
	h.s.f.feedStale.Store(false)
	return nil
}

// watchFeed pings this replica through the feed every feedPing until ctx
// ends, and closes the listener's connection once it has not heard itself
// for feedStale while the database took the pings.
func (s *Schedule) watchFeed(ctx context.Context) {
	t := time.NewTicker(feedPing)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, feedPing)
		_, err := s.f.pool.Exec(pctx, `SELECT pg_notify($1, $2)`, PingChannel, s.f.opts.Replica)
		cancel()
		if err != nil {
			continue // the database's own trouble: Healthy says so
		}
		conn := s.feed.conn.Load()
		if conn == nil || time.Since(time.Unix(0, s.feed.heard.Load())) < feedStale {
			continue
		}
		s.opts.Logger.Warn("fleet: the feed's listener heard nothing for a while although the database answers; reconnecting it",
			"silent_for", time.Since(time.Unix(0, s.feed.heard.Load())).Round(time.Second))
		s.f.feedStale.Store(true)
		s.feed.conn.Store(nil)
		// Its reader gets an error and the listener connects again.
		_ = conn.PgConn().Conn().Close()
	}
}
