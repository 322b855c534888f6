package e2e_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/app"
)

// TestEmbeddedEmulatorAdminNeedsItsToken: the embedded emulator's admin
// routes (faults, ending tasks) refuse a request without the random token
// written in its state directory, which tests and operators read there.
func TestEmbeddedEmulatorAdminNeedsItsToken(t *testing.T) {
	dir := t.TempDir()
	srv, err := app.New(app.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lis := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis(), lis()) }()
	defer func() { cancel(); <-done }()

	b, err := os.ReadFile(filepath.Join(dir, "emulator", app.EmulatorAdminTokenFile))
	token := strings.TrimSpace(string(b))
	if err != nil || token == "" || token != srv.EmulatorAdminToken() {
		t.Fatalf("the admin token file: %q %v; the server's token %q", token, err, srv.EmulatorAdminToken())
	}
	faults := "http://" + srv.EmulatorAddr() + "/_emulator/faults"
	get := func(auth string) int {
		req, _ := http.NewRequest(http.MethodGet, faults, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("without the token: HTTP %d, want 401", code)
	}
	if code := get("Bearer " + token); code != http.StatusOK {
		t.Errorf("with the token: HTTP %d, want 200", code)
	}
}
