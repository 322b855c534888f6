// Package buildinfo says which build of the service is running: its
// release version, source commit and Go toolchain, for --version, the
// build_info metric and the image's labels.
//
// Release builds set the version and commit at link time (make build,
// make release, make image):
//
//	go build -ldflags "-X github.com/cwpexport/cwpexport/server/buildinfo.version=v1.2.0 \
//	  -X github.com/cwpexport/cwpexport/server/buildinfo.commit=$(git rev-parse HEAD)"
//
// Other builds fall back to what the Go toolchain recorded: the module
// version of `go install …@v1.2.0`, and the VCS revision of a build in a
// git checkout.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Set with -ldflags -X; empty in builds that did not.
var (
	version string
	commit  string
)

// Unknown stands for a version or commit the build did not record.
const Unknown = "unknown"

// Info describes the running build.
type Info struct {
	// Version is the release version (v1.2.0), a git description of an
	// unreleased commit, or "devel".
	Version string
	// Commit is the full source commit, or Unknown.
	Commit string
	// Modified is true when the build's source differed from Commit.
	Modified bool
	// Go is the toolchain's version (go1.26.8).
	Go string
	// Platform is GOOS/GOARCH.
	Platform string
}

var (
	once sync.Once
	info Info
)

// Get returns the running build's description.
func Get() Info {
	once.Do(func() { info = read(version, commit, debug.ReadBuildInfo) })
	return info
}

// read builds the Info from the link-time values, filling the gaps from
// the toolchain's record.
func read(v, c string, recorded func() (*debug.BuildInfo, bool)) Info {
	i := Info{Version: v, Commit: c, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := recorded(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" {
					i.Commit = s.Value
				}
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	if i.Commit == "" {
		i.Commit = Unknown
	}
	return i
}

// String is the one line --version prints after the program's name.
func (i Info) String() string {
	c := i.Commit
	if i.Modified {
		c += "-modified"
	}
	return fmt.Sprintf("%s (commit %s, %s, %s)", i.Version, c, i.Go, i.Platform)
}
