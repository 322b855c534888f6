// Command cwp-emulator serves the Tencent Cloud CWP export API emulator
// (package server/emulator) over HTTP, for local development and for
// benchmarks that steer it through its /_emulator/ admin endpoints.
//
// Point the Tencent Cloud SDK at it with HttpProfile.Endpoint set to the
// listen address and HttpProfile.Scheme set to "HTTP".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cwpexport/cwpexport/server/buildinfo"
	"github.com/cwpexport/cwpexport/server/emulator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cwp-emulator:", err)
		os.Exit(1)
	}
}

func run() error {
	// The credential flags default to the environment after parsing, so that
	// -help never prints a key.
	var (
		listen    = flag.String("listen", "127.0.0.1:9100", "address to listen on")
		secretID  = flag.String("secret-id", "", "accepted SecretId (default $TENCENTCLOUD_SECRET_ID; random if neither id nor key is set)")
		secretKey = flag.String("secret-key", "", "SecretKey for -secret-id (default $TENCENTCLOUD_SECRET_KEY; prefer the environment: flags are visible in ps)")
		pending   = flag.Duration("pending", emulator.DefaultPendingFor, "how long a new export task stays PENDING; negative: until finished via the admin endpoint")
		rateLimit = flag.Int("rate-limit", emulator.DefaultRateLimit, "requests per second per action per SecretId; negative: unlimited")
		records   = flag.Int("records", emulator.DefaultRecords, "size of the seeded license data set")
		seed      = flag.Int64("seed", 0, "data set seed; the same seed gives the same data")
		ttl       = flag.Duration("download-ttl", 0, "download URLs expire this long after ExportTasks gave them (HTTP 403 afterwards); 0: never")
		stateDir  = flag.String("state-dir", "", "directory that keeps tasks, download URLs and a generated credential across restarts (one emulator at a time); empty: memory only")
		debug     = flag.Bool("debug", false, "log every API request")
		adminFile = flag.String("admin-token-file", "", "require on the /_emulator/ admin routes the bearer token this file holds (written with a random one when missing, 0600); empty: no token, the Host and Origin checks only")
		faults    []emulator.Fault
	)
	flag.Func("fault", "inject a fault, repeatable: kind[@action][,p=0.5][,n=3][,delay=1s][,status=503][,skew=10m][,after]; kinds: "+faultKinds()+" (also POST /_emulator/faults)", func(s string) error {
		f, err := emulator.ParseFault(s)
		faults = append(faults, f)
		return err
	})
	showVersion := flag.Bool("version", false, "print the version, commit and Go toolchain, and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("cwp-emulator", buildinfo.Get())
		return nil
	}
	if *secretID == "" {
		*secretID = os.Getenv("TENCENTCLOUD_SECRET_ID")
	}
	if *secretKey == "" {
		*secretKey = os.Getenv("TENCENTCLOUD_SECRET_KEY")
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	switch {
	case *secretID == "" && *secretKey == "" && *stateDir != "":
		id, key, err := emulator.StateCredential(*stateDir)
		if err != nil {
			return err
		}
		*secretID, *secretKey = id, key
		fmt.Printf("SecretId: %s (its SecretKey is in %s)\n", id, filepath.Join(*stateDir, emulator.CredentialsFile))
	case *secretID == "" && *secretKey == "":
		id, key := emulator.NewDevCredential()
		*secretID, *secretKey = id, key
		fmt.Printf("SecretId: %s (generated; its SecretKey is printed once on stderr)\n", id)
		fmt.Fprintf(os.Stderr, "WARNING: generated a throw-away DEV credential for this emulator run only.\nSecretKey: %s\n", key)
	case *secretID == "" || *secretKey == "":
		return errors.New("set both -secret-id and -secret-key (or TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY), or neither")
	}

	adminToken, err := emulator.AdminTokenFromFile(*adminFile)
	if err != nil {
		return err
	}
	emu, err := emulator.New(emulator.Options{
		AdminToken:  adminToken,
		Credentials: map[string]string{*secretID: *secretKey},
		PendingFor:  *pending,
		RateLimit:   *rateLimit,
		Records:     *records,
		Seed:        *seed,
		Logger:      logger,
		Faults:      faults,
		DownloadTTL: *ttl,
		StateDir:    *stateDir,
	})
	if err != nil {
		return err
	}
	defer emu.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	logger.Info("cwp emulator listening",
		"addr", lis.Addr().String(),
		"secretId", *secretID,
		"pending", pending.String(),
		"rateLimit", *rateLimit,
		"records", *records,
		"seed", *seed,
		"stateDir", *stateDir)
	start := time.Now()
	err = emu.Serve(ctx, lis)
	logger.Info("cwp emulator stopped", "uptime", time.Since(start).Round(time.Second))
	return err
}

func faultKinds() string {
	var names []string
	for _, k := range emulator.FaultKinds {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}
