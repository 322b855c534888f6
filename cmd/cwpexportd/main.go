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
	"syscall"

	"golang.org/x/term"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/callerauth"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cwpexportd:", err)
		os.Exit(1)
	}
}

func run() error {
	var o app.Options
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
	flag.StringVar(&o.DataDir, "data-dir", "data", "directory of the task registry (registry.db); one process at a time")
	flag.DurationVar(&o.MaxFollowAge, "max-follow-age", 0, "stop following a task still pending this long after its creation (default 24h)")
	logFormat := flag.String("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	tokensFile := flag.String("tokens-file", "", "file of \"caller-name token\" lines; callers must send \"Authorization: Bearer <token>\" (or set CWPEXPORT_TOKENS to \"name=token,...\")")
	flag.StringVar(&o.TLSCertFile, "tls-cert", "", "PEM certificate: serve gRPC and REST over TLS")
	flag.StringVar(&o.TLSKeyFile, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&o.ClientCAFile, "tls-client-ca", "", "PEM CA certificates: require client certificates they signed (mutual TLS)")
	flag.IntVar(&o.MaxRequestBytes, "max-request-bytes", 1<<20, "largest request message (gRPC) or body (REST) accepted")
	flag.IntVar(&o.MaxStreamsPerCaller, "max-streams-per-caller", 1000, "open watch streams per caller (unauthenticated callers count as one)")
	flag.Float64Var(&o.CallerShare, "caller-share", 0.5, "fraction of -create-rate one authenticated caller may use (1: no per-caller share)")
	flag.BoolVar(&o.AllowUnauthenticatedRemote, "insecure-allow-unauthenticated-remote", false, "DANGEROUS: serve on a non-loopback address with no caller authentication (no tokens, no mutual TLS)")
	flag.Parse()
	tokens, err := loadTokens(*tokensFile)
	if err != nil {
		return err
	}
	o.Tokens = tokens
	// Credentials come from the environment only, never from flags that
	// would show in process listings.
	o.SecretID = os.Getenv("TENCENTCLOUD_SECRET_ID")
	o.SecretKey = os.Getenv("TENCENTCLOUD_SECRET_KEY")
	o.SessionToken = os.Getenv("TENCENTCLOUD_SESSION_TOKEN")
	o.Logger = newLogger(*logFormat)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := app.New(o)
	if err != nil {
		return err
	}
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
	o.Logger.Info("serving", "grpc", grpcLis.Addr().String(), "rest", "http://"+restLis.Addr().String(), "data_dir", o.DataDir)
	if o.TLSCertFile == "" && o.Tokens == nil {
		fmt.Fprintf(os.Stderr, "\nTry it:\n  curl -s -X POST http://%s/v1/license-detail:export -d '{}'\n  curl -sN http://%s/v1/export-tasks/TASK_ID:watch\n  grpcurl -plaintext -d '{}' %s cwpexport.v1.LicenseExportService/ExportLicenseDetailAndWatch\n\n",
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

func newLogger(format string) *slog.Logger {
	text := format == "text" || (format == "auto" && term.IsTerminal(int(os.Stderr.Fd())))
	if text {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}
