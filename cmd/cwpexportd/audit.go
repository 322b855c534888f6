package main

import (
	"fmt"
	"os"
	"sync"
)

// auditFile is where audit lines go: stderr, or a file appended to that
// SIGHUP reopens, so that log rotation (move, then signal) loses no line.
type auditFile struct {
	mu   sync.Mutex
	path string // "" for stderr
	f    *os.File
}

func openAuditLog(path string) (*auditFile, error) {
	if path == "-" || path == "" {
		return &auditFile{f: os.Stderr}, nil
	}
	a := &auditFile{path: path}
	if err := a.Reopen(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Write(p)
}

// Reopen opens the file again by its path (a no-op for stderr).
func (a *auditFile) Reopen() error {
	if a.path == "" {
		return nil
	}
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open the audit log: %w", err)
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file (never stderr).
func (a *auditFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.path == "" || a.f == nil {
		return nil
	}
	return a.f.Close()
}
