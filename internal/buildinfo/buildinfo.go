// Package buildinfo says which build of sumkeep is running, from the
// information the go command records in every binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info describes a build.
type Info struct {
	// Version is the module version ("v1.2.3" when installed with go
	// install …@v1.2.3; "(devel)" when built from a checkout).
	Version string `json:"version"`
	// Commit is the VCS revision the build came from, if known.
	Commit string `json:"commit,omitempty"`
	// Modified says the checkout had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Go is the Go version that built it.
	Go string `json:"go"`
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "(unknown)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line `sumkeep version` prints.
func (i Info) String() string {
	s := "sumkeep " + i.Version
	if i.Commit != "" {
		s += " commit " + i.Commit
		if i.Modified {
			s += " (modified)"
		}
	}
	return s + " " + i.Go
}
