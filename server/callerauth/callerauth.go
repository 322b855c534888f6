// Package callerauth authenticates the service's callers with bearer tokens
// (gRPC metadata "authorization: Bearer <token>"; grpc-gateway forwards the
// REST Authorization header as that metadata) and puts the caller's name in
// the request context.
package callerauth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MinTokenLen is the shortest accepted bearer token: shorter ones are
// guessable.
const MinTokenLen = 16

// Tokens maps bearer tokens to caller names. Only SHA-256 digests of the
// tokens are kept, so a dump of the process's memory structures or an
// accidental %v never shows a token.
type Tokens struct {
	byDigest map[[sha256.Size]byte]string
}

// ParseTokens reads "name token" pairs, one per line or separated by
// commas; "name=token" is accepted too. Blank lines and lines starting with
// # are ignored. Names must be unique and tokens at least MinTokenLen bytes.
// Error messages name the entry by position and caller name, never by token.
func ParseTokens(text string) (*Tokens, error) {
	t := &Tokens{byDigest: map[[sha256.Size]byte]string{}}
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(text, ",", "\n")))
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		name, token, ok := strings.Cut(line, "=")
		if !ok {
			fields := strings.Fields(line)
			if len(fields) != 2 {
				return nil, fmt.Errorf("token entry %d: want \"name token\"", n)
			}
			name, token = fields[0], fields[1]
		}
		name, token = strings.TrimSpace(name), strings.TrimSpace(token)
		switch {
		case name == "":
			return nil, fmt.Errorf("token entry %d: the caller name is empty", n)
		case names[name]:
			return nil, fmt.Errorf("token entry %d: caller %q is listed twice", n, name)
		case len(token) < MinTokenLen:
			return nil, fmt.Errorf("token entry %d (caller %q): the token must be at least %d characters", n, name, MinTokenLen)
		}
		d := sha256.Sum256([]byte(token))
		if _, dup := t.byDigest[d]; dup {
			return nil, fmt.Errorf("token entry %d (caller %q): the token is already given to another caller", n, name)
		}
		names[name] = true
		t.byDigest[d] = name
	}
	if n == 0 {
		return nil, errors.New("no tokens configured")
	}
	return t, nil
}

// LoadTokens reads a tokens file (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTokens(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Len is the number of configured tokens.
func (t *Tokens) Len() int { return len(t.byDigest) }

// lookup returns the caller a token belongs to. Comparing digests through a
// map does not reveal, by timing, how much of a guessed token was right.
func (t *Tokens) lookup(token string) (string, bool) {
	name, ok := t.byDigest[sha256.Sum256([]byte(token))]
	return name, ok
}

type callerKey struct{}

type slotKey struct{}

// Slot carries the authenticated caller's name back to an interceptor that
// runs before authentication (the call log, which must also log the calls
// authentication refuses) and so cannot see the context it derives.
type Slot struct{ name atomic.Pointer[string] }

// WithSlot returns ctx with an empty Slot that authentication fills.
func WithSlot(ctx context.Context) (context.Context, *Slot) {
	sl := &Slot{}
	return context.WithValue(ctx, slotKey{}, sl), sl
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

// Interceptors authenticate every call except health checks. With nil
// tokens, every call passes as the anonymous caller "".
type Interceptors struct {
	Tokens *Tokens
}

func (a Interceptors) authenticate(ctx context.Context) (context.Context, error) {
	if a.Tokens == nil {
		return ctx, nil
	}
	token, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "missing credentials: send the header \"Authorization: Bearer <token>\" (gRPC metadata \"authorization\")")
	}
	name, ok := a.Tokens.lookup(token)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "the bearer token is not valid")
	}
	if sl, ok := ctx.Value(slotKey{}).(*Slot); ok {
		sl.name.Store(&name)
	}
	return WithCaller(ctx, name), nil
}

func needsAuth(_ context.Context, c interceptors.CallMeta) bool { return c.Service != healthService }

// Unary is the unary server interceptor.
func (a Interceptors) Unary() grpc.UnaryServerInterceptor {
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(a.authenticate), selector.MatchFunc(needsAuth))
}

// Stream is the stream server interceptor.
func (a Interceptors) Stream() grpc.StreamServerInterceptor {
	return selector.StreamServerInterceptor(auth.StreamServerInterceptor(a.authenticate), selector.MatchFunc(needsAuth))
}
