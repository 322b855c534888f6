package taskstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// privateFiles makes the SQLite registry at path, and its WAL and shared
// memory files, readable by the owner only: the registry holds the
// page-token key and pre-signed download URLs. The file is created 0600
// before SQLite opens it (SQLite gives its WAL and -shm files the mode of
// the database file); an existing one is narrowed.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create the registry: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("make the registry readable by its owner only: %w", err)
			}
		}
	}
	return nil
}
