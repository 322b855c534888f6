// Command cwpexportd serves the CWP license export gateway over gRPC and
// REST. Without cloud credentials it runs on an embedded cloud emulator.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/gateway"
	"github.com/cwpexport/cwpexport/server/limits"
	"github.com/cwpexport/cwpexport/server/telemetry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cwpexportd:", err)
		os.Exit(1)
	}
}

func run() error {
	var o app.Options
	var databaseFrom string
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:9090", "gRPC listen address")
	restAddr := flag.String("rest-addr", "127.0.0.1:8080", "REST listen address")
	flag.StringVar(&o.Region, "region", os.Getenv("TENCENTCLOUD_REGION"), "cloud region (env TENCENTCLOUD_REGION; optional)")
	flag.StringVar(&o.Endpoint, "cloud-endpoint", "", "cloud API host:port override (default cwp.tencentcloudapi.com)")
	flag.StringVar(&o.Scheme, "cloud-scheme", "HTTPS", "cloud API scheme: HTTPS or HTTP")
	flag.DurationVar(&o.EmulatorPending, "emulator-pending", 0, "how long emulated exports stay pending (default 3s)")
	flag.Float64Var(&o.ReadRate, "read-rate", 18, "ExportTasks calls per second, for all tasks together (cloud limit: 20)")
	flag.Float64Var(&o.CreateRate, "create-rate", 18, "ExportLicenseDetail calls per second (cloud limit: 20)")
	flag.DurationVar(&o.MinPollInterval, "min-poll-interval", 0, "floor between two polls of one task (default 1s)")
	flag.DurationVar(&o.PollTimeout, "poll-timeout", 0, "bound on one ExportTasks call; a slower answer is a transient failure, retried with backoff (default 10s)")
	flag.DurationVar(&o.CreateTimeout, "create-timeout", 0, "bound on one ExportLicenseDetail call, which runs to its end even when the caller leaves (default 20s)")
	flag.DurationVar(&o.Freshness, "freshness", 0, "GetExportTask answers from an observation younger than this (default 1s)")
	flag.DurationVar(&o.Heartbeat, "heartbeat", 0, "interval of watch heartbeats while a task is pending (default 5s)")
	flag.StringVar(&o.DataDir, "data-dir", "data", "directory of the SQLite task registry (registry.db; one process at a time) and of the embedded emulator's state")
	database := flag.String("database", "", "the task registry's PostgreSQL database, postgres://user@host:port/db (or key=value); unset: DATABASE_URL, else the PG* environment (PGHOST, PGDATABASE...), else SQLite in -data-dir; \"sqlite\": SQLite whatever the environment says")
	flag.DurationVar(&o.MaxFollowAge, "max-follow-age", 0, "stop following a task still pending this long after its creation (default 24h)")
	flag.DurationVar(&o.Retention, "retention", app.DefaultRetention, "ended tasks are deleted from the registry this long after their creation, in small batches, once an hour for the fleet")
	logFormat := flag.String("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	tokensFile := flag.String("tokens-file", "", "callers' file: \"caller-name token\", \"role operator NAME...\" and \"group TEAM NAME...\" lines, reloaded on SIGHUP; callers send \"Authorization: Bearer <token>\" (or set CWPEXPORT_TOKENS to the same entries separated by commas)")
	flag.StringVar(&o.TLSCertFile, "tls-cert", "", "PEM certificate: serve gRPC and REST over TLS")
	flag.StringVar(&o.TLSKeyFile, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&o.ClientCAFile, "tls-client-ca", "", "PEM CA certificates: require client certificates they signed (mutual TLS)")
	flag.IntVar(&o.MaxRequestBytes, "max-request-bytes", 1<<20, "largest request message (gRPC) or body (REST) accepted")
	flag.IntVar(&o.MaxStreamsPerCaller, "max-streams-per-caller", 1000, "open watch streams per caller (unauthenticated callers count as one)")
	flag.Float64Var(&o.CallerShare, "caller-share", 0.5, "fraction of -create-rate one authenticated caller may use (1: no per-caller share)")
	flag.BoolVar(&o.AllowUnauthenticatedRemote, "insecure-allow-unauthenticated-remote", false, "DANGEROUS: serve on a non-loopback address with no caller authentication (no tokens, no mutual TLS)")
	flag.BoolVar(&o.AllowCleartextTokens, "insecure-allow-cleartext-tokens", false, "DANGEROUS: accept bearer tokens without TLS on a non-loopback address, where anyone on the path can read them")
	certIdentity := flag.String("tls-client-identity", "cn", "what names a caller in its client certificate under mutual TLS: cn (subject common name) or san (first URI, DNS or e-mail SAN)")
	flag.Float64Var(&o.ReadsPerCaller, "reads-per-caller", limits.DefaultReadsPerCaller, "GetExportTask and ListExportTasks calls per second per authenticated caller")
	flag.IntVar(&o.ReadBurst, "read-burst", limits.DefaultReadBurst, "bursts of reads one authenticated caller may make above -reads-per-caller")
	grpcStreams := flag.Uint("grpc-max-concurrent-streams", app.DefaultGRPCMaxConcurrentStreams, "concurrent streams per gRPC connection")
	flag.DurationVar(&o.GRPCMaxConnectionAge, "grpc-max-connection-age", app.DefaultGRPCMaxConnectionAge, "a gRPC connection is asked to close (GOAWAY) after this long")
	flag.DurationVar(&o.GRPCMaxConnectionAgeGrace, "grpc-max-connection-age-grace", app.DefaultGRPCMaxConnectionAgeGrace, "calls still running on a connection that reached its age are cut after this grace")
	flag.DurationVar(&o.GRPCKeepaliveMinTime, "grpc-keepalive-min-time", app.DefaultGRPCKeepaliveMinTime, "clients pinging more often than this are disconnected (GOAWAY ENHANCE_YOUR_CALM)")
	flag.IntVar(&o.RESTMaxConns, "rest-max-conns", app.DefaultRESTMaxConns, "open connections the REST port accepts at once (more wait to be accepted)")
	flag.DurationVar(&o.RESTBodyTimeout, "rest-body-timeout", gateway.DefaultBodyTimeout, "time a REST client has to send its request body (HTTP 408 after)")
	allowedHosts := flag.String("rest-allowed-hosts", "", "comma-separated host names the REST port answers to besides loopback names (Host and Origin checks; on by default on a loopback address)")
	auditLog := flag.String("audit-log", "-", "where audit lines (one per export and download) go: a file (appended to, reopened on SIGHUP) or - for stderr")
	flag.Parse()
	tokens, err := loadTokens(*tokensFile)
	if err != nil {
		return err
	}
	o.Tokens = tokens
	o.GRPCMaxConcurrentStreams = uint32(min(*grpcStreams, 1<<31))
	if o.CertIdentity, err = callerauth.ParseCertIdentity(*certIdentity); err != nil {
		return fmt.Errorf("-tls-client-identity: %w", err)
	}
	if *allowedHosts != "" {
		for _, h := range strings.Split(*allowedHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				o.AllowedHosts = append(o.AllowedHosts, h)
			}
		}
	}
	audit, err := openAuditLog(*auditLog)
	if err != nil {
		return err
	}
	defer audit.Close()
	o.AuditLogger = slog.New(slog.NewJSONHandler(audit, nil))
	// Credentials come from the environment only, never from flags that
	// would show in process listings.
	o.SecretID = os.Getenv("TENCENTCLOUD_SECRET_ID")
	o.SecretKey = os.Getenv("TENCENTCLOUD_SECRET_KEY")
	o.SessionToken = os.Getenv("TENCENTCLOUD_SESSION_TOKEN")
	o.Logger = newLogger(*logFormat)
	o.Database, databaseFrom = app.ResolveDatabase(*database, os.Getenv)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Traces go where the OTEL_* environment variables say; none is off.
	tracing, err := telemetry.FromEnv(ctx, o.Logger)
	if err != nil {
		return err
	}
	defer flushTraces(tracing, o.Logger)
	o.TracerProvider = tracing.Provider
	if tracing.Provider != nil {
		o.Logger.Info("exporting traces", "exporters", tracing.Exporters)
	}
	srv, err := app.New(o)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, srv, *tokensFile, audit, o.Logger)
	grpcLis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	restLis, err := net.Listen("tcp", *restAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	if a := srv.EmulatorAddr(); a != "" {
		o.Logger.Info("no cloud credentials (TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY): using the embedded CWP emulator", "emulator", "http://"+a)
	}
	o.Logger.Info("serving", "grpc", grpcLis.Addr().String(), "rest", "http://"+restLis.Addr().String(), "data_dir", o.DataDir, "registry_chosen_by", databaseFrom)
	if o.TLSCertFile == "" && o.Tokens == nil {
		fmt.Fprintf(os.Stderr, "\nTry it:\n  curl -s -X POST http://%s/v1/license-detail:export -H 'Content-Type: application/json' -d '{}'\n  curl -sN http://%s/v1/export-tasks/TASK_ID:watch\n  grpcurl -plaintext -d '{}' %s cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch\n\n",
			restLis.Addr(), restLis.Addr(), grpcLis.Addr())
	}

	return srv.Serve(ctx, grpcLis, restLis)
}

