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
	"github.com/cwpexport/cwpexport/server/buildinfo"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/flags"
	"github.com/cwpexport/cwpexport/server/telemetry"

	// CA roots and time zones inside the binary: the image has no files
	// of the system's to find them in (used only where the system has none).
	_ "golang.org/x/crypto/x509roots/fallback"
	_ "time/tzdata"
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
	c := flags.Register(flag.CommandLine, &o)
	flag.Parse()
	if c.Version {
		fmt.Println("cwpexportd", buildinfo.Get())
		return nil
	}
	tokens, err := loadTokens(c.TokensFile)
	if err != nil {
		return err
	}
	o.Tokens = tokens
	o.GRPCMaxConcurrentStreams = uint32(min(c.GRPCMaxConcurrentStreams, 1<<31))
	if o.CertIdentity, err = callerauth.ParseCertIdentity(c.CertIdentity); err != nil {
		return fmt.Errorf("-tls-client-identity: %w", err)
	}
	if c.AllowedHosts != "" {
		for _, h := range strings.Split(c.AllowedHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				o.AllowedHosts = append(o.AllowedHosts, h)
			}
		}
	}
	audit, err := openAuditLog(c.AuditLog)
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
	o.Logger = newLogger(c.LogFormat)
	o.Database, databaseFrom = app.ResolveDatabase(c.Database, os.Getenv)
	secrets := secretFiles{allowReadable: c.AllowReadableSecrets, log: o.Logger}
	pgpass := ""
	if o.Database != "" {
		pgpass = os.Getenv("PGPASSFILE") // the registry's password, when not in the environment
	}
	if err := secrets.check(c.TokensFile, o.TLSKeyFile, pgpass); err != nil {
		return err
	}

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
	if c.MetricsAddr != "" {
		if o.MetricsListener, err = net.Listen("tcp", c.MetricsAddr); err != nil {
			return fmt.Errorf("-metrics-addr: %w", err)
		}
	}
	srv, err := app.New(o)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, srv, c.TokensFile, secrets, audit, o.Logger)
	grpcLis, err := net.Listen("tcp", c.GRPCAddr)
	if err != nil {
		return err
	}
	restLis, err := net.Listen("tcp", c.RESTAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	if a := srv.EmulatorAddr(); a != "" {
		o.Logger.Info("no cloud credentials (TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY): using the embedded CWP emulator", "emulator", "http://"+a)
	}
	metricsURL := "off"
	if o.MetricsListener != nil {
		metricsURL = "http://" + o.MetricsListener.Addr().String() + "/metrics"
	}
	o.Logger.Info("serving", "grpc", grpcLis.Addr().String(), "rest", restScheme(o)+restLis.Addr().String(), "metrics", metricsURL, "data_dir", o.DataDir, "registry_chosen_by", databaseFrom)
	fmt.Fprint(os.Stderr, banner(grpcLis.Addr().String(), restLis.Addr().String(), o.TLSCertFile != "", o.Tokens != nil))

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
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, srv *app.Server, tokensFile string, secrets secretFiles, audit *auditFile, log *slog.Logger) {
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
		err := secrets.check(tokensFile)
		var tokens *callerauth.Tokens
		if err == nil {
			tokens, err = callerauth.LoadTokens(tokensFile)
		}
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

// banner tells the person who started the service where its console is
// and, when calls need no credentials, how to make a first one.
func banner(grpcAddr, restAddr string, tls, tokens bool) string {
	// A wildcard listener is reached on this host through loopback.
	if host, port, err := net.SplitHostPort(restAddr); err == nil && net.ParseIP(host).IsUnspecified() {
		restAddr = net.JoinHostPort("127.0.0.1", port)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	b := fmt.Sprintf("\nConsole: %s://%s/\n", scheme, restAddr)
	if !tls && !tokens {
		b += fmt.Sprintf(`Try it, from another terminal:
  go run ./cmd/cwpexport export --watch --addr %[2]s
  curl -s -X POST http://%[1]s/v1/license-detail:export -H 'Content-Type: application/json' -d '{}'
  curl -sN http://%[1]s/v1/export-tasks/TASK_ID:watch   # TASK_ID: the task.taskId answered above
  grpcurl -plaintext -d '{}' %[2]s cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch
`, restAddr, grpcAddr)
	}
	return b + "\n"
}
