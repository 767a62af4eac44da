package realsum_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/modproxy"
	"github.com/sumkeep/sumkeep/internal/realsum"
)

// TestGoCommand runs the real go command against the recorded modules
// (GOPROXY=file://ProxyDir) and the replayed database: it downloads them,
// checks them against sum.golang.org's real signed data, and writes the very
// go.sum lines the recorded project has.
func TestGoCommand(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	rp, url := newReplay(t)
	mods := realsum.ProxyModules()

	gopath := t.TempDir()
	env := modproxy.GoEnv(gopath, modproxy.GOPROXY(realsum.ProxyDir()),
		"GOSUMDB="+realsum.Key+" "+url, "GONOSUMDB=", "GONOSUMCHECK=", "GOPRIVATE=", "GONOPROXY=", "GOINSECURE=")
	t.Cleanup(func() {
		cmd := exec.Command(goBin, "clean", "-modcache")
		cmd.Env = env
		cmd.Dir = gopath
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("go clean -modcache: %v\n%s", err, out)
			modproxy.CleanModCache(gopath)
		}
	})
	newModule := func() string {
		work := t.TempDir()
		if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module example.com/realsumtest\n\ngo 1.21\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		return work
	}
	work := newModule()
	args := []string{"get"}
	for _, m := range mods {
		args = append(args, m.String())
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = work
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	got, err := os.ReadFile(filepath.Join(work, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(realsum.GoSum()), "\n") {
		f := strings.Fields(line)
		for _, m := range mods {
			if len(f) == 3 && f[0] == m.Path && strings.TrimSuffix(f[1], "/go.mod") == m.Version {
				want = append(want, line)
			}
		}
	}
	gotLines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	slices.Sort(gotLines)
	slices.Sort(want)
	if !slices.Equal(gotLines, want) {
		t.Errorf("go.sum written by the go command:\n%s\nwant the recorded project's lines:\n%s", got, strings.Join(want, "\n"))
	}
	if n := rp.Requests(realsum.KindLookup); n != int64(len(mods)) {
		t.Errorf("go command made %d lookups for %d modules", n, len(mods))
	}
	if n := rp.Requests(realsum.KindData) + rp.Requests(realsum.KindLatest); n != 0 {
		t.Errorf("go command fetched data tiles or /latest %d times", n)
	}
	if rp.Requests(realsum.KindTile) == 0 {
		t.Errorf("go command fetched no tiles")
	}

	// The go command's verification is real: a flipped byte in the tile
	// holding a module's record makes it refuse a fresh download.
	rp.Honest()
	rp.ResetRequests()
	gopath2 := t.TempDir()
	env2 := modproxy.GoEnv(gopath2, modproxy.GOPROXY(realsum.ProxyDir()), "GOSUMDB="+realsum.Key+" "+url)
	t.Cleanup(func() { modproxy.CleanModCache(gopath2) })
	m := mods[0]
	_, body, _ := realsum.Lookup(m)
	id, _, _, err := tlog.ParseRecord(body)
	if err != nil {
		t.Fatal(err)
	}
	rp.FlipTileByte(0, id>>8, 3)
	cmd = exec.Command(goBin, "mod", "download", m.String())
	cmd.Dir = newModule() // no go.sum: the go command must ask the database
	cmd.Env = env2
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("inconsistent tile")) {
		t.Errorf("flipped tile: go mod download %v: err = %v\n%s", m, err, out)
	}
}
