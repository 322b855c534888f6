// Package filefetch fetches exported files from the cloud's object storage
// for the download proxy. The URL comes from a cloud answer, which neither
// the caller nor the service chooses: the client therefore goes nowhere
// else. It follows redirects only on the URL's own host and scheme, sends no
// Referer (the pre-signed URL is a credential), refuses loopback, private,
// link-local and other non-public destinations — checked on the address
// actually dialed, after name resolution, so DNS cannot point it inside —
// and, unless told otherwise, plain HTTP. Check then refuses answers whose
// size or media type cannot be an export file.
package filefetch

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxBytes bounds the size of a fetched file.
const DefaultMaxBytes int64 = 4 << 30

// MaxRedirects bounds the redirects followed on the storage host.
const MaxRedirects = 3

// Options configure a client.
type Options struct {
	// AllowPrivate lets the client fetch over plain HTTP and from loopback,
	// private (RFC 1918, RFC 4193), link-local and shared (RFC 6598)
	// addresses: for an emulated cloud, or storage on a private network.
	AllowPrivate bool
	// ResponseHeaderTimeout bounds the wait for the storage's answer
	// headers; default 30s.
	ResponseHeaderTimeout time.Duration
}

// ErrRefused wraps every refusal of a destination or a redirect.
var ErrRefused = errors.New("refused destination")

// NewClient returns an HTTP client for fetching exported files.
func NewClient(o Options) *http.Client {
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 30 * time.Second
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		d.Control = publicOnly
	}
	tr := &http.Transport{
		// Direct connections only: through a proxy, the address dialed
		// would be the proxy's, and the destination's check void.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
	}
	return &http.Client{
		Transport: schemeCheck{tr, o.AllowPrivate},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			// Go sets Referer to the previous URL: a pre-signed URL, which
			// grants access to the file, goes to nobody.
			req.Header.Del("Referer")
			first := via[0].URL
			switch {
			case len(via) > MaxRedirects:
				return fmt.Errorf("%w: more than %d redirects", ErrRefused, MaxRedirects)
			case !strings.EqualFold(req.URL.Host, first.Host) || req.URL.Scheme != first.Scheme:
				return fmt.Errorf("%w: a redirect off the storage host", ErrRefused)
			}
			return nil
		},
	}
}

// schemeCheck refuses plain HTTP unless private destinations are allowed.
type schemeCheck struct {
	rt           http.RoundTripper
	allowPrivate bool
}

func (s schemeCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !(s.allowPrivate && req.URL.Scheme == "http") {
		return nil, fmt.Errorf("%w: scheme %q (HTTPS only)", ErrRefused, req.URL.Scheme)
	}
	req.Header.Del("Referer")
	return s.rt.RoundTrip(req)
}

// publicOnly is the dialer's Control: it sees the address about to be
// connected, after name resolution, and refuses any that is not public.
func publicOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrRefused, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, ap.Addr())
	}
	return nil
}

// sharedSpace is RFC 6598's carrier-grade NAT range, where some clouds put
// their metadata services.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether a is a public unicast address: not loopback,
// private, link-local (where cloud metadata services answer), shared,
// multicast or unspecified.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast() && !sharedSpace.Contains(a) && !(a.Is4() && a.As4()[0] == 0)
}

// FileTypes are the media types an exported file may be answered with (an
// empty Content-Type is taken as application/octet-stream).
var FileTypes = []string{
	"text/csv",
	"text/plain",
	"application/octet-stream",
	"binary/octet-stream",
	"application/vnd.ms-excel",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	"application/zip",
	"application/x-zip-compressed",
	"application/gzip",
}

// Check refuses an answer whose declared size exceeds maxBytes or whose
// media type is not one of FileTypes (an HTML page, a JSON error, a
// metadata document). The body's actual size is the reader's to bound.
func Check(resp *http.Response, maxBytes int64) error {
	if resp.ContentLength > maxBytes {
		return fmt.Errorf("the file is %d bytes, more than the %d a download may be", resp.ContentLength, maxBytes)
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("the answer's media type %q cannot be read", ct)
	}
	for _, t := range FileTypes {
		if mt == t {
			return nil
		}
	}
	return fmt.Errorf("the answer's media type %s is not that of an exported file", mt)
}
