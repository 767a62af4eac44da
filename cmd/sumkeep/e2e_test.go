package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/modproxy"
)

// TestGoCommandEndToEnd is the acceptance test: the real go command, with
// GOSUMDB pointing at a sumkeep mirror filled by the real binary, downloads
// real modules and writes exactly the expected go.sum; it keeps working when
// the upstream is gone; and when a record in the mirror's database is forged,
// the go command refuses it (the mirror cannot lie).
func TestGoCommandEndToEnd(t *testing.T) {
	for _, kind := range []string{"postgres", "sqlite"} {
		t.Run(kind, func(t *testing.T) { testGoCommandEndToEnd(t, kind) })
	}
}

func testGoCommandEndToEnd(t *testing.T, kind string) {
	w := newGoWorldOf(t, []modproxy.Module{
		{Path: "example.com/alpha", Version: "v1.0.0", Files: map[string]string{
			"go.mod":   "module example.com/alpha\n\ngo 1.21\n",
			"alpha.go": "package alpha\n\nconst Name = \"alpha\"\n",
		}},
		{Path: "example.com/Beta/gamma", Version: "v0.3.1", Files: map[string]string{
			"go.mod":   "module example.com/Beta/gamma\n\ngo 1.21\n",
			"gamma.go": "package gamma\n\nfunc Gamma() int { return 3 }\n",
		}},
		{Path: "example.org/delta/v2", Version: "v2.0.1", Files: map[string]string{
			"go.mod":   "module example.org/delta/v2\n\ngo 1.21\n",
			"delta.go": "package delta\n\nvar Delta = []string{\"d\"}\n",
			"LICENSE":  "Public domain.\n",
		}},
	})
	sums, want := w.sums, w.want(0, 1, 2)

	// The upstream: synthetic records, the real modules, more synthetic
	// records after them.
	u := newUpstream(t, 3000)
	for _, s := range sums {
		if err := u.AddModule(s.Path, s.Version, s.ZipHash, s.ModHash); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.AddSynthetic(1000); err != nil {
		t.Fatal(err)
	}
	size := u.Size()
	key, log := u.VerifierKey(), u.Name()

	dsn := newDB(t, kind)
	start := time.Now()
	mustSync(t, dsn, u.URL(), key)
	t.Logf("sync --once of %d records: %v", size, time.Since(start).Round(time.Millisecond))
	st := openDB(t, dsn)
	if got := servedSize(t, st, log); got != size {
		t.Fatalf("after sync the store serves head %d, want %d", got, size)
	}

	srv, mirror := startServe(t, dsn, key, "--upstream", u.URL(), "--mode", "full")
	u.ResetRequests()

	// goModTidy runs "go mod tidy" in a fresh module that imports the three
	// modules, with a fresh GOPATH (so an empty module cache and sumdb
	// cache).
	goModTidy := func(mirror string) (lines []string, out string, code int, gopath string) {
		t.Helper()
		return w.tidy(t, "", key, mirror, 0, 1, 2)
	}
	check := func(phase string) {
		t.Helper()
		start := time.Now()
		lines, out, code, gopath := goModTidy(mirror)
		t.Logf("%s: go mod tidy took %v\n%s", phase, time.Since(start).Round(time.Millisecond), out)
		if code != 0 {
			t.Fatalf("%s: go mod tidy: exit %d\n%s\nmirror stderr:\n%s", phase, code, out, srv.stderr)
		}
		if !slices.Equal(lines, want) {
			t.Fatalf("%s: go.sum is\n%s\nwant\n%s\ngo output:\n%s", phase, strings.Join(lines, "\n"), strings.Join(want, "\n"), out)
		}
		// The go command checked the sums against the mirror: it cached the
		// mirror's (that is, the upstream's) signed head.
		latest, err := os.ReadFile(filepath.Join(gopath, "pkg", "sumdb", log, "latest"))
		if err != nil {
			t.Fatalf("%s: the go command did not consult the checksum database: %v\n%s", phase, err, out)
		}
		if f := strings.Split(string(latest), "\n"); len(f) < 2 || f[1] != strconv.FormatInt(size, 10) {
			t.Errorf("%s: the go command's cached head is\n%s\nwant size %d", phase, latest, size)
		}
	}

	check("mirror")
	if got := u.Requests(""); got != 0 {
		t.Errorf("the go command reached the upstream %d times; it must only use the mirror", got)
	}

	// The mirror serves on its own.
	u.Close()
	check("upstream closed")

	// Forge the record of one module in the mirror's database. A fresh
	// server process is started, since a running one may hold the record
	// in its cache (records below the served head never change).
	victim := sums[1]
	if n := forgeRecord(t, dsn, victim.Path, victim.Version); n != 1 {
		t.Fatalf("forging %s@%s changed %d rows, want 1", victim.Path, victim.Version, n)
	}
	srv.stop(t, 15*time.Second)
	_, mirror = startServe(t, dsn, key, "--upstream", u.URL(), "--mode", "full")

	// The forged go.sum line the mirror now vouches for.
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(victim.ZipHash, "h1:"))
	if err != nil {
		t.Fatal(err)
	}
	raw[0] ^= 1
	forged := fmt.Sprintf("%s %s h1:%s", victim.Path, victim.Version, base64.StdEncoding.EncodeToString(raw))

	lines, out, code, _ := goModTidy(mirror)
	if code == 0 {
		t.Fatalf("go mod tidy succeeded against a mirror with a forged record for %s@%s\ngo.sum:\n%s\noutput:\n%s",
			victim.Path, victim.Version, strings.Join(lines, "\n"), out)
	}
	t.Logf("forged record: go mod tidy exit %d:\n%s", code, out)
	if !strings.Contains(out, "verifying") && !strings.Contains(out, "SECURITY") && !strings.Contains(out, "checksum") {
		t.Errorf("go mod tidy failed without mentioning verification:\n%s", out)
	}
	if !strings.Contains(out, victim.Path) {
		t.Errorf("go mod tidy failed without naming %s:\n%s", victim.Path, out)
	}
	if slices.Contains(lines, forged) {
		t.Errorf("go.sum holds the forged line %q", forged)
	}
}
