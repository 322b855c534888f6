package app

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

func (s *Server) startEmulator(cfg *cloud.Config) error {
	// The emulator keeps its tasks, account and port in the data
	// directory: tasks and download URLs in the registry outlive a restart.
	dir := filepath.Join(s.opts.DataDir, emulatorDir)
	id, key, err := emulator.StateCredential(dir)
	if err != nil {
		return fmt.Errorf("start the embedded emulator: %w", err)
	}
	admin, err := emulator.AdminTokenFromFile(filepath.Join(dir, EmulatorAdminTokenFile))
	if err != nil {
		return fmt.Errorf("start the embedded emulator: write its admin token: %w", err)
	}
	emu, err := emulator.New(emulator.Options{
		AdminToken:  admin,
		Credentials: map[string]string{id: key},
		PendingFor:  s.opts.EmulatorPending,
		// Ids from the clock as a floor: even without the emulator's
		// state, ids never go back below those the registry holds.
		FirstTaskID: time.Now().UnixMilli(),
		Logger:      s.log.With("component", "emulator"),
		StateDir:    dir,
	})
	if err != nil {
		return fmt.Errorf("start the embedded emulator: %w", err)
	}
	lis, err := listenEmulator(dir, s.log)
	if err != nil {
		emu.Close()
		return fmt.Errorf("listen for the embedded emulator: %w", err)
	}
	s.emu, s.emuLis = emu, lis
	cfg.Credential = common.NewCredential(id, key)
	cfg.Endpoint, cfg.Scheme = lis.Addr().String(), "HTTP"
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Emulator returns the embedded emulator, or nil when a real cloud is used.
func (s *Server) Emulator() *emulator.Emulator { return s.emu }

// EmulatorAddr returns the embedded emulator's address, or "".
func (s *Server) EmulatorAddr() string {
	if s.emuLis == nil {
		return ""
	}
	return s.emuLis.Addr().String()
}
