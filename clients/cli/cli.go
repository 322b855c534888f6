// Package cli implements cwpexport, the command-line client of the CWP
// license export gateway: it starts exports, follows them with live
// progress, reads and lists tasks and downloads exported files, over gRPC.
//
// Exit codes, for scripts:
//
//	0  success: the command did what it says (an export FINISHED)
//	1  an unexpected failure (for example the output file cannot be written)
//	2  invalid input: bad flags or arguments, or the service answered InvalidArgument
//	3  the export ended in ERROR
//	4  the service cannot be reached
//	5  the task is not known (NotFound)
//	6  the service answered another error (cloud fault, budget exhausted, ...)
//	130 interrupted (Ctrl-C)
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/buildinfo"
)

// Exit codes; see the package documentation.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitInvalid     = 2
	ExitExportError = 3
	ExitUnreachable = 4
	ExitNotFound    = 5
	ExitService     = 6
	ExitInterrupted = 130
)

// DefaultAddr is the gRPC address of `make run`.
const DefaultAddr = "127.0.0.1:9090"

// IO is where a command reads and writes. Stdout decides whether output is
// live (a terminal) or plain.
type IO struct {
	Stdout io.Writer
	Stderr io.Writer
	// Terminal forces live output, as on a terminal, whatever Stdout is.
	Terminal bool
}

// exitError carries an exit code with the error to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, format string, a ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, a...)}
}

// app holds the global flags and the connection of one invocation.
type app struct {
	io     IO
	addr   string
	dialer connFlags
	output string
	tty    bool
	// reconnectTimeout bounds the retries after Unavailable; 0 turns them off.
	reconnectTimeout time.Duration
	reached          *reachedService
	conn             *grpc.ClientConn
	client           cwpexportv1.LicenseExportServiceClient
}

// Run runs the command line args (without the program name) and returns the
// exit code. ctx ending (Ctrl-C) stops the command.
func Run(ctx context.Context, args []string, stdio IO) int {
	a := &app{io: stdio, tty: stdio.Terminal || isTerminal(stdio.Stdout), reached: &reachedService{}}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdio.Stdout)
	root.SetErr(stdio.Stderr)
	err := root.ExecuteContext(ctx)
	if a.conn != nil {
		a.conn.Close()
	}
	if err == nil {
		return ExitOK
	}
	code := a.exitCode(ctx, err)
	fmt.Fprintln(stdio.Stderr, "cwpexport:", describe(err))
	return code
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// defaultWidth is the width assumed when stdout is not a terminal that
// says its own.
const defaultWidth = 80

