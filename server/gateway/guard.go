package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/calllog"
)

// DefaultBodyTimeout bounds the time to receive a request body.
const DefaultBodyTimeout = 10 * time.Second

// guard answers, before grpc-gateway sees a request, what can be decided
// from its head, and reads its body within a time bound:
//
//  1. Host and Origin, when checked: a loopback service answers only to
//     loopback names (and the names configured), so that a DNS-rebinding
//     page cannot read it and a cross-site page cannot post to it (403);
//  2. credentials on /v1/, before the body is read (401; 429 with
//     Retry-After from a peer that has failed too often, and the
//     connection closed when it ignores that);
//  3. a POST's Content-Type, which must be application/json (415): a
//     browser sends no other type cross-site without a CORS preflight,
//     which this service does not grant;
//  4. the body, read whole within BodyTimeout (408) and MaxBodyBytes (413),
//     so that a client trickling bytes holds a connection for a bounded
//     time only.
//
// Every refusal is a google.rpc.Status body, logged as a call line, but
// for the failed authentications, which the Failures bound reports in
// aggregate. A refusal of a request whose body was not read closes the
// connection: the server would otherwise read (discard) the body before
// answering, for as long as the client takes to send it. Every route's
// body is read within BodyTimeout, including that discard.
type guard struct {
	opts Options
	mux  *runtime.ServeMux
	m    runtime.Marshaler
}

// host applies the Host and Origin checks to every route, and bounds in
// time the reading of every body: a handler that does not read it leaves
// net/http to discard it before answering.
func (g guard) host(next http.Handler) http.Handler {
	checked := g.wrap(next, g.checkHost)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hasBody(r) {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.opts.BodyTimeout))
		}
		checked.ServeHTTP(w, r)
	})
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// reported marks a refusal that the Failures bound has counted and
// reports itself: it gets no call line of its own.
type reported struct{ *runtime.HTTPStatusError }

func (r reported) Unwrap() error { return r.HTTPStatusError }

// dropped marks a refusal after which the connection is closed even
// without a body left to read: its peer ignores the refusals.
type dropped struct{ error }

func (d dropped) Unwrap() error { return d.error }

// api applies the checks of the API's routes and reads their bodies.
func (g guard) api(next http.Handler) http.Handler { return g.wrap(next, g.checkAPI) }

func (g guard) wrap(next http.Handler, check func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := check(w, r); err != nil {
			var hs *runtime.HTTPStatusError
			errors.As(err, &hs)
			var d dropped
			if hasBody(r) || errors.As(err, &d) {
				// The body was not read to its end: the connection cannot
				// carry another request, and closing it spares reading it.
				w.Header().Set("Connection", "close")
			}
			var rep reported
			if g.opts.Logger != nil && !errors.As(err, &rep) {
				calllog.Refused(g.opts.Logger, r, hs.HTTPStatus, status.Convert(hs.Err))
			}
			errorWithRetryAfter(r.Context(), g.mux, g.m, w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse is the gateway's answer with reason, at the reason's HTTP status.
func refuse(reason cwpexportv1.ErrorReason, format string, a ...any) error {
	return &runtime.HTTPStatusError{HTTPStatus: apierror.HTTPStatus(reason), Err: apierror.Error(reason, fmt.Sprintf(format, a...))}
}

func (g guard) checkHost(_ http.ResponseWriter, r *http.Request) error {
	if !g.opts.CheckHost || r.URL.Path == "/healthz" || r.URL.Path == "/livez" {
		return nil
	}
	if !g.hostAllowed(r.Host) {
		return refuse(cwpexportv1.ErrorReason_HOST_NOT_ALLOWED,
			"this service does not answer to the host name %q; use localhost or 127.0.0.1, or have the operator allow the name (-rest-allowed-hosts)", clip(r.Host))
	}
	if o := r.Header.Get("Origin"); o != "" && !g.originAllowed(o) {
		return refuse(cwpexportv1.ErrorReason_ORIGIN_NOT_ALLOWED, "requests from pages of %q are not accepted", clip(o))
	}
	return nil
}

func (g guard) checkAPI(w http.ResponseWriter, r *http.Request) error {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		return nil
	}
	if g.opts.Auth != nil {
		if err := g.checkAuth(r); err != nil {
			return err
		}
	}
	if r.Method == http.MethodPost {
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
			return refuse(cwpexportv1.ErrorReason_UNSUPPORTED_MEDIA_TYPE,
				"the body must be UTF-8 JSON: send the header \"Content-Type: application/json\" (charset utf-8 or none)")
		}
	}
	return g.readBody(w, r)
}

// checkAuth authenticates a request; one without valid credentials from a
// peer that has failed too often is refused 429 instead of 401.
func (g guard) checkAuth(r *http.Request) error {
	err := g.opts.Auth.CheckHTTP(r)
	if err == nil {
		return nil
	}
	refusal := &runtime.HTTPStatusError{HTTPStatus: http.StatusUnauthorized, Err: err}
	if g.opts.Failures == nil {
		return refusal
	}
	peer := netip.Addr{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		peer = ap.Addr().Unmap()
	}
	if g.opts.Failures.Exhausted(peer) {
		err, drop := g.opts.Failures.Refuse(peer)
		var refused error = reported{&runtime.HTTPStatusError{HTTPStatus: http.StatusTooManyRequests, Err: err}}
		if drop {
			refused = dropped{refused}
		}
		return refused
	}
	g.opts.Failures.Failed(peer, "REST "+status.Convert(err).Message())
	return reported{refusal}
}

// readBody reads the whole body within the time and size bounds and hands
// the handler a copy: grpc-gateway reads it whole anyway.
func (g guard) readBody(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(g.opts.BodyTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes))
	// Streams answer for as long as they last: no read deadline after this.
	_ = rc.SetReadDeadline(time.Time{})
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return refuse(cwpexportv1.ErrorReason_REQUEST_TOO_LARGE, "the request body is larger than the limit of %d bytes", tooLarge.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return refuse(cwpexportv1.ErrorReason_REQUEST_BODY_TIMEOUT, "the request body did not arrive within %s", g.opts.BodyTimeout)
	case err != nil:
		return refuse(cwpexportv1.ErrorReason_REQUEST_BODY_UNREADABLE, "the request body could not be read")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// hostAllowed reports whether a Host header (or an Origin's host) names
// this service: a loopback name (which a DNS-rebinding page cannot use:
// browsers resolve localhost names themselves) or a configured name.
func (g guard) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	for _, a := range g.opts.AllowedHosts {
		if strings.EqualFold(strings.TrimSuffix(a, "."), host) {
			return true
		}
	}
	return false
}

func (g guard) originAllowed(origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && g.hostAllowed(u.Host)
}

// clip shortens a caller's text quoted back in an error.
func clip(s string) string {
	if len(s) > 100 {
		// Cut on a rune boundary: a status message must be valid UTF-8.
		return strings.ToValidUTF8(s[:100], "") + "…"
	}
	return s
}
