package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/modproxy"
	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
)

// goWorld is a set of real modules in a file:// GOPROXY, and a way to run
// the go command against a mirror for them.
type goWorld struct {
	goBin    string
	tmp      string
	proxyDir string
	mods     []modproxy.Module
	sums     []modproxy.Sum
	n        int
}

func newGoWorld(t *testing.T, names ...string) *goWorld {
	t.Helper()
	var mods []modproxy.Module
	for _, p := range names {
		pkg := filepath.Base(strings.TrimSuffix(p, "/v2"))
		mods = append(mods, modproxy.Module{Path: p, Version: "v1.0.0", Files: map[string]string{
			"go.mod":    "module " + p + "\n\ngo 1.21\n",
			pkg + ".go": "package " + pkg + "\n\nconst Name = " + strconv.Quote(p) + "\n",
		}})
	}
	return newGoWorldOf(t, mods)
}

// newGoWorldOf builds a file:// GOPROXY of the given modules.
func newGoWorldOf(t *testing.T, mods []modproxy.Module) *goWorld {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	w := &goWorld{goBin: goBin, tmp: t.TempDir(), mods: mods}
	w.proxyDir = filepath.Join(w.tmp, "proxy")
	if w.sums, err = modproxy.Build(w.proxyDir, w.mods); err != nil {
		t.Fatal(err)
	}
	return w
}

// want returns the go.sum lines of the modules, sorted.
func (w *goWorld) want(mods ...int) []string {
	var lines []string
	for _, i := range mods {
		lines = append(lines, strings.Split(strings.TrimSuffix(w.sums[i].Lines(), "\n"), "\n")...)
	}
	slices.Sort(lines)
	return lines
}

// tidy runs "go mod tidy" in a fresh module importing mods, with GOPATH
// gopath ("" for a fresh one), against the checksum database at mirror. It
// returns the sorted go.sum lines, the output, the exit code and the GOPATH.
func (w *goWorld) tidy(t *testing.T, gopath, key, mirror string, mods ...int) ([]string, string, int, string) {
	t.Helper()
	return w.tidyEnv(t, gopath, modproxy.GOPROXY(w.proxyDir), key+" "+mirror, mods...)
}

