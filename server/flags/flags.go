// Package flags is cwpexportd's table of flags: each flag's name, default
// and help, bound to app.Options. The command parses it, `-h` prints it,
// and docs/flags.md is generated from it (`make generate`; `make
// checkgenerate` fails when the two differ), so that the defaults a user
// reads are the ones the service applies.
//
// A default is a named constant of the package that owns the bound
// (budget.DefaultRate, exports.DefaultCreateTimeout, ...). The polls'
// pacing (-min-poll-interval, -poll-timeout, -freshness) defaults in
// package tracker, which names no constants yet: those flags default to
// 0 and say the tracker's default in their help.
package flags

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/filefetch"
	"github.com/cwpexport/cwpexport/server/gateway"
	"github.com/cwpexport/cwpexport/server/limits"
	"github.com/cwpexport/cwpexport/server/service"
)

// Default listen addresses: loopback, so that a first run exposes nothing.
const (
	DefaultGRPCAddr = "127.0.0.1:9090"
	DefaultRESTAddr = "127.0.0.1:8080"
)

// Command holds what the flags set besides app.Options: the listeners and
// the values the command turns into options (files, lists, names).
type Command struct {
	GRPCAddr, RESTAddr string
	// Database is -database, resolved by app.ResolveDatabase.
	Database     string
	LogFormat    string
	TokensFile   string
	CertIdentity string
	// AllowedHosts is -rest-allowed-hosts, comma-separated.
	AllowedHosts string
	AuditLog     string
	// GRPCMaxConcurrentStreams is bounded to uint32 into app.Options.
	GRPCMaxConcurrentStreams uint
	// MetricsAddr is -metrics-addr: where GET /metrics listens; empty: nowhere.
	MetricsAddr string
	// AllowReadableSecrets is -insecure-allow-readable-secrets.
	AllowReadableSecrets bool
	// Version is -version: print the build and exit.
	Version bool
}

