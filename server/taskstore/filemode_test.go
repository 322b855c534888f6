package taskstore_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

// TestRegistryFileIsPrivate: the SQLite registry, which holds the
// page-token key and pre-signed URLs, and its WAL are readable by their
// owner only, whatever the umask; an existing registry readable by others
// is narrowed.
func TestRegistryFileIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	check := func(when string) {
		t.Helper()
		for _, name := range []string{taskstore.FileName, taskstore.FileName + "-wal"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s: %s has mode %04o, want 0600", when, name, perm)
			}
		}
	}
	use := func(id int64) {
		t.Helper()
		s, err := taskstore.Open(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Secret(context.Background(), "page_token_key", func() []byte { return []byte("k") }); err != nil {
			t.Fatal(err)
		}
		if err := s.Insert(context.Background(), taskstore.Task{TaskID: id, Fingerprint: "f", Parameters: "{}", Created: time.Now(), State: taskstore.StatePending}); err != nil {
			t.Fatal(err)
		}
		check("open")
		s.Close()
	}
	use(1)
	if err := os.Chmod(filepath.Join(dir, taskstore.FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	use(2)
}
