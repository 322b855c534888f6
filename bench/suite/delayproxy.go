package suite

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// delayProxy forwards TCP connections to upstream, holding every chunk
// for the current delay in each direction (a database far away). The
// delay can change while connections are open; 0 forwards at once.
type delayProxy struct {
	ln       net.Listener
	upstream string
	delay    atomic.Int64 // nanoseconds, each way
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

func startDelayProxy(upstream string) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	go p.accept()
	return p, nil
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

// setDelay sets the delay each way for every chunk read from now on.
func (p *delayProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *delayProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *delayProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil {
				client.Close()
				return
			}
			if !p.track(client, server) {
				client.Close()
				server.Close()
				return
			}
			done := make(chan struct{}, 2)
			go func() { p.pipe(server, client); done <- struct{}{} }()
			go func() { p.pipe(client, server); done <- struct{}{} }()
			<-done
			p.untrack(client, server)
		}()
	}
}

// chunk is bytes read at a time, to be written at that time plus the delay.
type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst: a reader stamps each chunk, a writer holds it
// until its time, so the delay is a latency, not a throughput limit.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(time.Duration(p.delay.Load()))}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range q {
			}
			return
		}
	}
}