// terminalWidth returns the width of the terminal w is now (it may be
// resized while a line is live), else defaultWidth.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 0 {
			return width
		}
	}
	return defaultWidth
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "cwpexport",
		Short: "Start CWP license-detail exports and follow them to their file",
		Long: `cwpexport talks to the CWP license export gateway over gRPC. --addr may list
several replicas (a,b,c): calls go round-robin to those that answer. When
the service goes away during a watch (a replica dies or drains), the watch
resumes by task id; a broken download starts again from its beginning.

Exit codes: 0 success (an export FINISHED), 1 unexpected failure, 2 invalid
input, 3 the export ended in ERROR, 4 the service cannot be reached, 5 the
task is not known, 6 another error from the service, 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version: the build, as the daemon's --version prints it.
		Version: buildinfo.Get().String(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case "text", "json":
			default:
				return exitWith(ExitInvalid, "--output must be text or json, not %q", a.output)
			}
			if a.reconnectTimeout < 0 {
				return exitWith(ExitInvalid, "--reconnect-timeout must not be negative")
			}
			dial, err := a.dialer.dialOptions(a.addr)
			if err != nil {
				return exitWith(ExitInvalid, "%v", err)
			}
			tgt, more, err := target(a.addr)
			if err != nil {
				return exitWith(ExitInvalid, "%v", err)
			}
			dial = append(append(dial, more...), grpc.WithStatsHandler(a.reached))
			conn, err := grpc.NewClient(tgt, dial...)
			if err != nil {
				return exitWith(ExitInvalid, "--addr %q: %v", a.addr, err)
			}
			a.conn, a.client = conn, cwpexportv1.NewLicenseExportServiceClient(conn)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.addr, "addr", DefaultAddr, "gRPC address of the service: host:port, several host:port separated by commas (calls spread round-robin over those that answer), or a gRPC target such as dns:///host:port")
	root.PersistentFlags().DurationVar(&a.reconnectTimeout, "reconnect-timeout", DefaultReconnectTimeout, "after the service goes away (Unavailable), how long to keep resuming a watch, restarting a download or resending an export with its request id; 0 turns this off")
	root.PersistentFlags().BoolVar(&a.dialer.tls, "tls", false, "use TLS, trusting the system's certificate authorities")
	root.PersistentFlags().StringVar(&a.dialer.caFile, "ca-file", "", "use TLS, trusting the CA certificates in this PEM file")
	root.PersistentFlags().StringVar(&a.dialer.certFile, "cert-file", "", "client certificate (PEM) for mutual TLS")
	root.PersistentFlags().StringVar(&a.dialer.keyFile, "key-file", "", "client key (PEM) for mutual TLS")
	root.PersistentFlags().StringVar(&a.dialer.tokenFile, "token-file", "", "file holding the bearer token (default: the "+TokenEnv+" environment variable)")
	root.PersistentFlags().BoolVar(&a.dialer.plaintextToken, "insecure-plaintext-token", false, "send the bearer token without TLS to an address beyond loopback (anyone on the path can read it)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json (one JSON object per line)")
	root.SetVersionTemplate("cwpexport {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: ExitInvalid, err: err} })
	root.AddCommand(a.exportCommand(), a.watchCommand(), a.getCommand(), a.listCommand(), a.downloadCommand())
	return root
}

// exitCode maps an error to the documented exit codes.
func (a *app) exitCode(ctx context.Context, err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if ctx.Err() != nil {
		return ExitInterrupted
	}
	var early endedEarly
	if errors.As(err, &early) {
		return ExitService
	}
	st, ok := status.FromError(err)
	if !ok {
		if isUsageError(err) {
			return ExitInvalid
		}
		return ExitFailure
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return ExitInvalid
	case codes.NotFound:
		return ExitNotFound
	case codes.Canceled:
		return ExitInterrupted
	case codes.Unavailable, codes.DeadlineExceeded:
		if apierror.Info(st.Err()) == nil {
			return ExitUnreachable
		}
	}
	return ExitService
}

// isUsageError recognises cobra's own argument errors (wrong number of
// arguments, unknown command).
func isUsageError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "arg(s)") || strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag")
}

// describe renders an error for people: a gRPC status with its code, its
// field violations one per line, and the cloud's RequestId when known.
func describe(err error) string {
	var ee *exitError
	if errors.As(err, &ee) {
		err = ee.err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", st.Code(), withoutFirstViolation(st))
	// Without the service's ErrorInfo, the error comes from the transport.
	if apierror.Info(st.Err()) == nil && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded) {
		b.WriteString("\n  is the service running? (start it with `make run`, or point --addr at it)")
	}
	if rid := apierror.Info(st.Err()).GetMetadata()[apierror.MetadataCloudRequestID]; rid != "" {
		fmt.Fprintf(&b, "\n  cloud RequestId: %s", rid)
	}
	for _, v := range apierror.Violations(st.Err()) {
		fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
	}
	if d, ok := apierror.RetryDelay(st.Err()); ok {
		fmt.Fprintf(&b, "\n  retry after %s", d)
	}
	return b.String()
}

// withoutFirstViolation is the status's message without the first field
// violation it quotes ("invalid request: field: description"), since every
// violation is printed on a line of its own after it.
func withoutFirstViolation(st *status.Status) string {
	if v := apierror.Violations(st.Err()); len(v) > 0 {
		return strings.Replace(st.Message(), ": "+v[0].GetField()+": "+v[0].GetDescription(), "", 1)
	}
	return st.Message()
}