// Register defines cwpexportd's flags on fs, bound to o and to the
// returned Command.
func Register(fs *flag.FlagSet, o *app.Options) *Command {
	c := &Command{}
	fs.StringVar(&c.GRPCAddr, "grpc-addr", DefaultGRPCAddr, "gRPC listen address")
	fs.StringVar(&c.RESTAddr, "rest-addr", DefaultRESTAddr, "REST listen address")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", app.DefaultMetricsAddr, "address of GET /metrics (Prometheus), apart from the API's ports; empty: no metrics over HTTP")
	fs.StringVar(&o.Region, "region", os.Getenv("TENCENTCLOUD_REGION"), "cloud region (env TENCENTCLOUD_REGION; optional)")
	fs.StringVar(&o.Endpoint, "cloud-endpoint", "", "cloud API host:port override (default cwp.tencentcloudapi.com)")
	fs.StringVar(&o.Scheme, "cloud-scheme", "HTTPS", "cloud API scheme: HTTPS or HTTP (HTTP with credentials needs -insecure-allow-private-cloud)")
	fs.BoolVar(&o.AllowPrivateCloud, "insecure-allow-private-cloud", false, "DANGEROUS: the cloud is an emulator or on a private network: allow -cloud-scheme HTTP with credentials, and downloads over HTTP and from loopback, private and link-local addresses")
	fs.Int64Var(&o.MaxDownloadBytes, "download-max-bytes", filefetch.DefaultMaxBytes, "largest exported file the download proxy passes on")
	fs.DurationVar(&o.EmulatorPending, "emulator-pending", emulator.DefaultPendingFor, "how long emulated exports stay pending")
	fs.Float64Var(&o.ReadRate, "read-rate", budget.DefaultRate, fmt.Sprintf("ExportTasks calls per second, for all tasks together (cloud limit: %d)", budget.CloudQuota))
	fs.Float64Var(&o.CreateRate, "create-rate", budget.DefaultRate, fmt.Sprintf("ExportLicenseDetail calls per second (cloud limit: %d)", budget.CloudQuota))
	fs.DurationVar(&o.MinPollInterval, "min-poll-interval", 0, "floor between two polls of one task (default 1s)")
	fs.DurationVar(&o.PollTimeout, "poll-timeout", 0, "bound on one ExportTasks call; a slower answer is a transient failure, retried with backoff (default 10s)")
	fs.DurationVar(&o.CreateTimeout, "create-timeout", exports.DefaultCreateTimeout, "bound on one ExportLicenseDetail call, which runs to its end even when the caller leaves")
	fs.DurationVar(&o.Freshness, "freshness", 0, "GetExportTask answers from an observation younger than this (default 1s)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", service.DefaultHeartbeat, "interval of watch heartbeats while a task is pending")
	fs.StringVar(&o.DataDir, "data-dir", app.DefaultDataDir, "directory of the SQLite task registry (registry.db; one process at a time) and of the embedded emulator's state")
	fs.StringVar(&c.Database, "database", "", "the task registry's PostgreSQL database, postgres://user@host:port/db (or key=value), without a password (flags show in process listings: give it in DATABASE_URL, PGPASSWORD or a PGPASSFILE); unset: DATABASE_URL, else the PG* environment (PGHOST, PGDATABASE...), else SQLite in -data-dir; \"sqlite\": SQLite whatever the environment says")
	fs.DurationVar(&o.MaxFollowAge, "max-follow-age", exports.DefaultMaxFollowAge, "stop following a task still pending this long after its creation")
	fs.DurationVar(&o.Retention, "retention", app.DefaultRetention, "ended tasks are deleted from the registry this long after their creation, in small batches, once an hour for the fleet")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	fs.StringVar(&c.TokensFile, "tokens-file", "", "callers' file: \"caller-name token\", \"role operator NAME...\" and \"group TEAM NAME...\" lines, reloaded on SIGHUP; callers send \"Authorization: Bearer <token>\" (or set CWPEXPORT_TOKENS to the same entries separated by commas)")
	fs.StringVar(&o.TLSCertFile, "tls-cert", "", "PEM certificate: serve gRPC and REST over TLS")
	fs.StringVar(&o.TLSKeyFile, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&o.ClientCAFile, "tls-client-ca", "", "PEM CA certificates: require client certificates they signed (mutual TLS)")
	fs.IntVar(&o.MaxRequestBytes, "max-request-bytes", gateway.DefaultMaxBodyBytes, "largest request message (gRPC) or body (REST) accepted")
	fs.IntVar(&o.MaxStreamsPerCaller, "max-streams-per-caller", limits.DefaultStreamsPerCaller, "open watch streams per caller (unauthenticated callers count as one)")
	fs.Float64Var(&o.CallerShare, "caller-share", budget.DefaultCallerShare, "fraction of -create-rate one authenticated caller may use (1: no per-caller share)")
	fs.BoolVar(&o.AllowUnauthenticatedRemote, "insecure-allow-unauthenticated-remote", false, "DANGEROUS: serve on a non-loopback address with no caller authentication (no tokens, no mutual TLS)")
	fs.BoolVar(&o.AllowCleartextTokens, "insecure-allow-cleartext-tokens", false, "DANGEROUS: accept bearer tokens without TLS on a non-loopback address, where anyone on the path can read them")
	fs.StringVar(&c.CertIdentity, "tls-client-identity", "cn", "what names a caller in its client certificate under mutual TLS: cn (subject common name) or san (first URI, DNS or e-mail SAN)")
	fs.Float64Var(&o.ReadsPerCaller, "reads-per-caller", limits.DefaultReadsPerCaller, "GetExportTask and ListExportTasks calls per second per authenticated caller")
	fs.IntVar(&o.ReadBurst, "read-burst", limits.DefaultReadBurst, "bursts of reads one authenticated caller may make above -reads-per-caller")
	fs.UintVar(&c.GRPCMaxConcurrentStreams, "grpc-max-concurrent-streams", app.DefaultGRPCMaxConcurrentStreams, "concurrent streams per gRPC connection")
	fs.DurationVar(&o.GRPCMaxConnectionAge, "grpc-max-connection-age", app.DefaultGRPCMaxConnectionAge, "a gRPC connection is asked to close (GOAWAY) after this long")
	fs.DurationVar(&o.GRPCMaxConnectionAgeGrace, "grpc-max-connection-age-grace", app.DefaultGRPCMaxConnectionAgeGrace, "calls still running on a connection that reached its age are cut after this grace")
	fs.DurationVar(&o.GRPCKeepaliveMinTime, "grpc-keepalive-min-time", app.DefaultGRPCKeepaliveMinTime, "clients pinging more often than this are disconnected (GOAWAY ENHANCE_YOUR_CALM)")
	fs.IntVar(&o.RESTMaxConns, "rest-max-conns", app.DefaultRESTMaxConns, "open connections the REST port accepts at once (more wait to be accepted)")
	fs.DurationVar(&o.RESTBodyTimeout, "rest-body-timeout", gateway.DefaultBodyTimeout, "time a REST client has to send its request body (HTTP 408 after)")
	fs.StringVar(&c.AllowedHosts, "rest-allowed-hosts", "", "comma-separated host names the REST port answers to besides loopback names (Host and Origin checks; on by default on a loopback address)")
	fs.BoolVar(&c.AllowReadableSecrets, "insecure-allow-readable-secrets", false, "DANGEROUS: start (with a warning) although the tokens file, the TLS key or PGPASSFILE is readable by its group or others")
	fs.BoolVar(&c.Version, "version", false, "print the version, commit and Go toolchain, and exit")
	fs.StringVar(&c.AuditLog, "audit-log", "-", "where audit lines (one per export and download) go: a file (appended to, reopened on SIGHUP) or - for stderr")
	edgeFlags(fs, &o.Edge)
	return c
}

// Markdown writes the flags' table, as docs/flags.md holds it. Defaults
// read from the environment (-region) are shown as their flags' help says.
func Markdown(w io.Writer) error {
	fs := flag.NewFlagSet("cwpexportd", flag.ContinueOnError)
	Register(fs, &app.Options{})
	var b strings.Builder
	b.WriteString("<!-- Generated by `make generate` from server/flags (go run ./server/flags/flagsdoc); do not edit. -->\n")
	b.WriteString("# cwpexportd's flags\n\n")
	b.WriteString("Every flag of `cwpexportd`, with the default it applies (`cwpexportd -h` prints the same table).\n\n")
	b.WriteString("| Flag | Default | Meaning |\n|---|---|---|\n")
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		switch {
		case f.Name == "region":
			def = "" // from TENCENTCLOUD_REGION where the table is generated
		case def == "0" || def == "0s" || def == "false":
			def = "" // as -h: a zero default goes unsaid (the help names the package's)
		}
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `-%s` | %s | %s |\n", f.Name, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
	})
	_, err := io.WriteString(w, b.String())
	return err
}
