// Package modproxy builds real module zips laid out as a file:// GOPROXY, so
// tests can run the real go command against modules whose go.sum hashes they
// know in advance.
//
// The layout is the GOPROXY protocol's
// (https://go.dev/ref/mod#goproxy-protocol):
//
//	<escaped path>/@v/list
//	<escaped path>/@v/<escaped version>.info
//	<escaped path>/@v/<escaped version>.mod
//	<escaped path>/@v/<escaped version>.zip
//
// Zips are made with golang.org/x/mod/zip and hashed with
// golang.org/x/mod/sumdb/dirhash exactly as the go command hashes them, so the
// returned [Sum] values are the lines the go command writes to go.sum.
package modproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// DefaultTime is the commit time written to .info files of modules whose
// Time is zero.
var DefaultTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// A Module is one module version to publish.
type Module struct {
	Path    string            // module path, e.g. "example.com/hello"
	Version string            // canonical semantic version, e.g. "v1.0.0"
	Files   map[string]string // slash-separated file name -> content; must include "go.mod"
	Time    time.Time         // commit time for the .info file; zero means DefaultTime
}

// A Sum holds the go.sum hashes of one module version.
type Sum struct {
	Path    string
	Version string
	ZipHash string // "h1:..." hash of the module zip (dirhash.HashZip with dirhash.Hash1)
	ModHash string // "h1:..." hash of the go.mod file alone
}

// Lines returns the two go.sum lines for s, each ending in a newline:
// "<path> <version> <ZipHash>\n<path> <version>/go.mod <ModHash>\n".
// This is also the exact text of the checksum database record for s.
func (s Sum) Lines() string {
	return fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", s.Path, s.Version, s.ZipHash, s.Path, s.Version, s.ModHash)
}

// GOPROXY returns the GOPROXY value ("file:///abs/dir") that serves dir.
func GOPROXY(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	abs = filepath.ToSlash(abs)
	if !strings.HasPrefix(abs, "/") {
		abs = "/" + abs // Windows drive letters: file:///C:/...
	}
	return "file://" + abs
}

// Build writes the GOPROXY directory layout for mods under dir (creating it if
// needed) and returns the go.sum hashes of each module, in the order of mods.
// Several versions of one path may be given; the @v/list file of each path
// lists all its versions (also those already present under dir), sorted.
func Build(dir string, mods []Module) ([]Sum, error) {
	sums := make([]Sum, 0, len(mods))
	lists := make(map[string][]string) // escaped path -> versions
	for _, m := range mods {
		s, esc, err := buildOne(dir, m)
		if err != nil {
			return nil, fmt.Errorf("modproxy: %s@%s: %w", m.Path, m.Version, err)
		}
		sums = append(sums, s)
		lists[esc] = append(lists[esc], m.Version)
	}
	for esc, vers := range lists {
		listFile := filepath.Join(dir, filepath.FromSlash(esc), "@v", "list")
		old, err := os.ReadFile(listFile)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("modproxy: %v", err)
		}
		vers = append(vers, strings.Fields(string(old))...)
		semver.Sort(vers)
		vers = slices.Compact(vers)
		if err := os.WriteFile(listFile, []byte(strings.Join(vers, "\n")+"\n"), 0o666); err != nil {
			return nil, fmt.Errorf("modproxy: %v", err)
		}
	}
	return sums, nil
}

