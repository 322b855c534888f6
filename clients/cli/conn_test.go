package cli

import (
	"strings"
	"testing"
)

func TestTokenIsNotSentInCleartextBeyondLoopback(t *testing.T) {
	t.Setenv(TokenEnv, "cli-test-token-0123456789abcdef")
	for _, addr := range []string{"127.0.0.1:9090", "localhost:9090", "[::1]:9090", "unix:///run/cwpexport.sock", "dns:///localhost:9090", "127.0.0.1:9090,localhost:9091"} {
		if _, err := (connFlags{}).dialOptions(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{"192.0.2.1:9090", "cwpexport.example.org:443", "dns:///cwpexport.example.org:443", "10.0.0.1", "127.0.0.1:9090,192.0.2.1:9090"} {
		_, err := (connFlags{}).dialOptions(addr)
		if err == nil || !strings.Contains(err.Error(), "--insecure-plaintext-token") || strings.Contains(err.Error(), "0123456789") {
			t.Errorf("%s without TLS: %v, want a refusal naming the flag", addr, err)
		}
		if _, err := (connFlags{plaintextToken: true}).dialOptions(addr); err != nil {
			t.Errorf("%s with --insecure-plaintext-token: %v", addr, err)
		}
		if _, err := (connFlags{tls: true}).dialOptions(addr); err != nil {
			t.Errorf("%s over TLS: %v", addr, err)
		}
	}
	t.Setenv(TokenEnv, "")
	if _, err := (connFlags{}).dialOptions("192.0.2.1:9090"); err != nil {
		t.Errorf("no token, no TLS, remote: %v", err)
	}
}
