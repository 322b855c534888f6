package app

// EmulatorAdminTokenFile is the file, in the embedded emulator's state
// directory (DATA_DIR/emulator), that holds the token its /_emulator/
// admin routes require: random, written 0600 at the first start.
const EmulatorAdminTokenFile = "admin-token"

// EmulatorAdminToken returns the token the embedded emulator's admin
// routes require, or "" when a real cloud is used.
func (s *Server) EmulatorAdminToken() string {
	if s.emu == nil {
		return ""
	}
	return s.emu.AdminToken()
}
