package emulator

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminRoutesGuarded: the admin routes answer only requests that name
// the emulator by address, come from no other origin and, when the
// emulator has an admin token, carry it; the cloud API is not affected.
func TestAdminRoutesGuarded(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	s := startServer(t, Options{Credentials: map[string]string{testID: testKey}, AdminToken: token})
	do := func(method, path string, header map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, s.url(path), nil)
		for k, v := range header {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bearer := "Bearer " + token
	for name, tc := range map[string]struct {
		method, path string
		header       map[string]string
		want         int
	}{
		"no token":              {"POST", "/_emulator/faults", nil, http.StatusUnauthorized},
		"a wrong token":         {"GET", "/_emulator/stats", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		"the token":             {"GET", "/_emulator/stats", map[string]string{"Authorization": bearer}, http.StatusOK},
		"the token, localhost":  {"GET", "/_emulator/faults", map[string]string{"Authorization": bearer, "Host": "localhost:1"}, http.StatusOK},
		"a rebound name":        {"GET", "/_emulator/stats", map[string]string{"Authorization": bearer, "Host": "rebound.example.com"}, http.StatusForbidden},
		"another origin":        {"POST", "/_emulator/tasks/1/finish", map[string]string{"Authorization": bearer, "Origin": "http://evil.example"}, http.StatusForbidden},
		"a cross-site fetch":    {"DELETE", "/_emulator/faults", map[string]string{"Authorization": bearer, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		"no token, other route": {"GET", "/_emulator/tasks/1/file", nil, http.StatusUnauthorized},
	} {
		if got := do(tc.method, tc.path, tc.header); got != tc.want {
			t.Errorf("%s: %s %s answered %d, want %d", name, tc.method, tc.path, got, tc.want)
		}
	}
	// The API keeps answering as the cloud does (here: an unsigned request).
	if got := do("POST", "/", nil); got != http.StatusOK {
		t.Errorf("the API answered %d", got)
	}
}

func TestAdminTokenFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-token")
	first, err := AdminTokenFromFile(path)
	if err != nil || len(first) < 32 {
		t.Fatalf("%q %v", first, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	if again, err := AdminTokenFromFile(path); err != nil || again != first {
		t.Errorf("the second read: %q %v, want the token written", again, err)
	}
	_ = os.WriteFile(path, []byte(" \n"), 0o600)
	if _, err := AdminTokenFromFile(path); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty file: %v", err)
	}
}
