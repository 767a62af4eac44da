package verifier

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// GoEnvFiles returns a GoEnv that reads the go command's configuration the
// way the go command reads it (cmd/go/internal/cfg), without running it:
//
//   - the user's go env file, which `go env -w` writes: $GOENV, else go/env
//     under the user's configuration directory ($XDG_CONFIG_HOME, else
//     $HOME/.config on Unix); GOENV=off means none;
//   - then go.env in the go command's GOROOT, where the toolchain's defaults
//     live (GOSUMDB and GOPROXY since Go 1.21; a distribution may change
//     them, GOSUMDB=off included), for variables the user's file does not
//     set. GOROOT is the GOROOT in the user's file, else $GOROOT, else the
//     directory above the bin directory of the go command found on PATH
//     (or two above, for a cross-compiled go), symlinks resolved if need
//     be; a directory counts only if it holds pkg/tool, as for the go
//     command.
//
// In both files a line is NAME=VALUE with NAME starting with an upper-case
// letter; any other line is ignored, as is a file that cannot be read.
// Values set in the environment are the caller's business (PolicyFromEnv
// looks there first).
//
// Running `go env` instead costs a start of the go command: about 20 ms of
// CPU and 40 ms of wall time, in a verify that otherwise takes 60 ms, and
// it bumps the go command's telemetry counters. When GOROOT cannot be found
// this way, the answer is fallback's (nil: the user's file alone).
func GoEnvFiles(getenv func(string) (string, bool), fallback GoEnv) GoEnv {
	return func(ctx context.Context, names ...string) (map[string]string, error) {
		user := make(map[string]string)
		if file := goEnvFile(getenv); file != "" {
			readGoEnvFile(file, user)
		}
		goroot, found := findGOROOT(getenv, user["GOROOT"])
		if !found {
			if fallback != nil {
				return fallback(ctx, names...)
			}
			return pick(user, nil, names), nil
		}
		toolchain := make(map[string]string)
		readGoEnvFile(filepath.Join(goroot, "go.env"), toolchain)
		return pick(user, toolchain, names), nil
	}
}

// pick returns the named values, the user's file over the toolchain's.
func pick(user, toolchain map[string]string, names []string) map[string]string {
	vals := make(map[string]string, len(names))
	for _, n := range names {
		if v, ok := user[n]; ok {
			vals[n] = v
		} else if v, ok := toolchain[n]; ok {
			vals[n] = v
		}
	}
	return vals
}

// goEnvFile returns the user's go env file, or "" for none.
func goEnvFile(getenv func(string) (string, bool)) string {
	if f, _ := getenv("GOENV"); f != "" {
		if f == "off" {
			return ""
		}
		return f
	}
	dir := userConfigDir(getenv)
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "go", "env")
}

// userConfigDir is os.UserConfigDir, reading the environment through
// getenv; "" when it has no answer.
func userConfigDir(getenv func(string) (string, bool)) string {
	get := func(k string) string { v, _ := getenv(k); return v }
	switch runtime.GOOS {
	case "windows":
		return get("AppData")
	case "darwin", "ios":
		if h := get("HOME"); h != "" {
			return filepath.Join(h, "Library", "Application Support")
		}
		return ""
	case "plan9":
		if h := get("home"); h != "" {
			return filepath.Join(h, "lib")
		}
		return ""
	}
	if d := get("XDG_CONFIG_HOME"); d != "" {
		if !filepath.IsAbs(d) {
			return "" // os.UserConfigDir refuses a relative one
		}
		return d
	}
	if h := get("HOME"); h != "" {
		return filepath.Join(h, ".config")
	}
	return ""
}

// readGoEnvFile adds the NAME=VALUE lines of file to m, later lines
// winning, as the go command reads its env files.
func readGoEnvFile(file string, m map[string]string) {
	data, err := os.ReadFile(file)
	if err != nil {
		return
	}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		i := bytes.IndexByte(line, '=')
		if i < 0 || line[0] < 'A' || 'Z' < line[0] {
			continue // a comment, an empty line or not a name
		}
		m[string(line[:i])] = string(line[i+1:])
	}
}

// findGOROOT returns the go command's GOROOT: fromFile (the user's go env
// file), else $GOROOT, else the GOROOT around the go command on PATH.
// found is false when only the go command itself could tell.
func findGOROOT(getenv func(string) (string, bool), fromFile string) (goroot string, found bool) {
	if fromFile == "" {
		fromFile, _ = getenv("GOROOT")
	}
	if fromFile != "" {
		return filepath.Clean(fromFile), true
	}
	exe, err := exec.LookPath("go")
	if err != nil {
		return "", false
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return "", false
	}
	try := func(exe string) (string, bool) {
		for _, up := range []string{"../..", "../../.."} {
			if dir := filepath.Join(exe, up); isGOROOT(dir) {
				return dir, true
			}
		}
		return "", false
	}
	if dir, ok := try(exe); ok {
		return dir, true
	}
	if exe, err = filepath.EvalSymlinks(exe); err == nil {
		return try(exe)
	}
	return "", false
}

func isGOROOT(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "pkg", "tool"))
	return err == nil && fi.IsDir()
}
