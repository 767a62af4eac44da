package sumdbtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func newClient(u *Upstream, base string) (*sumdb.Client, *ClientOps) {
	return NewClient(base, u.VerifierKey())
}

const (
	helloPath = "example.com/hello"
	helloVers = "v1.0.0"
	helloZip  = "h1:Aq3hcgK9/UqSzXmYvWgHsKDBbQqIwOAcFL9msyVIyAE="
	helloMod  = "h1:HX5tVdaDEGpORxi3gYAkumhdwgtJQwZpgSzbCzTPfqE="
)

// newTestUpstream returns an upstream with 5000 synthetic records followed by
// example.com/hello v1.0.0 (record 5000), serving at the returned URL.
func newTestUpstream(t *testing.T) (*Upstream, string) {
	t.Helper()
	u, err := New("sumdb.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.AddSynthetic(5000); err != nil {
		t.Fatal(err)
	}
	if err := u.AddModule(helloPath, helloVers, helloZip, helloMod); err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	t.Cleanup(u.Close)
	return u, url
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func TestLookup(t *testing.T) {
	u, url := newTestUpstream(t)
	if u.Size() != 5001 {
		t.Fatalf("Size() = %d, want 5001", u.Size())
	}
	c, ops := newClient(u, url)
	lines, err := c.Lookup(helloPath, helloVers)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{helloPath + " " + helloVers + " " + helloZip}; !equal(lines, want) {
		t.Errorf("Lookup = %q, want %q", lines, want)
	}
	lines, err = c.Lookup(helloPath, helloVers+"/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{helloPath + " " + helloVers + "/go.mod " + helloMod}; !equal(lines, want) {
		t.Errorf("Lookup go.mod = %q, want %q", lines, want)
	}

	// Synthetic records are found too, and their lines are the record's.
	for _, id := range []int64{0, 255, 256, 1234, 4999} {
		path, vers, ok := u.Module(id)
		if !ok {
			t.Fatalf("Module(%d) failed", id)
		}
		if got, ok := u.Lookup(path, vers); !ok || got != id {
			t.Errorf("u.Lookup(%s, %s) = %d, %v; want %d", path, vers, got, ok, id)
		}
		lines, err := c.Lookup(path, vers)
		if err != nil {
			t.Fatal(err)
		}
		rec := strings.Split(string(u.Record(id)), "\n")
		if !equal(lines, rec[:1]) {
			t.Errorf("Lookup(%s@%s) = %q, record %d is %q", path, vers, lines, id, rec)
		}
	}
	if _, err := c.Lookup("example.com/missing", "v1.0.0"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Lookup of missing module: err = %v, want 404", err)
	}
	if s := ops.SecurityErrors(); len(s) != 0 {
		t.Errorf("security errors: %q", s)
	}

	// The head is signed by the key, for the tree of the whole log.
	v, err := note.NewVerifier(u.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(u.SignedHead(), note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	if tree != u.Tree() || tree.N != 5001 {
		t.Errorf("signed tree %+v, Tree() %+v", tree, u.Tree())
	}
	code, latest := get(t, url+"/latest")
	if code != 200 || !bytes.Equal(latest, u.SignedHead()) {
		t.Errorf("/latest = %d %q", code, latest)
	}
	// The proxy form serves the same.
	if code, _ := get(t, url+"/sumdb/sumdb.test/supported"); code != 200 {
		t.Errorf("/sumdb/sumdb.test/supported = %d", code)
	}
	if code, _ := get(t, url+"/supported"); code != 404 {
		t.Errorf("/supported = %d, want 404", code)
	}
	pc, _ := newClient(u, url+"/sumdb/sumdb.test")
	if _, err := pc.Lookup(helloPath, helloVers); err != nil {
		t.Errorf("lookup in proxy form: %v", err)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// TestFaults checks that a client sees every lie it can see.
func TestFaults(t *testing.T) {
	u, url := newTestUpstream(t)
	const helloID = 5000
	tests := []struct {
		fault Fault
		want  string // in the error
	}{
		{Fault{Kind: FaultFlipTileByte, L: 0, N: helloID / 256}, "inconsistent"},
		{Fault{Kind: FaultFlipTileByte, L: 0, N: helloID / 256, Offset: 136*32 + 31}, "inconsistent"},
		{Fault{Kind: FaultFlipTileByte, L: 1, N: -1, Offset: 5}, "inconsistent"},
		{Fault{Kind: FaultAlterRecord, ID: helloID}, "cannot authenticate record data"},
		{Fault{Kind: FaultBadSignature}, "invalid signature"},
		{Fault{Kind: FaultUnknownKey}, "no verifiable signatures"},
		{Fault{Kind: FaultWrongLookup}, "cannot authenticate record data"},
		{Fault{Kind: FaultServerError, Prefix: "/tile/"}, "503"},
		{Fault{Kind: FaultHTMLPage, Prefix: "/lookup/"}, "malformed"},
		{Fault{Kind: FaultMalformed, Prefix: "/lookup/"}, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.Kind.String(), func(t *testing.T) {
			u.SetFault(tt.fault)
			defer u.SetFault(Fault{})
			c, _ := newClient(u, url)
			_, err := c.Lookup(helloPath, helloVers)
			if err == nil {
				t.Fatalf("Lookup with fault %+v succeeded", tt.fault)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			t.Logf("%v", firstLine(err.Error()))

			// The same client succeeds once the upstream is honest again.
			u.SetFault(Fault{})
			c, _ = newClient(u, url)
			if _, err := c.Lookup(helloPath, helloVers); err != nil {
				t.Errorf("honest lookup: %v", err)
			}
		})
	}

	// A record altered in a data tile does not match its leaf hash.
	t.Run("alter-record-data-tile", func(t *testing.T) {
		const id = 1000
		u.SetFault(Fault{Kind: FaultAlterRecord, ID: id})
		defer u.SetFault(Fault{})
		tile := tlog.Tile{H: 8, L: -1, N: id / 256, W: 256}
		_, data := get(t, url+"/"+tile.Path())
		recs := splitDataTile(t, data)
		_, hashes := get(t, url+"/"+tlog.Tile{H: 8, L: 0, N: id / 256, W: 256}.Path())
		for i, rec := range recs {
			leaf, err := tlog.HashFromTile(tlog.Tile{H: 8, L: 0, N: id / 256, W: 256}, hashes, tlog.StoredHashIndex(0, tile.N*256+int64(i)))
			if err != nil {
				t.Fatal(err)
			}
			if match := leaf == tlog.RecordHash(rec); match != (tile.N*256+int64(i) != id) {
				t.Errorf("record %d matches leaf: %v", tile.N*256+int64(i), match)
			}
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// splitDataTile splits a data tile into record texts. Each record in a data
// tile is its text (ending in a newline) followed by one more newline, and
// record text never holds a blank line, so the tile splits at "\n\n".
func splitDataTile(t *testing.T, data []byte) [][]byte {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\n\n")) {
		t.Fatalf("data tile does not end in a blank line: %q", data[max(0, len(data)-20):])
	}
	var recs [][]byte
	for len(data) > 0 {
		i := bytes.Index(data, []byte("\n\n"))
		recs = append(recs, data[:i+1])
		data = data[i+2:]
	}
	return recs
}

// TestDataTiles checks data tiles against the records and the leaf hashes,
// and FaultRefuseDataTiles.
func TestDataTiles(t *testing.T) {
	u, url := newTestUpstream(t)
	for _, tile := range []tlog.Tile{
		{H: 8, L: -1, N: 0, W: 256},
		{H: 8, L: -1, N: 3, W: 10},
		{H: 8, L: -1, N: 19, W: 137}, // the right edge: records 4864..5000
	} {
		code, data := get(t, url+"/"+tile.Path())
		if code != 200 {
			t.Fatalf("%s: %d", tile.Path(), code)
		}
		var want []byte
		for i := range int64(tile.W) {
			want = append(want, u.Record(tile.N*256+i)...)
			want = append(want, '\n')
		}
		if !bytes.Equal(data, want) {
			t.Errorf("%s differs from the records", tile.Path())
		}
		recs := splitDataTile(t, data)
		hashTile := tlog.Tile{H: 8, L: 0, N: tile.N, W: tile.W}
		_, hashes := get(t, url+"/"+hashTile.Path())
		for i, rec := range recs {
			leaf, err := tlog.HashFromTile(hashTile, hashes, tlog.StoredHashIndex(0, tile.N*256+int64(i)))
			if err != nil || leaf != tlog.RecordHash(rec) {
				t.Errorf("%s record %d does not match its leaf hash (%v)", tile.Path(), i, err)
			}
		}
	}
	// Tiles beyond the tree, and of other heights, do not exist.
	for _, path := range []string{"/tile/8/data/019.p/138", "/tile/8/data/020", "/tile/8/0/019", "/tile/8/1/000", "/tile/4/0/000", "/tile/8/2/000.p/1"} {
		if code, _ := get(t, url+path); code != 404 {
			t.Errorf("%s = %d, want 404", path, code)
		}
	}
	if code, _ := get(t, url+"/tile/8/1/000.p/19"); code != 200 {
		t.Errorf("/tile/8/1/000.p/19 = %d, want 200", code)
	}

	u.SetFault(Fault{Kind: FaultRefuseDataTiles})
	for _, path := range []string{"/tile/8/data/000", "/tile/8/data/019.p/137", "/sumdb/sumdb.test/tile/8/data/000"} {
		if code, _ := get(t, url+path); code != 404 {
			t.Errorf("with FaultRefuseDataTiles, %s = %d, want 404", path, code)
		}
	}
	if code, _ := get(t, url+"/tile/8/0/000"); code != 200 {
		t.Errorf("with FaultRefuseDataTiles, hash tile = %d, want 200", code)
	}
	c, _ := newClient(u, url)
	if _, err := c.Lookup(helloPath, helloVers); err != nil {
		t.Errorf("with FaultRefuseDataTiles, lookup: %v", err)
	}
}

// TestFork checks that a client that saw the honest log refuses a fork
// served at the same URL, and that the two heads are both validly signed yet
// inconsistent.
func TestFork(t *testing.T) {
	u, err := New("sumdb.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.AddSynthetic(1000); err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	defer u.Close()
	honestHead := u.SignedHead()

	for _, keep := range []int64{0, 500, 999} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			c, ops := newClient(u, url)
			p, v, _ := u.Module(10)
			if _, err := c.Lookup(p, v); err != nil {
				t.Fatal(err)
			}

			f, err := u.Fork(keep)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.AddSynthetic(int(1500 - keep)); err != nil {
				t.Fatal(err)
			}
			if f.Size() != 1500 || !bytes.Equal(f.Record(keep-1), u.Record(keep-1)) || bytes.Equal(f.Record(keep), u.Record(keep)) {
				t.Fatalf("fork does not share exactly %d records", keep)
			}
			// Both heads verify with the real key, yet the fork does not extend the honest tree.
			verifier, _ := note.NewVerifier(u.VerifierKey())
			for _, head := range [][]byte{honestHead, f.SignedHead()} {
				if _, err := note.Open(head, note.VerifierList(verifier)); err != nil {
					t.Fatalf("head does not verify: %v", err)
				}
			}
			h, err := tlog.TreeHash(1000, f.HashReader())
			if err != nil {
				t.Fatal(err)
			}
			if h == u.Tree().Hash {
				t.Fatal("fork extends the honest tree")
			}

			u.SetFault(Fault{Kind: FaultFork, Fork: f})
			defer u.SetFault(Fault{})
			code, latest := get(t, url+"/latest")
			if code != 200 || !bytes.Equal(latest, f.SignedHead()) {
				t.Fatalf("/latest with FaultFork = %d %q", code, latest)
			}
			fp, fv, _ := f.Module(1200)
			_, err = c.Lookup(fp, fv)
			if err == nil {
				t.Fatal("lookup in the fork succeeded")
			}
			if !strings.Contains(err.Error(), sumdb.ErrSecurity.Error()) || len(ops.SecurityErrors()) == 0 {
				t.Errorf("lookup in fork: err = %v, security errors %d", err, len(ops.SecurityErrors()))
			}
			t.Log(firstLine(strings.Join(ops.SecurityErrors(), "")))

			// A fresh client that never saw the honest log accepts the fork.
			c2, _ := newClient(u, url)
			if _, err := c2.Lookup(fp, fv); err != nil {
				t.Errorf("fresh client, lookup in fork: %v", err)
			}
		})
	}
}

func TestDuplicate(t *testing.T) {
	u, url := newTestUpstream(t)
	dupID, err := u.AddDuplicate(10)
	if err != nil {
		t.Fatal(err)
	}
	if dupID != 5001 || u.Size() != 5002 {
		t.Fatalf("AddDuplicate = %d, size %d", dupID, u.Size())
	}
	p, v, _ := u.Module(10)
	p2, v2, _ := u.Module(dupID)
	if p != p2 || v != v2 || bytes.Equal(u.Record(10), u.Record(dupID)) {
		t.Fatalf("records %q and %q", u.Record(10), u.Record(dupID))
	}
	lines := strings.Split(string(u.Record(dupID)), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^\S+ \S+ h1:[A-Za-z0-9+/]{43}=$`).MatchString(lines[0]) {
		t.Errorf("duplicate record %q is malformed", u.Record(dupID))
	}
	if id, _ := u.Lookup(p, v); id != 10 {
		t.Errorf("Lookup = %d, want the first record 10", id)
	}
	// Data tile 19 holds both; the log is honestly signed.
	_, data := get(t, url+"/tile/8/data/019.p/138")
	if !bytes.HasSuffix(data, append(u.Record(dupID), '\n')) {
		t.Errorf("data tile lacks the duplicate")
	}
	c, _ := newClient(u, url)
	if _, err := c.Lookup(p, v); err != nil {
		t.Errorf("lookup: %v", err)
	}
	// Add refuses duplicates.
	if err := u.Add(u.Record(20)); err == nil {
		t.Error("Add of an existing module@version succeeded")
	}
	if err := u.AddModule(helloPath, helloVers, helloZip, helloMod); err == nil {
		t.Error("AddModule of an existing module@version succeeded")
	}
}

func TestAddValidation(t *testing.T) {
	u, err := New("sumdb.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"",
		"example.com/a v1.0.0 h1:x",           // no final newline
		"example.com/a v1.0.0 h1:x\n\nmore\n", // blank line
		"example.com/a v1.0.0 h1:\x01\n",      // control character
		"example.com/a v1.0.0 h1:\xff\n",      // not UTF-8
	} {
		if err := u.Add([]byte(bad)); err == nil {
			t.Errorf("Add(%q) succeeded", bad)
		}
	}
	good := []byte("example.com/a v1.0.0 h1:x\n")
	if err := u.Add(good, []byte("example.com/b v1.0.0 h1:x\n"), good); err == nil {
		t.Error("Add of a batch repeating a module succeeded")
	}
	if err := u.AddModule("not a path", "v1.0.0", "h1:x", "h1:y"); err == nil {
		t.Error("AddModule of a bad path succeeded")
	}
	if u.Size() != 0 {
		t.Errorf("Size() = %d after failed adds", u.Size())
	}
	if err := u.Add(good, []byte("free-form record text\n")); err != nil {
		t.Fatal(err)
	}
	if u.Size() != 2 || !bytes.Equal(u.Record(0), good) || u.Record(2) != nil {
		t.Errorf("after Add: size %d, record 0 %q", u.Size(), u.Record(0))
	}
	if _, _, ok := u.Module(1); ok {
		t.Error("Module of free-form record succeeded")
	}
}

func TestStaleHead(t *testing.T) {
	u, url := newTestUpstream(t)
	u.SetFault(Fault{Kind: FaultStaleHead, N: 1000})
	stale, err := u.SignedHeadAt(1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, latest := get(t, url+"/latest"); !bytes.Equal(latest, stale) {
		t.Errorf("/latest is not the head at 1000: %q", latest)
	}
	c, _ := newClient(u, url)
	p, v, _ := u.Module(999)
	if _, err := c.Lookup(p, v); err != nil {
		t.Errorf("lookup of record 999 under a head of 1000: %v", err)
	}
	if _, err := c.Lookup(helloPath, helloVers); err == nil || !strings.Contains(err.Error(), "cannot validate record") {
		t.Errorf("lookup of record 5000 under a head of 1000: err = %v", err)
	}
}

// TestRequestsHookClose checks request counting, the hook, and that a closed
// upstream refuses connections and can come back at the same URL.
func TestRequestsHookClose(t *testing.T) {
	u, url := newTestUpstream(t)
	var mu sync.Mutex
	var seen []string
	u.OnRequest(func(r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
	})
	for _, p := range []string{"/tile/8/data/000", "/tile/8/data/001", "/sumdb/sumdb.test/tile/8/data/002", "/tile/8/0/000", "/latest"} {
		get(t, url+p)
	}
	if n := u.Requests("/tile/8/data/"); n != 3 {
		t.Errorf("Requests(data) = %d, want 3", n)
	}
	if n := u.Requests(""); n != 5 {
		t.Errorf("Requests(\"\") = %d, want 5", n)
	}
	mu.Lock()
	if len(seen) != 5 || seen[2] != "/sumdb/sumdb.test/tile/8/data/002" {
		t.Errorf("hook saw %q", seen)
	}
	mu.Unlock()
	u.OnRequest(nil)
	u.ResetRequests()
	if n := u.Requests(""); n != 0 {
		t.Errorf("after ResetRequests, %d", n)
	}

	u.Close()
	_, err := http.Get(url + "/latest")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after Close: err = %v, want connection refused", err)
	}
	if url2 := u.Start(); url2 != url {
		t.Logf("restarted at %s, not %s (address taken)", url2, url)
	} else if code, _ := get(t, url+"/latest"); code != 200 {
		t.Errorf("after restart, /latest = %d", code)
	}
}

// TestConcurrentAdd serves lookups while records are added.
func TestConcurrentAdd(t *testing.T) {
	u, url := newTestUpstream(t)
	done := make(chan error)
	go func() { done <- u.AddSynthetic(40_000) }()
	c, _ := newClient(u, url)
	for i := 0; ; i++ {
		p, v, _ := u.Module(u.Size() - 1)
		if _, err := c.Lookup(p, v); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d lookups during AddSynthetic", i+1)
			return
		default:
		}
	}
}

var recordRE = regexp.MustCompile(`^(\S+) (\S+) h1:[A-Za-z0-9+/]{43}=\n(\S+) (\S+)/go\.mod h1:[A-Za-z0-9+/]{43}=\n$`)

// TestSyntheticRecords checks the shape of synthetic records.
func TestSyntheticRecords(t *testing.T) {
	u, err := New("sumdb.test")
	if err != nil {
		t.Fatal(err)
	}
	// Two calls continue one another.
	if err := u.AddSynthetic(3000); err != nil {
		t.Fatal(err)
	}
	if err := u.AddSynthetic(2000); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	paths := map[string]int{}
	var minLen, maxLen = 1000, 0
	styles := map[string]int{}
	for id := range u.Size() {
		rec := u.Record(id)
		m := recordRE.FindStringSubmatch(string(rec))
		if m == nil || m[1] != m[3] || m[2] != m[4] {
			t.Fatalf("record %d is malformed: %q", id, rec)
		}
		path, vers := m[1], m[2]
		if err := module.Check(path, vers); err != nil {
			t.Errorf("record %d: %v", id, err)
		}
		if !semver.IsValid(vers) || module.CanonicalVersion(vers) != vers {
			t.Errorf("record %d: version %s not canonical", id, vers)
		}
		if keys[path+"@"+vers] {
			t.Errorf("record %d: %s@%s repeated", id, path, vers)
		}
		keys[path+"@"+vers] = true
		paths[path]++
		minLen, maxLen = min(minLen, len(path)), max(maxLen, len(path))
		switch {
		case module.IsPseudoVersion(vers):
			styles["pseudo"]++
		case strings.HasSuffix(vers, "+incompatible"):
			styles["incompatible"]++
		case semver.Prerelease(vers) != "":
			styles["prerelease"]++
		default:
			styles["release"]++
		}
	}
	if minLen < 20 || maxLen > 45 {
		t.Errorf("path lengths %d..%d, want within 20..45", minLen, maxLen)
	}
	if len(paths) < 1500 || len(paths) > 3000 {
		t.Errorf("%d modules for 5000 records", len(paths))
	}
	for _, s := range []string{"pseudo", "incompatible", "prerelease", "release"} {
		if styles[s] == 0 {
			t.Errorf("no %s versions", s)
		}
	}
	t.Logf("%d modules, path lengths %d..%d, versions %v", len(paths), minLen, maxLen, styles)

	// A second upstream generates other modules.
	u2, _ := New("sumdb.test")
	u2.AddSynthetic(100)
	for id := range u2.Size() {
		p, v, _ := u2.Module(id)
		if keys[p+"@"+v] {
			t.Errorf("second upstream repeats %s@%s", p, v)
		}
	}
}

// TestSyntheticMillion adds a million records and checks the signed head.
func TestSyntheticMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short")
	}
	u, err := New("sumdb.test")
	if err != nil {
		t.Fatal(err)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := u.AddSynthetic(1_000_000); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("AddSynthetic(1_000_000) took %v; heap in use %d MB", took, (after.HeapInuse-before.HeapInuse)>>20)

	v, _ := note.NewVerifier(u.VerifierKey())
	n, err := note.Open(u.SignedHead(), note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil || tree.N != 1_000_000 {
		t.Fatalf("head %q: %v", n.Text, err)
	}
	// Record 777777 is proven in the signed tree.
	const id = 777_777
	p, err := tlog.ProveRecord(tree.N, id, u.HashReader())
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, id, tlog.RecordHash(u.Record(id))); err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	defer u.Close()
	c, _ := newClient(u, url)
	mp, mv, _ := u.Module(id)
	if _, err := c.Lookup(mp, mv); err != nil {
		t.Fatal(err)
	}
}
