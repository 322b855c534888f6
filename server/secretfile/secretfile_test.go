package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for mode, readable := range map[os.FileMode]bool{0o600: false, 0o400: false, 0o640: true, 0o644: true, 0o604: true, 0o660: true} {
		path := filepath.Join(dir, mode.String())
		if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		err := Check(path)
		var re *ReadableError
		if got := errors.As(err, &re); got != readable {
			t.Errorf("mode %04o: %v", mode, err)
		}
		if readable && !strings.Contains(err.Error(), path) {
			t.Errorf("the error does not name the file: %v", err)
		}
	}
	// A link is judged by its target's mode.
	target := filepath.Join(dir, "target")
	_ = os.WriteFile(target, []byte("secret"), 0o644)
	_ = os.Chmod(target, 0o644)
	if err := os.Symlink(target, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := Check(filepath.Join(dir, "link")); err == nil {
		t.Error("a link to a readable file passed")
	}
	if err := Check(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file passed")
	}
}
