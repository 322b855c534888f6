package callerauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

const benchToken = "bench-token-0123456789abcdef"

func call(_ testing.TB, a *Authenticator, inProcess bool, ctx context.Context) (string, error) {
	var caller string
	unary := a.Unary(inProcess)
	_, err := unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/cwpexport.v1.LicenseExportService/GetExportTask"},
		func(ctx context.Context, _ any) (any, error) { caller = Caller(ctx); return nil, nil })
	return caller, err
}

func TestUnaryInterceptor(t *testing.T) {
	tok, err := ParseTokens("ops " + benchToken)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(tok, CertNone)
	good := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+benchToken))
	if caller, err := call(t, a, false, good); err != nil || caller != "ops" {
		t.Errorf("valid token: caller %q, %v", caller, err)
	}
	if _, err := call(t, a, false, context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	for _, off := range []*Authenticator{nil, NewAuthenticator(nil, CertNone)} {
		if caller, err := call(t, off, false, context.Background()); err != nil || caller != "" {
			t.Errorf("authentication off: caller %q, %v", caller, err)
		}
	}
	_, err = a.Unary(false)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"},
		func(context.Context, any) (any, error) { return nil, nil })
	if err != nil {
		t.Errorf("health check without a token: %v", err)
	}
	if _, err := a.Stream(context.Background(), "/grpc.health.v1.Health/Watch", false); err != nil {
		t.Errorf("health watch without a token: %v", err)
	}
	if _, err := a.Stream(context.Background(), "/cwpexport.v1.LicenseExportService/WatchExportTask", false); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a watch without a token: %v", err)
	}
	if caller, err := a.Stream(good, "/cwpexport.v1.LicenseExportService/WatchExportTask", false); err != nil || Caller(caller) != "ops" {
		t.Errorf("a watch with a valid token: %v %v", Caller(caller), err)
	}
}

func TestParseRolesAndGroups(t *testing.T) {
	tok, err := ParseTokens(`
# two teams and an operator
alice alice-token-0123456789
bob=bob-token-0123456789ab
role operator olga
group team-a alice bob
group team-a carol
`)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != 2 {
		t.Errorf("%d tokens, want 2", tok.Len())
	}
	p := tok.Policy()
	if !p.Scope("olga").All() || !slices.Equal(p.Scope("bob").Owners(), []string{"alice", "bob", "carol"}) {
		t.Errorf("scopes: olga %v, bob %v", p.Scope("olga"), p.Scope("bob").Owners())
	}
	if u := tok.Unlisted(); !slices.Equal(u, []string{"carol", "olga"}) {
		t.Errorf("unlisted callers %v, want carol and olga", u)
	}
	// The environment's comma-separated form takes the same lines.
	env, err := ParseTokens("alice=alice-token-0123456789,group team alice bob")
	if err != nil || !env.Policy().Scope("alice").Allows("bob") {
		t.Errorf("comma-separated configuration: %v", err)
	}
	// A configuration of roles and groups alone serves certificate callers.
	if certs, err := ParseTokens("group team alice bob"); err != nil || certs.Len() != 0 {
		t.Errorf("roles and groups without tokens: %v", err)
	}
	for _, bad := range []string{"role operator", "group", "role admin olga", "role alice-token-0123456789", "group g alice=x", "group team-a role"} {
		if _, err := ParseTokens(bad); err == nil {
			t.Errorf("ParseTokens(%q) succeeded", bad)
		}
	}
}

func TestCertificateNames(t *testing.T) {
	u, _ := url.Parse("spiffe://example.org/team-a/alice")
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, URIs: []*url.URL{u}, DNSNames: []string{"alice.example.org"}}
	if n, err := CertCN.Name(cert); err != nil || n != "alice" {
		t.Errorf("cn: %q %v", n, err)
	}
	if n, err := CertSAN.Name(cert); err != nil || n != u.String() {
		t.Errorf("san: %q %v", n, err)
	}
	if n, err := CertSAN.Name(&x509.Certificate{DNSNames: []string{"bob.example.org"}, EmailAddresses: []string{"bob@example.org"}}); err != nil || n != "bob.example.org" {
		t.Errorf("san without a URI: %q %v", n, err)
	}
	for _, bad := range []*x509.Certificate{{}, {Subject: pkix.Name{CommonName: "a\nb"}}, {Subject: pkix.Name{CommonName: strings.Repeat("x", 300)}}} {
		if _, err := CertCN.Name(bad); err == nil {
			t.Errorf("cn %q accepted", bad.Subject.CommonName)
		}
	}
	if _, err := CertSAN.Name(&x509.Certificate{Subject: pkix.Name{CommonName: "alice"}}); err == nil {
		t.Errorf("san: a certificate without SANs named a caller")
	}
	if _, err := ParseCertIdentity("serial"); err == nil {
		t.Errorf("an unknown identity was accepted")
	}
}

