package pgtest

import (
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Delayed returns dsn with its host and port replaced by a TCP proxy on
// loopback that delivers every byte delay later than it arrived, in each
// direction: a database far away, or a slow network between. The proxy
// stops when the test ends.
func Delayed(t testing.TB, dsn string, delay time.Duration) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: Delayed needs a postgres:// URL: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	upstream := u.Host
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			wg.Go(func() { delayCopy(server, client, delay) })
			wg.Go(func() { delayCopy(client, server, delay) })
		}
	})
	u.Host = lis.Addr().String()
	return u.String()
}

// delayCopy copies from src to dst, each chunk delay after it was read,
// in order; it closes both ends when either fails.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	for range q { // let the reader end
	}
}
