package edge

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the gRPC port's connection bounds.
const (
	DefaultMaxConns        = 4096
	DefaultMaxConnsPerPeer = 256
)

// Listener bounds the connections a listener holds open: in total and per
// peer address. A connection past a bound is accepted and closed at once,
// rather than left in the kernel's backlog as netutil.LimitListener does:
// its descriptor is freed, the callers already connected keep theirs, and
// a caller from another address is still accepted. It also lets the
// server close (Drop) the connections of a peer that abuses them.
type Listener struct {
	net.Listener
	max, perPeer int
	report       *Reporter

	mu     sync.Mutex
	total  int
	peers  map[netip.Addr]int
	byAddr map[string]*conn
	banned map[netip.Addr]time.Time
}

// Limit returns l bounded to max connections in total and perPeer per
// peer address (0: the defaults); refusals are reported on report (nil:
// not logged).
func Limit(l net.Listener, max, perPeer int, report *Reporter) *Listener {
	if max <= 0 {
		max = DefaultMaxConns
	}
	if perPeer <= 0 {
		perPeer = DefaultMaxConnsPerPeer
	}
	if report == nil {
		report = NewReporter(nil, 0)
	}
	return &Listener{Listener: l, max: max, perPeer: perPeer, report: report,
		peers: map[netip.Addr]int{}, byAddr: map[string]*conn{}, banned: map[netip.Addr]time.Time{}}
}

// Accept returns the next connection within the bounds; those past them
// are closed as they come.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := PeerOf(c.RemoteAddr())
		if why := l.admit(peer); why != "" {
			_ = c.Close()
			l.report.Note(peer, "connection refused", why)
			continue
		}
		tc := &conn{Conn: c, l: l, peer: peer, key: c.RemoteAddr().String()}
		l.mu.Lock()
		l.byAddr[tc.key] = tc
		l.mu.Unlock()
		return tc, nil
	}
}

// admit counts a new connection in, or says why it is refused.
func (l *Listener) admit(peer netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until, ok := l.banned[peer]; ok {
		if time.Now().Before(until) {
			return "the peer's connections were dropped for abuse a moment ago"
		}
		delete(l.banned, peer)
	}
	switch {
	case l.total >= l.max:
		return "the port holds its maximum of connections"
	case l.peers[peer] >= l.perPeer:
		return "the peer holds its maximum of connections"
	}
	l.total++
	l.peers[peer]++
	return ""
}

// Open returns the number of connections open, and those of peer.
func (l *Listener) Open(peer netip.Addr) (total, ofPeer int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.peers[peer.Unmap()]
}

// Drop closes the connection whose remote address is remote (as its
// RemoteAddr().String()), and refuses new connections from its peer for
// banFor. It reports whether there was such a connection.
func (l *Listener) Drop(remote string, banFor time.Duration) bool {
	l.mu.Lock()
	c, ok := l.byAddr[remote]
	if ok && banFor > 0 {
		if len(l.banned) >= maxPeers {
			l.banned = map[netip.Addr]time.Time{}
		}
		l.banned[c.peer] = time.Now().Add(banFor)
	}
	l.mu.Unlock()
	if ok {
		_ = c.Close()
	}
	return ok
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.peers[c.peer]--; l.peers[c.peer] <= 0 {
		delete(l.peers, c.peer)
	}
	if l.byAddr[c.key] == c {
		delete(l.byAddr, c.key)
	}
}

// conn is a connection counted by its Listener until it is closed.
type conn struct {
	net.Conn
	l    *Listener
	peer netip.Addr
	key  string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// PeerOf returns the IP address of a connection's remote address (the
// zero Addr when it has none, as for in-process connections).
func PeerOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
