// Command cwpexport is the command-line client of the CWP license export
// gateway: `cwpexport export --watch --download out.csv` starts an export,
// shows its progress and saves the file. `cwpexport help` lists the commands;
// clients/cli documents the exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cwpexport/cwpexport/clients/cli"

	// CA roots and time zones inside the binary: the image has no files
	// of the system's to find them in (used only where the system has none).
	_ "golang.org/x/crypto/x509roots/fallback"
	_ "time/tzdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
