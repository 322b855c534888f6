package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/grpclog"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// server, poller, stream and emulator request must end with its test.
func TestMain(m *testing.M) {
	// gRPC's logger is set once, before any test starts a transport: setting
	// it later races with transports of earlier tests still closing.
	grpclog.SetLoggerV2(grpcLogs)
	code := pgtest.Run(m) // stops the PostgreSQL the tests started, if any
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var discard = grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)

// grpcLogs is gRPC's logger in these tests: silent, until a test captures
// everything gRPC logs (at every verbosity) into a writer of its own.
var grpcLogs = &capturingLogger{}

type capturingLogger struct {
	mu  sync.Mutex
	w   io.Writer
	log grpclog.LoggerV2
}

// capture sends gRPC's logs, at every verbosity, to w; nil silences them.
func (l *capturingLogger) capture(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w, l.log = w, nil
	if w != nil {
		l.log = grpclog.NewLoggerV2WithVerbosity(w, w, w, 99)
	}
}

func (l *capturingLogger) logger() grpclog.LoggerV2 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log == nil {
		return discard
	}
	return l.log
}

func (l *capturingLogger) Info(args ...any)                    { l.logger().Info(args...) }
func (l *capturingLogger) Infoln(args ...any)                  { l.logger().Infoln(args...) }
func (l *capturingLogger) Infof(format string, args ...any)    { l.logger().Infof(format, args...) }
func (l *capturingLogger) Warning(args ...any)                 { l.logger().Warning(args...) }
func (l *capturingLogger) Warningln(args ...any)               { l.logger().Warningln(args...) }
func (l *capturingLogger) Warningf(format string, args ...any) { l.logger().Warningf(format, args...) }
func (l *capturingLogger) Error(args ...any)                   { l.logger().Error(args...) }
func (l *capturingLogger) Errorln(args ...any)                 { l.logger().Errorln(args...) }
func (l *capturingLogger) Errorf(format string, args ...any)   { l.logger().Errorf(format, args...) }
func (l *capturingLogger) Fatal(args ...any)                   { l.logger().Fatal(args...) }
func (l *capturingLogger) Fatalln(args ...any)                 { l.logger().Fatalln(args...) }
func (l *capturingLogger) Fatalf(format string, args ...any)   { l.logger().Fatalf(format, args...) }

// V reports whether gRPC logs at verbosity v: all of them while a test
// captures, none otherwise.
func (l *capturingLogger) V(v int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w != nil
}
