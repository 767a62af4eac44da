package main

import (
	"context"
	"net/http/httptest"
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
	"github.com/sumkeep/sumkeep/internal/realsum"
)

// TestRealSeedOffline replays recorded answers of the real sum.golang.org
// (signed with its real key) from an upstream that refuses data tiles, as a
// module proxy's /sumdb/ endpoint does: a real project's go.sum seeds the
// mirror, the upstream goes away, and the real go command verifies real
// modules through the mirror. Then the air gap: the go.sum's bundle is
// exported, imported into an empty embedded mirror, verified there offline
// and served to the go command with no upstream anywhere.
func TestRealSeedOffline(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	replay := realsum.Handler()
	up := httptest.NewServer(replay)
	defer up.Close()
	tmp := t.TempDir()
	goSum := filepath.Join(tmp, "go.sum")
	if err := os.WriteFile(goSum, realsum.GoSum(), 0o666); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewDSN(t)
	code, stdout, stderr := runSumkeep(t, 120*time.Second, "seed", "--db", dsn, "--upstream", up.URL, "--key", realsum.Key, goSum)
	if code != 0 {
		t.Fatalf("seed: exit %d\n%s\n%s", code, stdout, stderr)
	}
	n := len(realsum.Modules())
	if want := "fetched"; !strings.Contains(stdout, " "+strconv.Itoa(n)+" "+want) {
		t.Fatalf("seed of %d module@versions said:\n%s\n%s", n, stdout, stderr)
	}
	if got := replay.Requests(realsum.KindData); got != 0 {
		t.Errorf("seed asked for %d data tiles", got)
	}
	t.Logf("%s", stdout)
	st := openStore(t, dsn)
	ids, err := st.RecordIDs(context.Background(), realsum.Name, -1, 1<<20)
	if err != nil || len(ids) != n {
		t.Fatalf("the mirror holds %d records (%v), want %d", len(ids), err, n)
	}
	served, err := st.ServedHead(context.Background(), realsum.Name)
	if err != nil {
		t.Fatal(err)
	}
	up.Close()

	goGet := func(mirror, dir string) {
		t.Helper()
		gopath := filepath.Join(tmp, dir, "gopath")
		t.Cleanup(func() { modproxy.CleanModCache(gopath) })
		work := filepath.Join(tmp, dir, "work")
		if err := os.MkdirAll(work, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module example.com/real\n\ngo 1.21\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		args := []string{"get"}
		var want []string
		real := strings.Split(string(realsum.GoSum()), "\n")
		for _, m := range realsum.ProxyModules() {
			args = append(args, m.Path+"@"+m.Version)
			for _, l := range real {
				if strings.HasPrefix(l, m.Path+" "+m.Version+" ") || strings.HasPrefix(l, m.Path+" "+m.Version+"/go.mod ") {
					want = append(want, l)
				}
			}
		}
		slices.Sort(want)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = work
		cmd.Env = modproxy.GoEnv(gopath, modproxy.GOPROXY(realsum.ProxyDir()), "GOSUMDB="+realsum.Key+" "+mirror)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go get through the mirror, upstream gone: %v\n%s", err, out)
		}
		sum, err := os.ReadFile(filepath.Join(work, "go.sum"))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Split(strings.TrimSpace(string(sum)), "\n")
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("go.sum is\n%s\nwant the real project's lines\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if h := cachedHead(t, gopath, realsum.Name); h != served.Size {
			t.Fatalf("the go command verified against head %d, the mirror serves %d", h, served.Size)
		}
	}
	srv, mirror := startServe(t, dsn, realsum.Key, "--upstream", up.URL)
	goGet(mirror, "seeded")
	srv.stop(t, 15*time.Second)

	// Across the air gap.
	bundle := filepath.Join(tmp, "bundle.db")
	code, stdout, stderr = runSumkeep(t, 60*time.Second, "export", "--db", dsn, "--key", realsum.Key, "--go-sum", goSum, "-o", bundle)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("%s", stdout)
	code, stdout, stderr = runSumkeep(t, 60*time.Second, "verify", "--db", bundle, "--key", realsum.Key, goSum)
	if code != 0 {
		t.Fatalf("verify --db bundle: exit %d\n%s\n%s", code, stdout, stderr)
	}
	embedded := filepath.Join(tmp, "airgapped", "sumkeep.db")
	code, stdout, stderr = runSumkeep(t, 60*time.Second, "import", "--db", embedded, "--key", realsum.Key, bundle)
	if code != 0 || !strings.Contains(stdout, "serving head "+strconv.FormatInt(served.Size, 10)) {
		t.Fatalf("import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	_, mirror = startServe(t, embedded, realsum.Key, "--upstream", up.URL)
	goGet(mirror, "imported")
}
