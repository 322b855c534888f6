package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
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
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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

// checkExposure refuses to serve callers on a non-loopback address when
// nothing authenticates them, unless the operator explicitly allowed it.
func (o *Options) checkExposure(addrs ...net.Addr) error {
	if o.Tokens != nil || o.ClientCAFile != "" || o.AllowUnauthenticatedRemote {
		return nil
	}
	for _, a := range addrs {
		if !isLoopback(a) {
			return fmt.Errorf("refusing to serve on %s, which is reachable from other hosts, without caller authentication: "+
				"configure bearer tokens (-tokens-file or CWPEXPORT_TOKENS) or mutual TLS (-tls-client-ca), "+
				"listen on 127.0.0.1, or pass -insecure-allow-unauthenticated-remote to accept anyone who can reach the port", a)
		}
	}
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
