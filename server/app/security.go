package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cwpexport/cwpexport/server/callerauth"
)

// tlsConfig builds the servers' TLS configuration from the options, or nil
// for plaintext.
func (o *Options) tlsConfig() (*tls.Config, error) {
	switch {
	case o.TLSCertFile == "" && o.TLSKeyFile == "" && o.ClientCAFile == "":
		return nil, nil
	case o.TLSCertFile == "" || o.TLSKeyFile == "":
		return nil, errors.New("TLS needs both a certificate and a key file (-tls-cert, -tls-key)")
	}
	cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load the TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CipherSuites: tls12Suites}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read the client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the client CA file %s holds no PEM certificate", o.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// tls12Suites are the TLS 1.2 cipher suites offered: forward-secret AEAD
// only, none of the CBC-SHA1 suites Go still enables by default (TLS 1.3's
// suites are not configurable, and all AEAD).
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// restTLS is the REST port's TLS configuration: that of both ports,
// offering HTTP/2 as well as HTTP/1.1.
func restTLS(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// checkExposure refuses to serve callers on a non-loopback address when
// nothing authenticates them, or when their bearer tokens would cross the
// network in cleartext, unless the operator explicitly allowed it.
func (o *Options) checkExposure(addrs ...net.Addr) error {
	for _, a := range addrs {
		if isLoopback(a) {
			continue
		}
		if o.Tokens == nil && o.ClientCAFile == "" && !o.AllowUnauthenticatedRemote {
			return fmt.Errorf("refusing to serve on %s, which is reachable from other hosts, without caller authentication: "+
				"configure bearer tokens (-tokens-file or CWPEXPORT_TOKENS) or mutual TLS (-tls-client-ca), "+
				"listen on 127.0.0.1, or pass -insecure-allow-unauthenticated-remote to accept anyone who can reach the port", a)
		}
		if o.Tokens != nil && o.Tokens.Len() > 0 && o.TLSCertFile == "" && !o.AllowCleartextTokens {
			return fmt.Errorf("refusing to accept bearer tokens in cleartext on %s, which is reachable from other hosts: "+
				"configure TLS (-tls-cert, -tls-key), listen on 127.0.0.1, "+
				"or pass -insecure-allow-cleartext-tokens to let anyone on the network path read the tokens", a)
		}
	}
	return nil
}

// checkCallers checks a callers' configuration against the options: it
// must name someone who can call, and without client certificates to name
// callers, role and group members must be callers with a token.
func (o *Options) checkCallers(t *callerauth.Tokens) error {
	if o.ClientCAFile != "" {
		return nil
	}
	if t.Len() == 0 {
		return errors.New("the callers' configuration holds no tokens, and no client CA (-tls-client-ca) lets certificates name callers: nobody could call")
	}
	if u := t.Unlisted(); len(u) > 0 {
		return fmt.Errorf("roles or groups name callers that have no token: %s (without mutual TLS only tokens name callers)", strings.Join(u, ", "))
	}
	return nil
}

// Reload makes t the callers' configuration in force (tokens, roles and
// groups) without a restart; calls that started before keep their caller
// and scope. A configuration that fails the start-up checks is refused and
// the one in force stays.
func (s *Server) Reload(t *callerauth.Tokens) error {
	switch {
	case t == nil:
		return errors.New("no callers' configuration to load")
	case !s.auth.Enabled():
		return errors.New("callers are not authenticated: restart with -tokens-file (or mutual TLS) to authenticate them")
	}
	if err := s.opts.checkCallers(t); err != nil {
		return err
	}
	s.auth.Reload(t)
	s.access.Set(t.Policy())
	s.log.Info("callers' configuration reloaded", "tokens", t.Len())
	return nil
}

func isLoopback(a net.Addr) bool {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact removes the cloud secrets from text bound for a log, such as a
// panic's value, which may hold anything a handler had in hand.
func (s *Server) redact(text string) string {
	for _, secret := range []string{s.opts.SecretKey, s.opts.SessionToken} {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, "[REDACTED]")
		}
	}
	return text
}

// grpcTransport returns the gRPC port's transport bounds:
//   - MaxConcurrentStreams per connection (a client queues streams beyond);
//   - keepalive enforcement: a client pinging more often than
//     GRPCKeepaliveMinTime is sent GOAWAY (ENHANCE_YOUR_CALM) and cut;
//   - MaxConnectionAge, then MaxConnectionAgeGrace for the calls in flight,
//     so that no connection is held for ever (clients reconnect at once;
//     a watch cut by the grace ends Unavailable and is resumed);
//   - server pings every minute, so that a vanished client's streams are
//     closed within 20s of an unanswered ping;
//   - MaxConnectionIdle (EdgeOptions): a connection without calls is
//     closed, so that idle connections do not pile up.
func (o *Options) grpcTransport() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(orDefault(o.GRPCMaxConcurrentStreams, DefaultGRPCMaxConcurrentStreams)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             orDefault(o.GRPCKeepaliveMinTime, DefaultGRPCKeepaliveMinTime),
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(o.keepaliveIdle(keepalive.ServerParameters{
			MaxConnectionAge:      orDefault(o.GRPCMaxConnectionAge, DefaultGRPCMaxConnectionAge),
			MaxConnectionAgeGrace: orDefault(o.GRPCMaxConnectionAgeGrace, DefaultGRPCMaxConnectionAgeGrace),
			Time:                  time.Minute,
			Timeout:               20 * time.Second,
		})),
	}
}

func (o *Options) restMaxConns() int { return orDefault(o.RESTMaxConns, DefaultRESTMaxConns) }

func orDefault[T int | uint32 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// inProcessPrefix holds the address the in-process server's one peer, the
// REST gateway, reports: the IPv6 discard prefix (RFC 6666), which no real
// peer has.
var inProcessPrefix = netip.MustParsePrefix("100::/64")

// inProcessListener is the in-process server's listener: its connections
// report a peer address in inProcessPrefix, which realip trusts to forward
// the REST client's address.
type inProcessListener struct{ *bufconn.Listener }

var inProcessAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(inProcessPrefix.Addr().Next(), 0))

func (l inProcessListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return inProcessConn{c}, nil
}

type inProcessConn struct{ net.Conn }

func (inProcessConn) RemoteAddr() net.Addr { return inProcessAddr }
