// Package secretfile checks that files holding secrets (bearer tokens,
// private keys) are readable by their owner only: a tokens file that any
// local account can read hands out every caller's identity.
package secretfile

import (
	"fmt"
	"io/fs"
	"os"
)

// Check returns an error when the file at path (after symbolic links)
// grants any permission to its group or to others.
func Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &ReadableError{Path: path, Mode: perm}
	}
	return nil
}

// ReadableError is Check's error for a file others may read.
type ReadableError struct {
	Path string
	Mode fs.FileMode
}

func (e *ReadableError) Error() string {
	return fmt.Sprintf("%s holds secrets but its mode %04o lets its group or others read it: chmod 600 %s", e.Path, uint32(e.Mode), e.Path)
}
