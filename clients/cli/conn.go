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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
		if creds.Info().SecurityProtocol == "insecure" && !isLocal(addr) && !f.plaintextToken {
			return nil, fmt.Errorf("refusing to send the bearer token without TLS to %s: use --tls or --ca-file, or --insecure-plaintext-token to send it readable by anyone on the path", addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return opts, nil
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
