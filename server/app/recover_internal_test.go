package app

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A panic whose value holds the cloud secrets is logged without them, and
// the caller learns only that an internal error happened.
func TestPanicsAreRedacted(t *testing.T) {
	const key, token = "panic-test-secret-key-0123456789", "panic-test-session-token-0123456789"
	var out bytes.Buffer
	s := &Server{opts: Options{SecretKey: key, SessionToken: token}, log: slog.New(slog.NewJSONHandler(&out, nil))}
	err := s.recovered(struct{ Key, Token string }{key, token})
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), key) {
		t.Errorf("caller got %v", err)
	}
	if logged := out.String(); strings.Contains(logged, key) || strings.Contains(logged, token) || !strings.Contains(logged, "[REDACTED]") {
		t.Errorf("logged %s", logged)
	}
}
