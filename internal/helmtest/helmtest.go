// Package helmtest gives tests the helm command, to lint and render the
// chart in deploy/helm: built with the go command from helm's module at
// Version and cached, as package trilliantest does for Trillian.
//
// Building helm takes minutes on a small machine, so the binary is kept in
// $XDG_CACHE_HOME/sumkeep/helm-VERSION (default ~/.cache/...; set
// SUMKEEP_HELM_CACHE to choose another directory) and built once: .ci/run
// runs helmbuild before the tests, and a file lock makes parallel builders
// wait for the one that builds.
package helmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/filelock"
)

// Module and Version are what helm is built from: the go command fetches
// them through the module proxy, checked against the checksum database.
const (
	Module  = "helm.sh/helm/v3"
	Version = "v3.22.0"
)

// CacheDir returns where the helm binary of Version is kept.
func CacheDir() (string, error) {
	if d := os.Getenv("SUMKEEP_HELM_CACHE"); d != "" {
		return filepath.Join(d, "helm-"+Version), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for helm (set SUMKEEP_HELM_CACHE): %w", err)
	}
	return filepath.Join(base, "sumkeep", "helm-"+Version), nil
}

// Path returns the path of the cached helm binary, whether or not it is
// there.
func Path() (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "helm"), nil
}

func present(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// Build returns the path of the helm binary, building it into the cache
// first if it is not there, and how long building took (0 when cached).
// logw, if not nil, receives the go command's output.
func Build(ctx context.Context, logw io.Writer) (string, time.Duration, error) {
	path, err := Path()
	if err != nil {
		return "", 0, err
	}
	if present(path) {
		return path, 0, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", 0, err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", 0, err
	}
	defer lock.Close()
	if err := filelock.Lock(ctx, lock); err != nil {
		return "", 0, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	if present(path) { // another process built it while we waited
		return path, 0, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return "", 0, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	args := []string{"install", Module + "/cmd/helm@" + Version}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = tmp // outside any module: pkg@version builds with helm's own go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "CGO_ENABLED=0")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if logw != nil {
		cmd.Stdout, cmd.Stderr = logw, logw
		fmt.Fprintf(logw, "building helm %s into %s (once per version; takes minutes)\n", Version, dir)
	}
	if err := cmd.Run(); err != nil {
		return "", 0, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	os.RemoveAll(dir) // a partial directory left by hand
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", 0, err
	}
	return path, time.Since(start), nil
}

// Binary returns the cached helm binary. It does not build it (that takes
// minutes; .ci/run does it with helmbuild): without it the test is
// skipped, except under CI (CI=true), where it fails.
func Binary(tb testing.TB) string {
	tb.Helper()
	path, err := Path()
	if err == nil && !present(path) {
		err = fmt.Errorf("%s is not there: run go run ./internal/helmtest/helmbuild", path)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("helm is required in CI: %v", err)
		}
		tb.Skipf("helm not available: %v", err)
	}
	return path
}
