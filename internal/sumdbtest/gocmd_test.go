package sumdbtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sumkeep/sumkeep/internal/modproxy"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
)

// TestGoCommand runs the real go command with GOSUMDB pointing at the
// upstream and GOPROXY at real module zips: downloads verify against the
// upstream, and the upstream's lies make the go command refuse them.
func TestGoCommand(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	tmp := t.TempDir()
	proxyDir := filepath.Join(tmp, "proxy")
	sums, err := modproxy.Build(proxyDir, []modproxy.Module{
		{Path: "example.com/hello", Version: "v1.0.0", Files: map[string]string{
			"go.mod":   "module example.com/hello\n\ngo 1.21\n",
			"hello.go": "package hello\n\nconst Hello = \"hello\"\n",
		}},
		{Path: "example.com/Upper/world", Version: "v0.3.0", Files: map[string]string{
			"go.mod":   "module example.com/Upper/world\n\ngo 1.21\n",
			"world.go": "package world\n",
		}},
		{Path: "example.com/other", Version: "v1.2.0", Files: map[string]string{
			"go.mod": "module example.com/other\n",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	u, err := sumdbtest.NewSynthetic("sumdb.test", 700)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sums[:2] { // example.com/other is not in the database
		if err := u.AddModule(s.Path, s.Version, s.ZipHash, s.ModHash); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	defer u.Close()

	n := 0
	// downloadIn runs "go mod download -json mod" with GOPATH tmp/gopath/name
	// (its module cache and its sumdb cache: the latest head seen).
	downloadIn := func(name, mod string) (string, error) {
		t.Helper()
		gopath := filepath.Join(tmp, "gopath", name)
		t.Cleanup(func() { modproxy.CleanModCache(gopath) })
		n++
		work := filepath.Join(tmp, "work", fmt.Sprint(n))
		if err := os.MkdirAll(work, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module example.com/main\n\ngo 1.21\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(goBin, "mod", "download", "-json", mod)
		cmd.Dir = work
		cmd.Env = modproxy.GoEnv(gopath, modproxy.GOPROXY(proxyDir), "GOSUMDB="+u.VerifierKey()+" "+url)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var res struct{ Sum, GoModSum, Error string }
		json.Unmarshal(out, &res)
		if err == nil && res.Error == "" {
			return res.Sum + " " + res.GoModSum, nil
		}
		return "", &goError{res.Error + stderr.String()}
	}
	// download is downloadIn with a fresh GOPATH.
	download := func(mod string) (string, error) {
		t.Helper()
		return downloadIn(fmt.Sprint("fresh", n), mod)
	}

	for _, s := range sums[:2] {
		got, err := download(s.Path + "@" + s.Version)
		if err != nil {
			t.Fatalf("%s@%s: %v", s.Path, s.Version, err)
		}
		if got != s.ZipHash+" "+s.ModHash {
			t.Errorf("%s@%s: go says %s", s.Path, s.Version, got)
		}
	}
	if lookups := u.Requests("/lookup/"); lookups < 2 {
		t.Errorf("go command made %d lookups", lookups)
	}

	// A module the database does not know is refused (404 from /lookup).
	if _, err := download("example.com/other@v1.2.0"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown module: err = %v", err)
	}

	hello := sums[0].Path + "@" + sums[0].Version
	for _, tt := range []struct {
		fault sumdbtest.Fault
		want  string
	}{
		{sumdbtest.Fault{Kind: sumdbtest.FaultWrongLookup}, "cannot authenticate record data"},
		{sumdbtest.Fault{Kind: sumdbtest.FaultAlterRecord, ID: 700}, "cannot authenticate record data"},
		{sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature}, "invalid signature"},
		{sumdbtest.Fault{Kind: sumdbtest.FaultFlipTileByte, L: 0, N: 700 / 256}, "inconsistent tile"},
	} {
		u.SetFault(tt.fault)
		_, err := download(hello)
		u.SetFault(sumdbtest.Fault{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("with %v: err = %v, want %q", tt.fault.Kind, err, tt.want)
		}
	}

	if _, err := download(hello); err != nil {
		t.Errorf("honest again: %v", err)
	}

	// A go command that saw the honest log refuses a fork at the same URL,
	// while one that did not accepts it.
	if _, err := downloadIn("forked", hello); err != nil {
		t.Fatal(err)
	}
	f, err := u.Fork(0)
	if err != nil {
		t.Fatal(err)
	}
	world := sums[1]
	if err := f.AddSynthetic(1200); err != nil {
		t.Fatal(err)
	}
	if err := f.AddModule(world.Path, world.Version, world.ZipHash, world.ModHash); err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultFork, Fork: f})
	defer u.SetFault(sumdbtest.Fault{})
	worldMod := world.Path + "@" + world.Version
	if _, err := downloadIn("forked", worldMod); err == nil || !strings.Contains(err.Error(), "SECURITY ERROR") {
		t.Errorf("fork: err = %v, want SECURITY ERROR", err)
	}
	if _, err := download(worldMod); err != nil {
		t.Errorf("fork, fresh GOPATH: %v", err)
	}
}

type goError struct{ msg string }

func (e *goError) Error() string { return e.msg }