// buildOne writes the .info, .mod and .zip files of m and returns its sums
// and escaped path.
func buildOne(dir string, m Module) (Sum, string, error) {
	if err := module.Check(m.Path, m.Version); err != nil {
		return Sum{}, "", err
	}
	if module.CanonicalVersion(m.Version) != m.Version {
		return Sum{}, "", fmt.Errorf("version is not canonical")
	}
	gomod, ok := m.Files["go.mod"]
	if !ok {
		return Sum{}, "", fmt.Errorf("no go.mod file")
	}
	escPath, err := module.EscapePath(m.Path)
	if err != nil {
		return Sum{}, "", err
	}
	escVers, err := module.EscapeVersion(m.Version)
	if err != nil {
		return Sum{}, "", err
	}
	vdir := filepath.Join(dir, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(vdir, 0o777); err != nil {
		return Sum{}, "", err
	}
	base := filepath.Join(vdir, escVers)

	t := m.Time
	if t.IsZero() {
		t = DefaultTime
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, t.UTC()})
	if err != nil {
		return Sum{}, "", err
	}
	if err := os.WriteFile(base+".info", append(info, '\n'), 0o666); err != nil {
		return Sum{}, "", err
	}
	if err := os.WriteFile(base+".mod", []byte(gomod), 0o666); err != nil {
		return Sum{}, "", err
	}

	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	files := make([]modzip.File, 0, len(names))
	for _, name := range names {
		files = append(files, memFile{name: name, data: m.Files[name], mod: t})
	}
	var zbuf bytes.Buffer
	if err := modzip.Create(&zbuf, module.Version{Path: m.Path, Version: m.Version}, files); err != nil {
		return Sum{}, "", err
	}
	zipFile := base + ".zip"
	if err := os.WriteFile(zipFile, zbuf.Bytes(), 0o666); err != nil {
		return Sum{}, "", err
	}

	zipHash, err := dirhash.HashZip(zipFile, dirhash.Hash1)
	if err != nil {
		return Sum{}, "", err
	}
	modHash, err := ModHash([]byte(gomod))
	if err != nil {
		return Sum{}, "", err
	}
	return Sum{Path: m.Path, Version: m.Version, ZipHash: zipHash, ModHash: modHash}, escPath, nil
}

// ModHash returns the go.sum hash of a go.mod file's content, computed as the
// go command does: dirhash.Hash1 over a single file named "go.mod".
func ModHash(gomod []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gomod)), nil
	})
}

// memFile is an in-memory modzip.File.
type memFile struct {
	name string
	data string
	mod  time.Time
}

func (f memFile) Path() string                 { return f.name }
func (f memFile) Lstat() (os.FileInfo, error)  { return memInfo(f), nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(f.data)), nil }

// memInfo is the fs.FileInfo of a memFile: a regular, read-only file.
type memInfo memFile

func (i memInfo) Name() string       { return filepath.Base(i.name) }
func (i memInfo) Size() int64        { return int64(len(i.data)) }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// goVars are the go command's environment variables that GoEnv replaces or
// removes, so that the host's configuration cannot leak into a test.
var goVars = []string{
	"GOAUTH", "GOENV", "GOFLAGS", "GOINSECURE", "GOMODCACHE", "GONOPROXY",
	"GONOSUMCHECK", "GONOSUMDB", "GOPATH", "GOPRIVATE", "GOPROXY", "GOSUMDB",
	"GOTOOLCHAIN", "GOVCS", "GOWORK",
}

// GoEnv returns an environment (for exec.Cmd.Env) that runs the go command
// hermetically: the current environment without any of the go command's
// module settings, plus GOPATH=gopath (the module cache is
// gopath/pkg/mod), GOPROXY=goproxy, GOENV=off, GOTOOLCHAIN=local,
// GOWORK=off, GOFLAGS=-mod=mod and GOSUMDB=off. Settings in extra
// ("KEY=value") are appended and win; to check sums against a checksum
// database, pass e.g. "GOSUMDB=<vkey> <url>".
//
// The module cache holds read-only files: run "go clean -modcache" with the
// same environment (see CleanModCache) before removing gopath.
func GoEnv(gopath, goproxy string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(goVars, k) {
			env = append(env, kv)
		}
	}
	env = append(env,
		"GOPATH="+gopath,
		"GOMODCACHE="+filepath.Join(gopath, "pkg", "mod"),
		"GOPROXY="+goproxy,
		"GOENV=off",
		"GOTOOLCHAIN=local",
		"GOWORK=off",
		"GOFLAGS=-mod=mod",
		"GOSUMDB=off",
	)
	return append(env, extra...)
}

// CleanModCache makes the module cache under gopath removable, as
// "go clean -modcache" does, so that a test's temporary directory can be
// deleted. It is a no-op when there is no module cache.
func CleanModCache(gopath string) error {
	root := filepath.Join(gopath, "pkg", "mod")
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o777)
		}
		return nil
	})
}
