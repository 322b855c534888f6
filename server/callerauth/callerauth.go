// Package callerauth authenticates the service's callers and puts the
// caller's name in the request context. A caller is named by a bearer token
// (gRPC metadata "authorization: Bearer <token>"; grpc-gateway forwards the
// REST Authorization header as that metadata) or, under mutual TLS, by its
// verified client certificate (see CertIdentity). The configuration (tokens,
// roles and groups) can be replaced while the service runs.
package callerauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// ForwardedIdentity is the metadata key under which the REST gateway tells
// the in-process gRPC server which caller a REST client's certificate
// names: that server sees the gateway, not the client's TLS connection. Only
// the in-process server reads it; grpc-gateway lets no request header set
// it (an annotator's value replaces any). A binary key: a certificate's
// name may hold any UTF-8, which text metadata cannot carry.
const ForwardedIdentity = "x-cwpexport-client-identity-bin"

type callerKey struct{}

type slotKey struct{}

// Slot carries the authenticated caller's name back to an interceptor that
// runs before authentication (the call log, which must also log the calls
// authentication refuses) and so cannot see the context it derives.
type Slot struct {
	name     atomic.Pointer[string]
	admitted atomic.Bool
}

// WithSlot returns ctx with an empty Slot that authentication fills.
func WithSlot(ctx context.Context) (context.Context, *Slot) {
	sl := &Slot{}
	return context.WithValue(ctx, slotKey{}, sl), sl
}

// Admitted reports whether authentication admitted the call (as a named
// caller, or as the anonymous one when callers are not authenticated).
func (s *Slot) Admitted() bool { return s.admitted.Load() }

func (s *Slot) admit(name string) {
	s.name.Store(&name)
	s.admitted.Store(true)
}

// Name returns the caller authentication admitted, or "".
func (s *Slot) Name() string {
	if p := s.name.Load(); p != nil {
		return *p
	}
	return ""
}

// WithCaller returns ctx carrying the caller's name.
func WithCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, name)
}

// Caller returns the authenticated caller's name, or "" when callers are
// not authenticated.
func Caller(ctx context.Context) string {
	name, _ := ctx.Value(callerKey{}).(string)
	return name
}

// healthService is callable without a token: load balancers and
// orchestrators probe health without credentials.
const healthService = "grpc.health.v1.Health"

// Authenticator names callers. When the configuration holds tokens, every
// call must send one, and the token names the caller (a client certificate,
// if mutual TLS is on too, only admits the connection). Otherwise, when
// certificates name callers, the verified client certificate does. With
// neither (and for a nil Authenticator) every call passes as the anonymous
// caller "".
type Authenticator struct {
	tokens atomic.Pointer[Tokens]
	certs  CertIdentity
	failed func(ctx context.Context, inProcess bool, err error)
}

// OnFailure makes f hear of every call authentication refuses, with the
// call's context, before the call is answered: the edge bounds what
// failures cost per peer and reports them in aggregate, so that they need
// no log line each. Set it before the servers serve.
func (a *Authenticator) OnFailure(f func(ctx context.Context, inProcess bool, err error)) {
	a.failed = f
}

// NewAuthenticator returns an Authenticator of tokens (nil: none) and
// certificate identities (CertNone: none).
func NewAuthenticator(tokens *Tokens, certs CertIdentity) *Authenticator {
	a := &Authenticator{certs: certs}
	a.tokens.Store(tokens)
	return a
}

// Enabled reports whether callers are authenticated at all.
func (a *Authenticator) Enabled() bool {
	return a != nil && (a.tokens.Load() != nil || a.certs != CertNone)
}

// Tokens returns the configuration in force, or nil.
func (a *Authenticator) Tokens() *Tokens { return a.tokens.Load() }

// Reload makes t the configuration in force. Calls already admitted keep
// their caller; open streams continue.
func (a *Authenticator) Reload(t *Tokens) { a.tokens.Store(t) }

// certName returns the caller a certificate names, whether there was one.
type certName func() (name string, found bool, err error)

func (a *Authenticator) identify(authz []string, cert certName) (string, error) {
	if tokens := a.tokens.Load(); tokens != nil && tokens.Len() > 0 {
		token, ok := "", false
		if len(authz) > 0 {
			token, ok = bearer(authz[0])
		}
		if !ok {
			return "", apierror.Error(cwpexportv1.ErrorReason_UNAUTHENTICATED, "missing credentials: send the header \"Authorization: Bearer <token>\" (gRPC metadata \"authorization\")")
		}
		name, ok := tokens.lookup(token)
		if !ok {
			return "", apierror.Error(cwpexportv1.ErrorReason_UNAUTHENTICATED, "the bearer token is not valid")
		}
		return name, nil
	}
	name, found, err := cert()
	switch {
	case err != nil:
		return "", apierror.Error(cwpexportv1.ErrorReason_UNAUTHENTICATED, err.Error())
	case !found:
		return "", apierror.Error(cwpexportv1.ErrorReason_UNAUTHENTICATED, "missing credentials: present a client certificate")
	}
	return name, nil
}

