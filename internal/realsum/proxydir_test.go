package realsum

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/module"
)

// TestProxyDirCopy checks the fallback of ProxyDir when the source tree is
// not at hand: the embedded tree is written under os.TempDir once and reused.
func TestProxyDirCopy(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := findProxyDir(filepath.Join(t.TempDir(), "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != os.TempDir() {
		t.Errorf("copy at %s, not under %s", dir, os.TempDir())
	}
	for _, m := range ProxyModules() {
		esc, err := module.EscapePath(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(esc), "@v", m.Version+".zip")); err != nil {
			t.Error(err)
		}
	}
	again, err := findProxyDir("")
	if err != nil || again != dir {
		t.Errorf("second call: %s, %v; want %s", again, err, dir)
	}
	// A damaged copy is replaced.
	os.WriteFile(filepath.Join(dir, "extra"), []byte("x"), 0o666)
	if again, err := findProxyDir(""); err != nil || again != dir {
		t.Errorf("after damage: %s, %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "extra")); err == nil {
		t.Errorf("damaged copy not replaced")
	}
	// The package's own directory is used when it is at hand.
	if ProxyDir() != filepath.Join(mustAbs(t, "testdata"), "proxy") {
		t.Errorf("ProxyDir() = %s", ProxyDir())
	}
}

func mustAbs(t *testing.T, dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