// log returns a log (not started) of n synthetic records and then w's
// modules, that refuses data tiles as a module proxy's /sumdb/ does.
func (w *goWorld) log(t *testing.T, n int) *sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic("sumdb.test", n)
	if err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	for _, s := range w.sums {
		if err := u.AddModule(s.Path, s.Version, s.ZipHash, s.ModHash); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// tidyEnv is tidy with the go command's GOPROXY and GOSUMDB given whole.
func (w *goWorld) tidyEnv(t *testing.T, gopath, goproxy, gosumdb string, mods ...int) ([]string, string, int, string) {
	t.Helper()
	w.n++
	if gopath == "" {
		gopath = filepath.Join(w.tmp, fmt.Sprintf("gopath%d", w.n))
		t.Cleanup(func() {
			if err := modproxy.CleanModCache(gopath); err != nil {
				t.Errorf("cleaning module cache: %v", err)
			}
		})
	}
	work := filepath.Join(w.tmp, fmt.Sprintf("work%d", w.n))
	if err := os.MkdirAll(work, 0o777); err != nil {
		t.Fatal(err)
	}
	var req, imp strings.Builder
	for _, i := range mods {
		fmt.Fprintf(&req, "\t%s %s\n", w.mods[i].Path, w.mods[i].Version)
		fmt.Fprintf(&imp, "\t_ %q\n", w.mods[i].Path)
	}
	files := map[string]string{
		"go.mod":  "module example.com/main\n\ngo 1.21\n\nrequire (\n" + req.String() + ")\n",
		"main.go": "package main\n\nimport (\n" + imp.String() + ")\n\nfunc main() {}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.goBin, "mod", "tidy")
	cmd.Dir = work
	cmd.Env = modproxy.GoEnv(gopath, goproxy, "GOSUMDB="+gosumdb)
	b, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		t.Fatalf("go mod tidy: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("go mod tidy: timed out\n%s", b)
	}
	var lines []string
	if sum, err := os.ReadFile(filepath.Join(work, "go.sum")); err == nil {
		lines = strings.Split(strings.TrimSuffix(string(sum), "\n"), "\n")
		slices.Sort(lines)
	}
	return lines, string(b), code, gopath
}

// cachedHead returns the size of the head the go command cached for log.
func cachedHead(t *testing.T, gopath, log string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(gopath, "pkg", "sumdb", log, "latest"))
	if err != nil {
		t.Fatalf("the go command cached no head: %v", err)
	}
	f := strings.Split(string(b), "\n")
	if len(f) < 2 {
		t.Fatalf("cached head %q", b)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("cached head %q", b)
	}
	return n
}

// TestGoCommandLazy: against an upstream that refuses data tiles, a mirror
// in the default (auto) mode fetches through what the go command asks for,
// keeps only that, serves it with the upstream gone, and as the log grows
// keeps every stored record verifiable by the go command, both with a
// module cache primed at the old head and with an empty one.
func TestGoCommandLazy(t *testing.T) {
	w := newGoWorld(t, "example.com/alpha", "example.com/beta", "example.org/gamma", "example.net/delta", "example.com/epsilon")
	u, err := sumdbtest.NewSynthetic("sumdb.test", 3000)
	if err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	for _, s := range w.sums[:3] {
		if err := u.AddModule(s.Path, s.Version, s.ZipHash, s.ModHash); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.AddSynthetic(1000); err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	key, log := u.VerifierKey(), u.Name()

	dsn := pgtest.NewDSN(t)
	srv, mirror := startServe(t, dsn, key, "--upstream", u.URL())

	// Fetch-through into an empty mirror.
	lines, out, code, primed := w.tidy(t, "", key, mirror, 0, 1)
	if code != 0 || !slices.Equal(lines, w.want(0, 1)) {
		t.Fatalf("fetch-through: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
	}
	if !strings.Contains(srv.stderr.String(), "using lazy mode") {
		t.Errorf("the mirror did not say it chose lazy mode:\n%s", srv.stderr)
	}
	if n := u.Requests("/tile/8/data/"); n > 2 {
		t.Errorf("%d data tile requests; auto mode should probe once", n)
	}
	st := openStore(t, dsn)
	ids, err := st.RecordIDs(context.Background(), log, -1, 100)
	if err != nil || len(ids) != 2 {
		t.Fatalf("the mirror stored records %v (%v), want the 2 asked for", ids, err)
	}
	oldHead := cachedHead(t, primed, log)

	// A module the log does not hold: the go command prints why, from the
	// body of the mirror's 404 ("server response: ...").
	_, out, code, _ = w.tidy(t, "", key, mirror, 4)
	if want := "server response: not found: the upstream checksum database has no record of example.com/epsilon@v1.0.0"; code == 0 || !strings.Contains(out, want) {
		t.Fatalf("a module not in the log: exit %d, want the go command to print %q:\n%s", code, want, out)
	}

	// The log grows; a sync moves the mirror to the new head.
	if err := u.AddSynthetic(70000); err != nil {
		t.Fatal(err)
	}
	if err := u.AddModule(w.sums[3].Path, w.sums[3].Version, w.sums[3].ZipHash, w.sums[3].ModHash); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runSumkeep(t, 60*time.Second, "sync", "--once", "--db", dsn, "--upstream", u.URL(), "--key", key)
	if code != 0 || !strings.Contains(stdout, "lazy mode") {
		t.Fatalf("sync --once: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := servedSize(t, st, log); got != u.Size() {
		t.Fatalf("served head %d after sync, upstream %d", got, u.Size())
	}
	waitServing(t, mirror, u.Size())

	// A go command that cached the old head (its module cache emptied, so
	// that it asks again) verifies the old records under the new head: it
	// needs the consistency tiles the sync stored.
	emptyModCache(t, primed)
	lines, out, code, _ = w.tidy(t, primed, key, mirror, 0, 1)
	if code != 0 || !slices.Equal(lines, w.want(0, 1)) {
		t.Fatalf("primed cache after growth: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
	}
	if got := cachedHead(t, primed, log); got <= oldHead || got != u.Size() {
		t.Fatalf("the primed go command's head moved from %d to %d, want %d", oldHead, got, u.Size())
	}
	// So does one with an empty cache, and a new module is fetched through.
	lines, out, code, _ = w.tidy(t, "", key, mirror, 0, 1, 3)
	if code != 0 || !slices.Equal(lines, w.want(0, 1, 3)) {
		t.Fatalf("empty cache after growth: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
	}

	// The upstream goes away: what is stored is still served, to an empty
	// cache too; what is not is a clean 404.
	u.Close()
	lines, out, code, _ = w.tidy(t, "", key, mirror, 0, 1, 3)
	if code != 0 || !slices.Equal(lines, w.want(0, 1, 3)) {
		t.Fatalf("upstream gone: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
	}
	_, out, code, _ = w.tidy(t, "", key, mirror, 2)
	if want := "server response: not found: the upstream could not be reached"; code == 0 || !strings.Contains(out, "404 Not Found") || !strings.Contains(out, want) {
		t.Fatalf("a module never fetched, upstream gone: exit %d, want a 404 and %q:\n%s", code, want, out)
	}
}

// TestSeed: seeding from a go.sum against an upstream that refuses data
// tiles stores exactly what the file needs, reports what it did, and the
// go command then verifies those modules through the mirror with the
// upstream gone.
func TestSeed(t *testing.T) {
	w := newGoWorld(t, "example.com/alpha", "example.com/beta", "example.org/private/gamma")
	u := w.log(t, 5000)
	if err := u.AddSynthetic(2000); err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	key, log := u.VerifierKey(), u.Name()

	// A go.sum: the three modules (the third one private), one synthetic
	// record by its go.mod line only, one module the log does not hold and
	// a line repeated.
	var sum strings.Builder
	for _, s := range w.sums {
		sum.WriteString(s.Lines())
	}
	p, v, _ := u.Module(1234)
	fmt.Fprintf(&sum, "%s %s/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", p, v)
	sum.WriteString("example.com/not/in/log v1.2.3 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	sum.WriteString(w.sums[0].Lines())
	goSum := filepath.Join(t.TempDir(), "go.sum")
	if err := os.WriteFile(goSum, []byte(sum.String()), 0o666); err != nil {
		t.Fatal(err)
	}

	dsn := pgtest.NewDSN(t)
	seed := func() (int, string, string) {
		t.Helper()
		p := startSumkeepEnv(t, []string{"GONOSUMDB=example.org/private"}, "seed", "--db", dsn, "--upstream", u.URL(), "--key", key, goSum)
		code := p.wait(t, 60*time.Second)
		return code, p.stdout.String(), p.stderr.String()
	}
	code, stdout, stderr := seed()
	if code != 0 {
		t.Fatalf("seed: exit %d\n%s\n%s", code, stdout, stderr)
	}
	want := "5 module@versions: 3 fetched, 0 already present, 1 not in the log, 0 refused by the upstream, 0 unreachable, 1 skipped (GONOSUMDB/GOPRIVATE), 0 failed"
	if !strings.Contains(stdout, want) {
		t.Fatalf("seed said\n%s\nwant %q\nstderr:\n%s", stdout, want, stderr)
	}
	st := openStore(t, dsn)
	ids, err := st.RecordIDs(context.Background(), log, -1, 100)
	if err != nil || len(ids) != 3 {
		t.Fatalf("stored records %v (%v), want 3", ids, err)
	}
	code, stdout, stderr = seed()
	if want := "3 already present"; code != 0 || !strings.Contains(stdout, want) {
		t.Fatalf("second seed: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Offline: the go command verifies the seeded modules.
	u.Close()
	_, mirror := startServe(t, dsn, key, "--upstream", u.URL())
	lines, out, code, _ := w.tidy(t, "", key, mirror, 0, 1)
	if code != 0 || !slices.Equal(lines, w.want(0, 1)) {
		t.Fatalf("after seed, upstream gone: exit %d, go.sum\n%s\noutput:\n%s", code, strings.Join(lines, "\n"), out)
	}
}

// TestGoCommandHeadSeenElsewhere: a go command that verified modules at the
// upstream directly (so that it caches a signed head this mirror never
// stored) and is then pointed at a cold lazy mirror serving a newer head
// proves its head under the mirror's with tiles no stored record needed:
// the mirror fetches them through, verified, instead of answering 404
// (which made such a go command fail: "checking tree#N: ... 404").
func TestGoCommandHeadSeenElsewhere(t *testing.T) {
	w := newGoWorld(t, "example.com/alpha", "example.com/beta")
	u, err := sumdbtest.NewSynthetic("sumdb.test", 3000)
	if err != nil {
		t.Fatal(err)
	}
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	if err := u.AddModule(w.sums[0].Path, w.sums[0].Version, w.sums[0].ZipHash, w.sums[0].ModHash); err != nil {
		t.Fatal(err)
	}
	if err := u.AddSynthetic(1000); err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	key, log := u.VerifierKey(), u.Name()

	// Directly at the upstream, as before sumkeep.
	lines, out, code, primed := w.tidy(t, "", key, u.URL(), 0)
	if code != 0 || !slices.Equal(lines, w.want(0)) {
		t.Fatalf("direct: exit %d, go.sum\n%s\noutput:\n%s", code, strings.Join(lines, "\n"), out)
	}
	oldHead := cachedHead(t, primed, log)

	// The log grows; a cold mirror serves its newest head.
	if err := u.AddSynthetic(70000); err != nil {
		t.Fatal(err)
	}
	if err := u.AddModule(w.sums[1].Path, w.sums[1].Version, w.sums[1].ZipHash, w.sums[1].ModHash); err != nil {
		t.Fatal(err)
	}
	srv, mirror := startServe(t, pgtest.NewDSN(t), key, "--mode", "lazy", "--upstream", u.URL())
	waitServing(t, mirror, u.Size())

	// The same go command (its module cache emptied, so that it asks
	// again), now through the mirror.
	emptyModCache(t, primed)
	lines, out, code, _ = w.tidy(t, primed, key, mirror, 0, 1)
	if code != 0 || !slices.Equal(lines, w.want(0, 1)) {
		t.Fatalf("through the mirror with a head seen elsewhere: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", code, strings.Join(lines, "\n"), out, srv.stderr)
	}
	if got := cachedHead(t, primed, log); got <= oldHead || got != u.Size() {
		t.Fatalf("the go command's head moved from %d to %d, want %d", oldHead, got, u.Size())
	}
}

// waitServing waits until the server at mirror serves a head of size n.
func waitServing(t *testing.T, mirror string, n int64) {
	t.Helper()
	waitFor(t, 60*time.Second, func() string { return fmt.Sprintf("the server to serve a head of size %d", n) }, func() bool {
		resp, err := http.Get(mirror + "/latest")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "\n"+strconv.FormatInt(n, 10)+"\n")
	})
}

// emptyModCache empties the module cache of gopath, keeping the go
// command's cached signed heads, so that it asks the checksum database
// again with the head it holds.
func emptyModCache(t *testing.T, gopath string) {
	t.Helper()
	if err := modproxy.CleanModCache(gopath); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(gopath, "pkg", "mod")); err != nil {
		t.Fatal(err)
	}
}
