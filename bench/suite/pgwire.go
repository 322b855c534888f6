package suite

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// pgCounter is a TCP proxy in front of PostgreSQL that counts the round
// trips its clients make, by what they ask: every Sync of the extended
// protocol and every simple Query is one request the client waits for
// (pgx sends a batch, or a statement with its Bind and Execute, under one
// Sync; a statement's first use on a connection adds a round trip to
// prepare it). Each round trip ends with the server's ReadyForQuery, which
// times it. The bytes pass unchanged; pgproto3 only reads them.
type pgCounter struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	counts map[string]int64           // round trips by label
	times  map[string][]time.Duration // their durations, by label
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// startPGCounter listens on a loopback port chosen by the kernel and
// forwards each connection to upstream (host:port).
func startPGCounter(upstream string) (*pgCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &pgCounter{ln: ln, upstream: upstream, counts: map[string]int64{}, times: map[string][]time.Duration{}, conns: map[net.Conn]bool{}}
	c.wg.Add(1)
	go c.accept()
	return c, nil
}

// addr is where clients connect instead of PostgreSQL.
func (c *pgCounter) addr() string { return c.ln.Addr().String() }

// snapshot returns the round trips counted so far, by label.
func (c *pgCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// durations returns how long the round trips of label took so far, from
// the request's last byte read by the proxy to the server's ReadyForQuery.
func (c *pgCounter) durations(label string) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.times[label])
}

// close stops listening and cuts every connection.
func (c *pgCounter) close() {
	c.ln.Close()
	c.mu.Lock()
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *pgCounter) accept() {
	defer c.wg.Done()
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.serve(client)
		}()
	}
}

func (c *pgCounter) track(conns ...net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range conns {
		c.conns[conn] = true
	}
}

func (c *pgCounter) untrack(conns ...net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range conns {
		delete(c.conns, conn)
		conn.Close()
	}
}

// serve relays one connection. Its goroutines end when either side closes.
func (c *pgCounter) serve(client net.Conn) {
	server, err := net.Dial("tcp", c.upstream)
	if err != nil {
		client.Close() // as PostgreSQL down would: the client sees the connection fail
		return
	}
	c.track(client, server)
	defer c.untrack(client, server)
	trips := &tripQueue{}
	done := make(chan struct{})
	go func() {
		c.timeReplies(bufio.NewReader(io.TeeReader(server, client)), trips)
		client.Close()
		close(done)
	}()
	c.count(pgproto3.NewBackend(io.TeeReader(client, server), nil), trips)
	server.Close()
	<-done
}

// tripQueue matches a connection's round trips with the server's
// ReadyForQuery messages, in order. The bytes reach the server before the
// request is decoded, so a reply may come before its request is queued:
// then it waits for it (and the trip is timed as 0).
type tripQueue struct {
	mu      sync.Mutex
	sent    []trip      // requests awaiting their reply
	replies []time.Time // replies awaiting their request
}

type trip struct {
	label string
	sent  time.Time
}

// push queues a request; it returns the trip's duration when its reply
// came first.
func (q *tripQueue) push(label string) (trip, time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := trip{label, time.Now()}
	if len(q.replies) > 0 {
		q.replies = q.replies[1:]
		return t, 0, true
	}
	q.sent = append(q.sent, t)
	return trip{}, 0, false
}

// reply matches a ReadyForQuery with the oldest request awaiting one.
func (q *tripQueue) reply() (trip, time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.sent) == 0 {
		q.replies = append(q.replies, time.Now())
		return trip{}, 0, false
	}
	t := q.sent[0]
	q.sent = q.sent[1:]
	return t, time.Since(t.sent), true
}

// timeReplies reads the server's messages (a type byte and a length each)
// until the connection ends, and times each round trip at its
// ReadyForQuery.
func (c *pgCounter) timeReplies(r *bufio.Reader, trips *tripQueue) {
	var header [5]byte
	for {
		if _, err := io.ReadFull(r, header[:]); err != nil {
			_, _ = io.Copy(io.Discard, r) // keep relaying
			return
		}
		n := int64(binary.BigEndian.Uint32(header[1:])) - 4
		if _, err := r.Discard(int(n)); err != nil {
			return
		}
		if header[0] == 'Z' {
			c.timed(trips.reply())
		}
	}
}

