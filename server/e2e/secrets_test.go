package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// lockedBuffer collects output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsNeverAppear drives the service through every fault kind, bad
// and missing tokens, and rejected session credentials, capturing the
// service's and the emulator's debug logs, gRPC's own logs, every span the
// service makes (as an exporter writes them), and every answer callers
// receive over gRPC and REST; none may contain the cloud SecretKey, the
// session token or a caller's bearer token.
func TestSecretsNeverAppear(t *testing.T) {
	const sessionToken = "session-token-SECRET-0123456789abcdef"
	out := &lockedBuffer{}
	grpcLogs.capture(out)
	defer grpcLogs.capture(nil)
	logger := func() *slog.Logger {
		return slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	record := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	recordErr := func(what string, err error) {
		if err != nil {
			st := status.Convert(err)
			record("%s: %v %s", what, err, prototext.Format(st.Proto()))
		}
	}

	run := func(t *testing.T, cfg testserver.Config, faults bool) {
		env := testserver.Start(t, cfg)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+aliceToken)
		calls := func(label string) {
			cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			res, err := env.Client.ExportLicenseDetail(cctx, &cwpexportv1.ExportLicenseDetailRequest{})
			recordErr(label+" export", err)
			record("%s export answer: %v", label, res)
			id := res.GetTask().GetTaskId()
			if id == "" {
				id = "12345"
			}
			_, err = env.Client.GetExportTask(cctx, &cwpexportv1.GetExportTaskRequest{TaskId: id})
			recordErr(label+" get", err)
			if s, err := env.Client.WatchExportTask(cctx, &cwpexportv1.WatchExportTaskRequest{TaskId: id}); err == nil {
				for {
					m, err := s.Recv()
					if err != nil {
						recordErr(label+" watch", err)
						break
					}
					record("%s watch: %v", label, m)
				}
			}
			for _, req := range []struct{ method, path, body, token string }{
				{http.MethodPost, "/v1/license-detail:export", `{}`, aliceToken},
				{http.MethodGet, "/v1/export-tasks/" + id, "", bobToken},
				{http.MethodGet, "/v1/export-tasks/" + id + ":watch", "", aliceToken},
				{http.MethodGet, "/v1/export-tasks/" + id, "", aliceToken[:len(aliceToken)-1] + "X"},
				{http.MethodGet, "/v1/export-tasks/" + id, "", ""},
			} {
				r, _ := http.NewRequest(req.method, env.RESTURL+req.path, strings.NewReader(req.body))
				r.Header.Set("Grpc-Timeout", "300m")
				r.Header.Set("Content-Type", "application/json")
				if req.token != "" {
					r.Header.Set("Authorization", "Bearer "+req.token)
				}
				resp := do(t, env.HTTP, r)
				record("%s REST %s %s: %d %s %v", label, req.method, req.path, resp.Status, resp.Body, resp.Header)
			}
		}
		calls("healthy")
		if !faults {
			return
		}
		for _, kind := range emulator.FaultKinds {
			f := emulator.Fault{Kind: kind, Delay: 400 * time.Millisecond}
			if err := env.Emulator.InjectFault(f); err != nil {
				t.Fatal(err)
			}
			calls(string(kind))
			env.Emulator.ClearFaults()
		}
	}
	spans, err := stdouttrace.New(stdouttrace.WithWriter(out))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	appOpts := func() app.Options {
		o := fastApp()
		o.Tokens, o.Logger, o.TracerProvider = testTokens(t), logger(), tp
		return o
	}
	t.Run("faults", func(t *testing.T) {
		run(t, testserver.Config{Emulator: emulator.Options{Logger: logger()}, App: appOpts()}, true)
	})
	t.Run("session token", func(t *testing.T) {
		o := appOpts()
		o.SessionToken = sessionToken
		run(t, testserver.Config{Emulator: emulator.Options{Logger: logger()}, App: o}, false)
	})
	t.Run("wrong key", func(t *testing.T) {
		o := appOpts()
		o.SecretID, o.SecretKey = testserver.SecretID, testserver.SecretKey+"-but-wrong"
		run(t, testserver.Config{Emulator: emulator.Options{Logger: logger()}, App: o}, false)
	})

	text := out.String()
	for _, want := range []string{"UPSTREAM_UNAVAILABLE", "api request", "the bearer token is not valid", `"cwp.outcome"`, `"AuthFailure.SignatureFailure"`} {
		if !strings.Contains(text, want) {
			t.Fatalf("the capture (%d bytes) misses %q: the test is not seeing what it should", len(text), want)
		}
	}
	for name, secret := range map[string]string{
		"SecretKey": testserver.SecretKey, "session token": sessionToken,
		"alice's bearer token": aliceToken, "bob's bearer token": bobToken,
	} {
		if i := strings.Index(text, secret); i >= 0 {
			t.Errorf("the %s appears in the output: …%s…", name, text[max(0, i-200):min(len(text), i+len(secret)+50)])
		}
	}
}
