package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// adminGuard protects the /_emulator/ admin routes, which inject faults and
// end tasks: a request must name the emulator by an IP address or
// localhost (a name a page's DNS could rebind is refused), must not come
// from another origin (a page in a browser on the same machine), and, when
// Options.AdminToken is set, must carry it as a bearer token.
func (e *Emulator) adminGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !adminHost(r.Host) || crossOrigin(r) {
			writeJSON(w, http.StatusForbidden, adminResult{Error: "admin requests must name the emulator by address and come from no other origin"})
			return
		}
		if e.adminToken != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(e.adminToken)) != 1 {
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeJSON(w, http.StatusUnauthorized, adminResult{Error: "admin requests need the emulator's admin token (Authorization: Bearer ...)"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// adminHost reports whether a Host header names the emulator by an IP
// address or localhost.
func adminHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return net.ParseIP(host) != nil || strings.EqualFold(host, "localhost")
}

// crossOrigin reports whether a browser sent the request from another
// origin: an Origin of another host, or Fetch Metadata saying so.
func crossOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// AdminToken returns the token the admin routes require ("" for none).
func (e *Emulator) AdminToken() string { return e.adminToken }

// AdminTokenFromFile returns the admin token held in path, writing a
// random one there (readable by the owner only) when the file does not
// exist; an empty path means no token.
func AdminTokenFromFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err == nil {
		if token := strings.TrimSpace(string(b)); token != "" {
			return token, nil
		}
		return "", fmt.Errorf("the admin token file %s is empty", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return token, f.Close()
}