// loadTokens reads the callers' tokens from path or, without one, from
// CWPEXPORT_TOKENS; neither means callers are not authenticated.
func loadTokens(path string) (*callerauth.Tokens, error) {
	if path != "" {
		return callerauth.LoadTokens(path)
	}
	if env := os.Getenv("CWPEXPORT_TOKENS"); env != "" {
		t, err := callerauth.ParseTokens(env)
		if err != nil {
			return nil, fmt.Errorf("CWPEXPORT_TOKENS: %w", err)
		}
		return t, nil
	}
	return nil, nil
}

// reloadOnHUP reloads the callers' configuration from the tokens file and
// reopens the audit log (after a rotation) on each SIGHUP, until ctx ends.
// A configuration that does not load is refused and the one in force stays.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, srv *app.Server, tokensFile string, audit *auditFile, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if err := audit.Reopen(); err != nil {
			log.Error("SIGHUP: reopen the audit log", "err", err)
		}
		if tokensFile == "" {
			log.Info("SIGHUP: no -tokens-file to reload (CWPEXPORT_TOKENS is read at start-up only)")
			continue
		}
		tokens, err := callerauth.LoadTokens(tokensFile)
		if err == nil {
			err = srv.Reload(tokens)
		}
		if err != nil {
			log.Error("SIGHUP: the callers' configuration was not reloaded; the previous one stays in force", "err", err)
		}
	}
}

// flushTraces exports the spans still buffered, within a bound: an exit
// must not hang on an unreachable collector.
func flushTraces(t *telemetry.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("traces lost at exit", "err", err)
	}
}

func newLogger(format string) *slog.Logger {
	text := format == "text" || (format == "auto" && term.IsTerminal(int(os.Stderr.Fd())))
	if text {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}