// bearer takes the token from an Authorization value, as
// go-grpc-middleware's auth.AuthFromMD does (scheme case-insensitive).
func bearer(v string) (string, bool) {
	scheme, token, ok := strings.Cut(v, " ")
	return token, ok && strings.EqualFold(scheme, "bearer")
}

// verifiedLeaf returns the client certificate a TLS handshake verified.
func verifiedLeaf(state *tls.ConnectionState) *x509.Certificate {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return nil
	}
	return state.VerifiedChains[0][0]
}

func (a *Authenticator) fromCert(state *tls.ConnectionState) certName {
	return func() (string, bool, error) {
		leaf := verifiedLeaf(state)
		if leaf == nil {
			return "", false, nil
		}
		name, err := a.certs.Name(leaf)
		return name, err == nil, err
	}
}

// identifyCall names the caller of the gRPC call of ctx.
func (a *Authenticator) identifyCall(ctx context.Context, inProcess bool) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	cert := func() (string, bool, error) { return "", false, nil }
	switch {
	case inProcess:
		cert = func() (string, bool, error) {
			v := md.Get(ForwardedIdentity)
			return firstOf(v), firstOf(v) != "", nil
		}
	default:
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				cert = a.fromCert(&info.State)
			}
		}
	}
	return a.identify(md.Get("authorization"), cert)
}

// Admits reports whether the credentials of the gRPC call of ctx (its
// incoming metadata and TLS peer) name a caller, as authentication will
// check them, but with no other effect: the edge asks, of a peer that has
// failed too often, whether to refuse its call unchecked.
func (a *Authenticator) Admits(ctx context.Context) bool {
	if !a.Enabled() {
		return true
	}
	_, err := a.identifyCall(ctx, false)
	return err == nil
}

func (a *Authenticator) authenticate(inProcess bool) auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		sl, _ := ctx.Value(slotKey{}).(*Slot)
		if !a.Enabled() {
			if sl != nil {
				sl.admit("")
			}
			return ctx, nil
		}
		name, err := a.identifyCall(ctx, inProcess)
		if err != nil {
			if a.failed != nil {
				a.failed(ctx, inProcess, err)
			}
			return nil, err
		}
		if sl != nil {
			sl.admit(name)
		}
		return WithCaller(ctx, name), nil
	}
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func needsAuth(_ context.Context, c interceptors.CallMeta) bool { return c.Service != healthService }

// Unary returns the unary server interceptor that authenticates every call
// except health checks. inProcess marks the server that only the REST
// gateway reaches: it takes a certificate's caller from ForwardedIdentity,
// where the other server looks at its own TLS peer. (Streams are
// authenticated by Stream, from the server's own stream interceptor.)
func (a *Authenticator) Unary(inProcess bool) grpc.UnaryServerInterceptor {
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(a.authenticate(inProcess)), selector.MatchFunc(needsAuth))
}

// Stream authenticates a streaming call to fullMethod, as the stream
// interceptor of Interceptors does, for a server that checks its streams in
// one interceptor of its own: it returns the context carrying the caller,
// or an Unauthenticated status. Health checks pass as they are.
func (a *Authenticator) Stream(ctx context.Context, fullMethod string, inProcess bool) (context.Context, error) {
	if strings.HasPrefix(fullMethod, "/"+healthService+"/") {
		return ctx, nil
	}
	return a.authenticate(inProcess)(ctx)
}

// CheckHTTP authenticates a REST request as the gRPC server will, so that
// the gateway can refuse it before reading its body; it returns an
// Unauthenticated status or nil.
func (a *Authenticator) CheckHTTP(r *http.Request) error {
	if !a.Enabled() {
		return nil
	}
	_, err := a.identify(r.Header.Values("Authorization"), a.fromCert(r.TLS))
	return err
}

// ForwardHTTP returns the metadata by which the REST gateway tells the
// in-process gRPC server the caller a request's client certificate names
// (always the key, empty without one, so that nothing else can set it).
func (a *Authenticator) ForwardHTTP(_ context.Context, r *http.Request) metadata.MD {
	name := ""
	if a.Enabled() && a.certs != CertNone {
		name, _, _ = a.fromCert(r.TLS)()
	}
	return metadata.Pairs(ForwardedIdentity, name)
}
