package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/stats"

	"github.com/cwpexport/cwpexport/clients"
)

// TokenEnv names the environment variable holding the caller's bearer
// token; a token never goes on the command line, where process listings
// would show it.
const TokenEnv = "CWPEXPORT_TOKEN"

// connFlags are the flags that say how to reach the service.
type connFlags struct {
	tls       bool
	caFile    string
	certFile  string
	keyFile   string
	tokenFile string
	// plaintextToken allows sending a token without TLS to an address
	// other hosts may share the path to.
	plaintextToken bool
}

// dialOptions turns the flags (and TokenEnv) into gRPC dial options for
// addr. A token is not sent in cleartext beyond loopback unless the
// flag says so: anyone on the path could read it and call as its owner.
func (f connFlags) dialOptions(addr string) ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	if f.tls || f.caFile != "" || f.certFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.caFile != "" {
			pem, err := os.ReadFile(f.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", f.caFile)
			}
		}
		if (f.certFile == "") != (f.keyFile == "") {
			return nil, fmt.Errorf("--cert-file and --key-file go together")
		}
		if f.certFile != "" {
			cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	token := os.Getenv(TokenEnv)
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		if creds.Info().SecurityProtocol == "insecure" && !allLocal(addr) && !f.plaintextToken {
			return nil, fmt.Errorf("refusing to send the bearer token without TLS to %s: use --tls or --ca-file, or --insecure-plaintext-token to send it readable by anyone on the path", addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return opts, nil
}

// allLocal reports whether every address of --addr stays on this host.
func allLocal(addr string) bool {
	for _, a := range strings.Split(addr, ",") {
		if !isLocal(strings.TrimSpace(a)) {
			return false
		}
	}
	return true
}

// isLocal reports whether a gRPC target stays on this host: a loopback
// address, localhost, or a Unix socket. Other names are not resolved: what
// they resolve to may change.
func isLocal(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	target = strings.TrimPrefix(strings.TrimPrefix(target, "dns:///"), "passthrough:///")
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

// bearer sends the caller's token with every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that a token works against a service
// on loopback without TLS, as `make run` serves; dialOptions refuses it in
// cleartext beyond loopback.
func (b bearer) RequireTransportSecurity() bool { return false }

// staticScheme names the resolver of an --addr list.
const staticScheme = "cwpexport-static"

// connectBackoff paces reconnections to an address that went away. gRPC's
// default grows to 2 minutes; a replica that restarts is back in seconds,
// and a resumed watch should find it then.
var connectBackoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
	MinConnectTimeout: 20 * time.Second,
}

// target turns --addr into a gRPC target and the options it needs. One
// address is any gRPC target: host:port (resolved by DNS, every address
// used), dns:///host:port, unix:///path. Several host:port addresses,
// separated by commas, become a fixed list through grpc-go's manual
// resolver. Either way the service config's round_robin policy spreads
// calls over the addresses that answer and leaves out those that do not.
func target(addr string) (string, []grpc.DialOption, error) {
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(clients.ServiceConfig), grpc.WithConnectParams(connectBackoff)}
	if !strings.Contains(addr, ",") {
		return strings.TrimSpace(addr), opts, nil
	}
	var endpoints []resolver.Endpoint
	for _, a := range strings.Split(addr, ",") {
		a = strings.TrimSpace(a)
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return "", nil, fmt.Errorf("--addr %q: each address of a list is host:port", a)
		}
		// ServerName: TLS checks each address against its own host name,
		// as it would for that address alone.
		endpoints = append(endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a, ServerName: host}}})
	}
	r := manual.NewBuilderWithScheme(staticScheme)
	r.InitialState(resolver.State{Endpoints: endpoints})
	return staticScheme + ":///", append(opts, grpc.WithResolvers(r)), nil
}

// reachedService records whether the service answered any call of this
// run (headers, a message or trailers came back): an Unavailable afterwards
// means the service, or the replica a call went to, went away, and is worth
// riding through; one before means there is no service to reach (a
// connection that was made but refused, as a TLS handshake without the
// client certificate is, answers nothing).
type reachedService struct{ answered atomic.Bool }

// TagRPC is part of stats.Handler.
func (*reachedService) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// HandleRPC notes what came back from the service.
func (r *reachedService) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.InHeader, *stats.InPayload, *stats.InTrailer:
		r.answered.Store(true)
	}
}

// TagConn is part of stats.Handler.
func (*reachedService) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn is part of stats.Handler.
func (*reachedService) HandleConn(context.Context, stats.ConnStats) {}
