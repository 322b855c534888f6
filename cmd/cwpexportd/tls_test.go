package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestStartUpLogNamesTheTLSRESTPortHTTPS: with TLS, the start-up log gives
// the REST port's URL as https://, and that URL answers over TLS.
func TestStartUpLogNamesTheTLSRESTPortHTTPS(t *testing.T) {
	p := testserver.NewPKI(t)
	d := startEmbeddedWith(t, t.TempDir(), "1h", "-tls-cert "+p.CertFile+" -tls-key "+p.KeyFile)
	if !strings.HasPrefix(d.restURL, "https://") {
		t.Fatalf("the start-up log names the TLS REST port %q, want https://…", d.restURL)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS()}}
	resp, err := client.Get(d.restURL + "/livez")
	if err != nil {
		t.Fatalf("GET %s/livez: %v", d.restURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/livez: HTTP %d", d.restURL, resp.StatusCode)
	}
}
