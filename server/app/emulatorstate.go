package app

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// The embedded emulator's state lives in the data directory.
const (
	// emulatorDir is its state directory (emulator.Options.StateDir),
	// beside the registry.
	emulatorDir = "emulator"
	// emulatorAddrFile records the address it listened on last.
	emulatorAddrFile = "listen-addr"
)

// listenEmulator listens on the loopback address the emulator had in the
// last run, recorded in dir, so the download URLs the registry holds keep
// working. When that port is taken it listens on a new one and records it.
func listenEmulator(dir string, log *slog.Logger) (net.Listener, error) {
	path := filepath.Join(dir, emulatorAddrFile)
	if b, err := os.ReadFile(path); err == nil {
		addr := strings.TrimSpace(string(b))
		// Only loopback: the file must not open the emulator to others.
		if host, _, err := net.SplitHostPort(addr); err == nil && host == "127.0.0.1" {
			lis, err := net.Listen("tcp", addr)
			if err == nil {
				return lis, nil
			}
			log.Warn("the embedded emulator's last port is taken: download URLs recorded before the restart point at it", "addr", addr, "err", err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	err = os.WriteFile(tmp, []byte(lis.Addr().String()+"\n"), 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		log.Warn("could not record the embedded emulator's address: the next run listens on another port", "err", err)
	}
	return lis, nil
}

// closeEmulator releases the embedded emulator's listener and state
// directory, if there is an emulator.
func (s *Server) closeEmulator() {
	if s.emu == nil {
		return
	}
	_ = s.emuLis.Close() // already closed when the emulator served
	if err := s.emu.Close(); err != nil {
		s.log.Warn("close the embedded emulator", "err", err)
	}
}
