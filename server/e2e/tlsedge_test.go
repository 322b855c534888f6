package e2e_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestTLSRefusesCBCSuitesAndOffersH2: TLS 1.2 clients offering only
// CBC-SHA1 suites are refused on both ports; the REST port negotiates
// HTTP/2.
func TestTLSRefusesCBCSuitesAndOffersH2(t *testing.T) {
	p := testserver.NewPKI(t)
	env := testserver.Start(t, testserver.Config{App: app.Options{TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile}, ClientTLS: p.ClientTLS()})
	rest := strings.TrimPrefix(env.RESTURL, "https://")
	for _, addr := range []string{env.GRPCAddr, rest} {
		for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA} {
			cfg := p.ClientTLS()
			cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, []uint16{suite}
			if c, err := tls.Dial("tcp", addr, cfg); err == nil {
				t.Errorf("%s negotiated %s over TLS 1.2", addr, tls.CipherSuiteName(c.ConnectionState().CipherSuite))
				c.Close()
			}
		}
		cfg := p.ClientTLS()
		cfg.MaxVersion, cfg.NextProtos = tls.VersionTLS12, []string{"h2"}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("%s over TLS 1.2 with the default suites: %v", addr, err)
		}
		if st := c.ConnectionState(); st.NegotiatedProtocol != "h2" {
			t.Errorf("%s negotiated %q, want h2", addr, st.NegotiatedProtocol)
		}
		c.Close()
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS(), ForceAttemptHTTP2: true}}
	resp, err := client.Get(env.RESTURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("REST over TLS answered %s, want HTTP/2", resp.Proto)
	}
}
