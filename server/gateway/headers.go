package gateway

import "net/http"

// apiHeaders marks every API answer as one no cache may keep — answers
// carry pre-signed download URLs — and as of the media type it declares.
func apiHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