// TestCertificateCallers: without tokens, the certificate names the caller,
// from the TLS peer on the gRPC port and from the gateway's metadata on the
// in-process server only. With tokens too, the token is required and names
// the caller.
func TestCertificateCallers(t *testing.T) {
	roles, _ := ParseTokens("role operator olga")
	a := NewAuthenticator(roles, CertCN)
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}}
	state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
	tlsPeer := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
	if caller, err := call(t, a, false, tlsPeer); err != nil || caller != "alice" {
		t.Errorf("certificate: caller %q, %v", caller, err)
	}
	forged := metadata.NewIncomingContext(context.Background(), metadata.Pairs(ForwardedIdentity, "olga"))
	if _, err := call(t, a, false, forged); status.Code(err) != codes.Unauthenticated {
		t.Errorf("forwarded identity on the gRPC port: %v", err)
	}
	if caller, err := call(t, a, true, forged); err != nil || caller != "olga" {
		t.Errorf("forwarded identity in process: caller %q, %v", caller, err)
	}
	if _, err := call(t, a, true, context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("in process without a forwarded identity: %v", err)
	}

	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.TLS = &state
	if err := a.CheckHTTP(r); err != nil {
		t.Errorf("REST with a certificate: %v", err)
	}
	if md := a.ForwardHTTP(context.Background(), r); !slices.Equal(md.Get(ForwardedIdentity), []string{"alice"}) {
		t.Errorf("forwarded %v", md)
	}
	r.TLS = nil
	if err := a.CheckHTTP(r); status.Code(err) != codes.Unauthenticated {
		t.Errorf("REST without credentials: %v", err)
	}
	if md := a.ForwardHTTP(context.Background(), r); !slices.Equal(md.Get(ForwardedIdentity), []string{""}) {
		t.Errorf("forwarded without a certificate: %v", md)
	}

	tok, _ := ParseTokens("ops " + benchToken)
	both := NewAuthenticator(tok, CertCN)
	if _, err := call(t, both, false, tlsPeer); status.Code(err) != codes.Unauthenticated {
		t.Errorf("tokens configured, certificate without a token: %v", err)
	}
	withToken := metadata.NewIncomingContext(tlsPeer, metadata.Pairs("authorization", "Bearer "+benchToken))
	if caller, err := call(t, both, false, withToken); err != nil || caller != "ops" {
		t.Errorf("certificate and token: caller %q, %v", caller, err)
	}
}

func TestReloadReplacesTokens(t *testing.T) {
	first, _ := ParseTokens("ops " + benchToken)
	a := NewAuthenticator(first, CertNone)
	second, _ := ParseTokens("ops2 other-token-0123456789ab")
	a.Reload(second)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+benchToken))
	if _, err := call(t, a, false, ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a token removed by the reload still works: %v", err)
	}
}

// BenchmarkUnary measures the interceptor's cost per call, with
// authentication off as the baseline.
func BenchmarkUnary(b *testing.B) {
	tok, _ := ParseTokens("ops " + benchToken)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+benchToken))
	for _, bc := range []struct {
		name string
		a    *Authenticator
	}{{"off", nil}, {"bearer", NewAuthenticator(tok, CertNone)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := call(b, bc.a, false, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTokensGrammar: an entry is words; a name is one word, a token one
// word that may hold "="; anything else is refused with its line named.
func TestTokensGrammar(t *testing.T) {
	tok, err := ParseTokens("erin abcdefgh=ijklmnopqrstuvwxyz0123\nfrank=frank-token-0123456789=\n")
	if err != nil {
		t.Fatal(err)
	}
	for token, want := range map[string]string{
		"abcdefgh=ijklmnopqrstuvwxyz0123": "erin",
		"ijklmnopqrstuvwxyz0123":          "",
		"frank-token-0123456789=":         "frank",
	} {
		if got, _ := tok.lookup(token); got != want {
			t.Errorf("token %q names %q, want %q", token, got, want)
		}
	}
	for text, line := range map[string]string{
		"# callers\nerin x=abcdefgh ijklmnopqrstuvwxyz0123\n":        "line 2",
		"a a-token-0123456789abcdef\nb b-token one-two-three-four\n": "line 2",
		"a a-token-0123456789abcdef,b=b-token 0123456789abcdef":      "entry 2",
		"a a-token-0123456789abcdef\nb\x01 b-token-0123456789abcdef": "line 2",
		"a a-token-0123456789abcdef\n\ngroup team a#b":               "line 3",
		"a a-token-0123456789abcdef\nx x-token-0123456789abcdef,y":   "line 2, entry 2",
	} {
		_, err := ParseTokens(text)
		if err == nil || !strings.HasPrefix(err.Error(), line+":") {
			t.Errorf("ParseTokens(%q) = %v, want an error at %s", text, err, line)
			continue
		}
		if strings.Contains(err.Error(), "0123456789") || strings.Contains(err.Error(), "abcdefgh") {
			t.Errorf("the error quotes a token: %v", err)
		}
	}
}
