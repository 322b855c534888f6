// Package webui serves the console page: the exports this service created
// with their states, one export followed live over Server-Sent Events, the
// form that starts an export, and the cloud budget drawn from GET
// /v1/budget. Plain ES modules, no build step; everything is embedded and
// the page loads nothing from elsewhere.
package webui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the page's and its assets' policy.
const ContentSecurityPolicy = "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Handler serves the page at / and its assets under /ui/.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No other origin may frame the page (clickjacking), a <base> or
		// a form cannot send the page's requests elsewhere.
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" {
			http.ServeFileFS(w, r, sub, "index.html")
			return
		}
		files.ServeHTTP(w, r)
	})
}
