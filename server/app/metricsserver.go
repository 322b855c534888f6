package app

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"
)

// DefaultMetricsAddr is where cwpexportd serves its metrics by default:
// loopback, for a Prometheus agent on the same host. The metrics count
// every caller's calls by method and outcome: they are the operator's,
// not the API's callers'.
const DefaultMetricsAddr = "127.0.0.1:9464"

// metricsServer serves GET /metrics (Prometheus's text format) on the
// metrics listener. Requests must name the host by an IP address,
// localhost or an AllowedHosts name: a page in a browser cannot reach it
// through DNS rebinding.
func (s *Server) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.metricsHostAllowed(r.Host) {
				http.Error(w, "unknown host", http.StatusMisdirectedRequest)
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

func (s *Server) metricsHostAllowed(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return net.ParseIP(host) != nil || host == "localhost" || slices.Contains(s.opts.AllowedHosts, host)
}
