package realsum

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

var (
	proxyOnce sync.Once
	proxyDir  string
	proxyErr  error
)

// ProxyDir returns the absolute path of a directory holding the recorded
// GOPROXY tree (see ProxyModules), for GOPROXY=file://<dir>. It is the
// package's own testdata/proxy when the source tree is at hand (found with
// runtime.Caller, so the caller's working directory does not matter) and
// holds exactly the embedded files; otherwise (a binary built with -trimpath
// or moved elsewhere) the embedded tree is written once to a directory under
// os.TempDir named by its content hash, and reused. It panics if neither
// works. The directory must not be modified.
func ProxyDir() string {
	proxyOnce.Do(func() {
		var src string
		if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
			src = filepath.Join(filepath.Dir(file), filepath.FromSlash(proxyRoot))
		}
		proxyDir, proxyErr = findProxyDir(src)
	})
	if proxyErr != nil {
		panic("realsum: " + proxyErr.Error())
	}
	return proxyDir
}

const proxyRoot = "testdata/proxy"

// findProxyDir returns src if it holds exactly the embedded GOPROXY tree,
// else a copy under os.TempDir.
func findProxyDir(src string) (string, error) {
	files := map[string][]byte{} // slash path below proxyRoot -> content
	h := sha256.New()
	err := fs.WalkDir(testdata, proxyRoot, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := testdata.ReadFile(name)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(name, proxyRoot+"/")
		files[rel] = data
		fmt.Fprintf(h, "%s %d\n", rel, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("no GOPROXY tree embedded")
	}

	if src != "" && sameFiles(src, files) {
		return src, nil
	}

	dir := filepath.Join(os.TempDir(), "sumkeep-realsum-proxy-"+hex.EncodeToString(h.Sum(nil))[:16])
	if sameFiles(dir, files) {
		return dir, nil
	}
	// Write a fresh copy next to it and move it into place, so that
	// concurrent processes never see half a tree.
	tmp, err := os.MkdirTemp(os.TempDir(), "sumkeep-realsum-proxy-tmp-")
	if err != nil {
		return "", err
	}
	for rel, data := range files {
		file := filepath.Join(tmp, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(file), 0o777); err != nil {
			return "", err
		}
		if err := os.WriteFile(file, data, 0o666); err != nil {
			return "", err
		}
	}
	os.RemoveAll(dir) // a stale or partial copy
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if sameFiles(dir, files) { // another process won the race
			return dir, nil
		}
		return "", err
	}
	return dir, nil
}

// sameFiles reports whether dir holds exactly files.
func sameFiles(dir string, files map[string][]byte) bool {
	n := 0
	err := filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, file)
		if err != nil {
			return err
		}
		want, ok := files[filepath.ToSlash(rel)]
		if !ok {
			return fmt.Errorf("extra file %s", rel)
		}
		got, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s differs", rel)
		}
		n++
		return nil
	})
	return err == nil && n == len(files)
}