// count reads the client's messages until the connection ends, adding each
// round trip to the counts under the label of what it ran.
func (c *pgCounter) count(be *pgproto3.Backend, trips *tripQueue) {
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.StartupMessage); ok {
			trips.push("") // the start-up ends with a ReadyForQuery too
			break
		}
		// An SSL or GSS request: the server answers it, then the startup
		// message follows.
	}
	stmts := map[string]string{} // prepared statement name -> SQL
	var (
		portal   string   // the statement of the last Bind
		ran      []string // statements executed since the last Sync
		prepared bool     // a Parse since the last Sync
	)
	for {
		msg, err := be.Receive()
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
				c.add("(unreadable: "+err.Error()+")", nil)
			}
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Parse:
			stmts[m.Name] = m.Query
			prepared = true
		case *pgproto3.Bind:
			portal = stmts[m.PreparedStatement]
		case *pgproto3.Execute:
			ran = append(ran, portal)
		case *pgproto3.Query:
			c.add(label(m.String), trips)
		case *pgproto3.Sync:
			switch {
			case len(ran) > 0:
				c.add(label(ran[0]), trips)
			case prepared:
				c.add("prepare a statement (first use on a connection)", trips)
			default:
				c.add("sync", trips)
			}
			ran, prepared = ran[:0], false
		case *pgproto3.Terminate:
			return
		}
	}
}

// add counts a round trip and, with trips, queues it to be timed.
func (c *pgCounter) add(what string, trips *tripQueue) {
	c.mu.Lock()
	c.counts[what]++
	c.mu.Unlock()
	if trips != nil {
		c.timed(trips.push(what))
	}
}

// timed records a round trip's duration, once matched.
func (c *pgCounter) timed(t trip, d time.Duration, ok bool) {
	if !ok || t.label == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.times[t.label] = append(c.times[t.label], d)
}

// Labels of the round trips that the fleet's figures add up.
const (
	labelCreateSlot = "budget: a creation's start slot"
	labelClaim      = "schedule: claim a due task, its read slot and lease (one statement)"
	labelResult     = "schedule: write a poll's result and notify"
	labelRelease    = "schedule: give back a slot woken too late"
)

// labels name the statements the fleet and the registry send, by a piece of
// their SQL; the first match wins.
var labels = []struct{ has, label string }{
	{"FOR UPDATE OF t SKIP LOCKED", labelClaim},
	{"pg_notify(", labelResult},
	{"UPDATE fleet_budget SET last_gap", labelCreateSlot},
	{"greatest(next_slot, clock_timestamp()) - clock_timestamp()", "budget: how long until the next slot (a refused creation)"},
	{"throttles = b.throttles + 1", "budget: record a throttled call"},
	{"FROM fleet_budget WHERE action", "budget: read the fleet's rate (every second)"},
	{"due = clock_timestamp() WHERE task_id", labelRelease},
	{"min(t.due)", "schedule: when is the next task due (idle)"},
	{"SELECT count(*) FROM fleet_tasks", "schedule: count the fleet's tasks (every second)"},
	{"INSERT INTO fleet_", "schedule: write interest and created tasks (batch)"},
	{"DELETE FROM fleet_interest WHERE replica", "schedule: write interest and created tasks (batch)"},
	{"t.task_id = ANY(", "feed: read tasks' rows (new interest, a reconnect, a row too large to notify)"},
	{"i.tier <= 1", "schedule: a read's lookup"},
	{"fleet_", "schedule: other"},
	{"-- ping", "pool: ping"},
	{"listen ", "feed: listen"},
}

var spaces = regexp.MustCompile(`\s+`)

// label names a statement: a fleet label, "registry: <verb>", or the
// statement's first words.
func label(sql string) string {
	s := strings.TrimSpace(spaces.ReplaceAllString(sql, " "))
	for _, l := range labels {
		if strings.Contains(s, l.has) {
			return l.label
		}
	}
	switch low := strings.ToLower(s); {
	case low == "" || low == ";":
		return "pool: ping"
	case low == "begin" || strings.HasPrefix(low, "begin ") || low == "commit" || low == "rollback":
		return "registry: " + low
	case strings.Contains(low, "export_tasks") || strings.Contains(low, "registry_checks") || strings.Contains(low, "service_secrets"):
		verb, _, _ := strings.Cut(low, " ")
		return "registry: " + verb
	}
	if len(s) > 50 {
		s = s[:50] + "…"
	}
	return "other: " + s
}
