package realsum_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/realsum"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
)

// goSumLines returns the go.sum's lines by module version.
func goSumLines(t *testing.T) map[module.Version][]string {
	t.Helper()
	lines := map[module.Version][]string{}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(realsum.GoSum()), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || !strings.HasPrefix(f[2], "h1:") {
			t.Fatalf("go.sum: bad line %q", line)
		}
		m := module.Version{Path: f[0], Version: strings.TrimSuffix(f[1], "/go.mod")}
		lines[m] = append(lines[m], line)
	}
	return lines
}

func openNote(t *testing.T, msg []byte) tlog.Tree {
	t.Helper()
	v, err := note.NewVerifier(realsum.Key)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note does not verify with the real key: %v\n%s", err, msg)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != realsum.Name {
		t.Fatalf("note signatures: %+v", n.Sigs)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestFixture(t *testing.T) {
	src := realsum.Source()
	if !strings.Contains(src, "project: ") {
		t.Errorf("SOURCE names no project:\n%s", src)
	}
	lines := goSumLines(t)
	if n := bytes.Count(realsum.GoSum(), []byte("\n")); n < 2000 {
		t.Errorf("go.sum has %d lines, want at least 2000", n)
	}

	head, err := realsum.Head()
	if err != nil {
		t.Fatal(err)
	}
	if tree := openNote(t, head.Note); tree != head.Tree() {
		t.Fatalf("Head: note says %v, head says %v", tree, head.Tree())
	}
	heads, err := realsum.Heads()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range heads {
		if tree := openNote(t, h.Note); tree != h.Tree() {
			t.Errorf("head %d: note says %v", h.Size, tree)
		}
		if i > 0 && heads[i-1].Size >= h.Size {
			t.Errorf("heads not ascending")
		}
	}
	if last := heads[len(heads)-1]; last.Size != head.Size || !bytes.Equal(last.Note, head.Note) {
		t.Errorf("last of Heads is %d, Head is %d", last.Size, head.Size)
	}
	latest, err := realsum.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if tree := openNote(t, latest); tree.N > head.Size {
		t.Errorf("/latest is tree %d, larger than Head %d", tree.N, head.Size)
	}

	recs, err := realsum.Records()
	if err != nil {
		t.Fatal(err)
	}
	mods := realsum.Modules()
	if len(recs) < len(mods) || len(mods) == 0 {
		t.Fatalf("%d records for %d modules", len(recs), len(mods))
	}
	byMod := map[module.Version]store.Record{}
	for i, r := range recs {
		if i > 0 && recs[i-1].ID >= r.ID {
			t.Fatalf("records not ascending at %d", r.ID)
		}
		if p, v := store.RecordModule(r.Data); p != r.Path || v != r.Version {
			t.Errorf("record %d: RecordModule %s@%s, record says %s@%s", r.ID, p, v, r.Path, r.Version)
		}
		byMod[module.Version{Path: r.Path, Version: r.Version}] = r
	}

	heights := map[int64]bool{}
	for _, h := range heads {
		heights[h.Size] = true
	}
	for _, m := range mods {
		r, ok := byMod[m]
		if !ok {
			t.Errorf("%v: in Modules but no record", m)
			continue
		}
		for _, line := range lines[m] {
			if !bytes.Contains(r.Data, []byte(line+"\n")) {
				t.Errorf("%v: go.sum line %q is not in record %d:\n%s", m, line, r.ID, r.Data)
			}
		}
		status, body, ok := realsum.Lookup(m)
		if !ok || status != http.StatusOK {
			t.Fatalf("%v: lookup answer %d %v", m, status, ok)
		}
		id, text, msg, err := tlog.ParseRecord(body)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if id != r.ID || !bytes.Equal(text, r.Data) {
			t.Errorf("%v: lookup says record %d", m, id)
		}
		if tree := openNote(t, msg); !heights[tree.N] || id >= tree.N {
			t.Errorf("%v: record %d signed in tree %d, which is not among Heads or too small", m, id, tree.N)
		}
	}
	for m := range lines {
		if _, ok := byMod[m]; !ok && !slices.Contains(realsum.NotFound(), m) {
			t.Errorf("%v: in go.sum but neither a record nor not found", m)
		}
	}
	for _, m := range realsum.NotFound() {
		status, _, ok := realsum.Lookup(m)
		if !ok || status == http.StatusOK {
			t.Errorf("NotFound %v: answer %d %v", m, status, ok)
		}
	}
	if len(realsum.ProxyModules()) < 3 {
		t.Errorf("ProxyModules: %v", realsum.ProxyModules())
	}
	for _, m := range realsum.ProxyModules() {
		if len(lines[m]) != 2 {
			t.Errorf("proxy module %v: go.sum has %q", m, lines[m])
		}
	}
	tiles, err := realsum.Tiles()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d go.sum module versions, %d records (%d not found), %d tiles, %d heads %d..%d",
		len(lines), len(recs), len(realsum.NotFound()), len(tiles), len(heads), heads[0].Size, head.Size)
}

// TestProofs proves offline, with the recorded tiles: every record in T and
// in the tree its lookup was signed at, and every head in T.
func TestProofs(t *testing.T) {
	head, err := realsum.Head()
	if err != nil {
		t.Fatal(err)
	}
	heads, _ := realsum.Heads()
	recs, _ := realsum.Records()
	T := head.Tree()
	thr := tlog.TileHashReader(T, realsum.TileReader{})
	for _, h := range heads {
		p, err := tlog.ProveTree(T.N, h.Size, thr)
		if err != nil {
			t.Fatalf("tree %d in %d: %v", h.Size, T.N, err)
		}
		if err := tlog.CheckTree(p, T.N, T.Hash, h.Size, h.Hash); err != nil {
			t.Fatalf("tree %d in %d: %v", h.Size, T.N, err)
		}
	}
	for _, r := range recs {
		p, err := tlog.ProveRecord(T.N, r.ID, thr)
		if err != nil {
			t.Fatalf("record %d: %v", r.ID, err)
		}
		if err := tlog.CheckRecord(p, T.N, T.Hash, r.ID, tlog.RecordHash(r.Data)); err != nil {
			t.Fatalf("record %d: %v", r.ID, err)
		}
		_, body, _ := realsum.Lookup(module.Version{Path: r.Path, Version: r.Version})
		_, _, msg, _ := tlog.ParseRecord(body)
		own := openNote(t, msg)
		p, err = tlog.ProveRecord(own.N, r.ID, tlog.TileHashReader(own, realsum.TileReader{}))
		if err != nil {
			t.Fatalf("record %d in its own tree %d: %v", r.ID, own.N, err)
		}
		if err := tlog.CheckRecord(p, own.N, own.Hash, r.ID, tlog.RecordHash(r.Data)); err != nil {
			t.Fatalf("record %d in its own tree %d: %v", r.ID, own.N, err)
		}
	}
}

func newReplay(t *testing.T) (*realsum.Replay, string) {
	rp := realsum.Handler()
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return rp, srv.URL
}

// lookupAll looks up every module of the go.sum with c, in parallel, and
// checks the lines against the go.sum.
func lookupAll(t *testing.T, c *sumdb.Client) {
	t.Helper()
	lines := goSumLines(t)
	mods := realsum.Modules()
	work := make(chan module.Version)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				for _, want := range lines[m] {
					f := strings.Fields(want)
					got, err := c.Lookup(m.Path, f[1])
					mu.Lock()
					if err != nil {
						errs = append(errs, err.Error())
					} else if len(got) != 1 || got[0] != want {
						errs = append(errs, m.String()+": got "+strings.Join(got, " | ")+", want "+want)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, m := range mods {
		work <- m
	}
	close(work)
	wg.Wait()
	for i, e := range errs {
		if i == 10 {
			t.Errorf("... and %d more", len(errs)-i)
			break
		}
		t.Error(e)
	}
}

// TestClient checks every go.sum line with the real sumdb client, talking
// HTTP to the replay: once starting from nothing (its latest head moves
// through the lookups' heads), once starting from T, through the proxy form
// of the URL.
func TestClient(t *testing.T) {
	rp, url := newReplay(t)
	head, _ := realsum.Head()
	heads, _ := realsum.Heads()
	nmods := int64(len(realsum.Modules()))

	t.Run("fresh", func(t *testing.T) {
		rp.ResetRequests()
		c, ops := sumdbtest.NewClient(url, realsum.Key)
		lookupAll(t, c)
		if s := ops.SecurityErrors(); len(s) > 0 {
			t.Fatalf("security errors: %q", s)
		}
		// The client's latest is the largest lookup note it saw.
		latest := openNote(t, ops.Latest(realsum.Name))
		var want int64
		for _, m := range realsum.Modules() {
			_, body, _ := realsum.Lookup(m)
			_, _, msg, _ := tlog.ParseRecord(body)
			want = max(want, openNote(t, msg).N)
		}
		if latest.N != want {
			t.Errorf("client's latest is %d, want %d", latest.N, want)
		}
		if n := rp.Requests(realsum.KindLookup); n != nmods {
			t.Errorf("%d lookups for %d modules", n, nmods)
		}
		if n := rp.Requests(realsum.KindData) + rp.Requests(realsum.KindLatest) + rp.Requests(realsum.KindOther); n != 0 {
			t.Errorf("%d data, latest or other requests", n)
		}
		t.Logf("%d lookups, %d tile requests", rp.Requests(realsum.KindLookup), rp.Requests(realsum.KindTile))
	})

	t.Run("fromHead", func(t *testing.T) {
		rp.ResetRequests()
		c, ops := sumdbtest.NewClient(url+"/sumdb/"+realsum.Name, realsum.Key)
		if err := ops.WriteConfig(realsum.Name+"/latest", nil, head.Note); err != nil {
			t.Fatal(err)
		}
		lookupAll(t, c)
		if s := ops.SecurityErrors(); len(s) > 0 {
			t.Fatalf("security errors: %q", s)
		}
		if got := ops.Latest(realsum.Name); !bytes.Equal(got, head.Note) {
			t.Errorf("client's latest moved from T to\n%s", got)
		}
		if n := rp.Requests(realsum.KindData); n != 0 {
			t.Errorf("%d data tile requests", n)
		}
	})

	// A client that starts at each recorded head accepts the lookups too.
	for _, h := range heads[:len(heads)-1] {
		c, ops := sumdbtest.NewClient(url, realsum.Key)
		if err := ops.WriteConfig(realsum.Name+"/latest", nil, h.Note); err != nil {
			t.Fatal(err)
		}
		for _, m := range realsum.Modules()[:50] {
			if _, err := c.Lookup(m.Path, m.Version); err != nil {
				t.Errorf("from head %d: %v", h.Size, err)
			}
		}
	}
}

func TestNotFound(t *testing.T) {
	rp, url := newReplay(t)
	nf := realsum.NotFound()
	if len(nf) == 0 {
		t.Skip("no not-found lookup recorded")
	}
	c, _ := sumdbtest.NewClient(url, realsum.Key)
	for _, m := range nf {
		status, body, _ := realsum.Lookup(m)
		if _, err := c.Lookup(m.Path, m.Version); err == nil || !strings.Contains(err.Error(), http.StatusText(status)) {
			t.Errorf("%v: err = %v, want status %d", m, err, status)
		}
		esc, _ := module.EscapePath(m.Path)
		ver, _ := module.EscapeVersion(m.Version)
		resp, got := get(t, url+"/lookup/"+esc+"@"+ver)
		if resp.StatusCode != status || !bytes.Equal(got, body) {
			t.Errorf("%v: replayed %d %q, recorded %d %q", m, resp.StatusCode, got, status, body)
		}
	}
	resp, body := get(t, url+"/lookup/example.com/never@v1.0.0")
	if resp.StatusCode != http.StatusNotFound || len(body) == 0 {
		t.Errorf("unknown lookup: %d %q", resp.StatusCode, body)
	}
	if n := rp.Requests(realsum.KindLookup); n != int64(2*len(nf)+1) {
		t.Errorf("%d lookups counted", n)
	}
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestProtocol(t *testing.T) {
	rp, url := newReplay(t)
	head, _ := realsum.Head()
	tiles, _ := realsum.Tiles()
	prefixed := url + "/sumdb/" + realsum.Name

	for _, base := range []string{url, prefixed} {
		resp, body := get(t, base+"/latest")
		if resp.StatusCode != 200 || !bytes.Equal(body, head.Note) || resp.Header.Get("Content-Type") != "text/plain; charset=UTF-8" {
			t.Errorf("%s/latest: %d %q %q", base, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		for _, p := range []string{"/tile/8/data/000", "/tile/8/data/x280/659.p/12"} {
			resp, body := get(t, base+p)
			if resp.StatusCode != http.StatusForbidden || string(body) != realsum.DataTileRefusal {
				t.Errorf("%s: %d %q", p, resp.StatusCode, body)
			}
		}
		m := realsum.Modules()[0]
		esc, _ := module.EscapePath(m.Path)
		ver, _ := module.EscapeVersion(m.Version)
		_, want, _ := realsum.Lookup(m)
		resp, body = get(t, base+"/lookup/"+esc+"@"+ver)
		if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "text/plain; charset=UTF-8" {
			t.Errorf("lookup %v: %d %q", m, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, prefixed+"/supported"); resp.StatusCode != 200 {
		t.Errorf("/supported: %d", resp.StatusCode)
	}
	if n := rp.Requests(realsum.KindData); n != 4 {
		t.Errorf("%d data requests counted", n)
	}

	// Tiles: narrower widths are slices; wider than recorded is 404.
	var full, partial *store.Tile
	for i := range tiles {
		if tiles[i].Tile.W == 256 && full == nil {
			full = &tiles[i]
		}
		if tiles[i].Tile.W < 256 && tiles[i].Tile.W > 1 && partial == nil {
			partial = &tiles[i]
		}
	}
	if full == nil || partial == nil {
		t.Fatal("no full or no partial tile recorded")
	}
	check := func(tile tlog.Tile, want []byte) {
		t.Helper()
		resp, body := get(t, url+"/"+tile.Path())
		if want == nil {
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", tile.Path(), resp.StatusCode)
			}
			return
		}
		if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s: %d %q, %d bytes", tile.Path(), resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	narrow := full.Tile
	narrow.W = 5
	check(full.Tile, full.Data)
	check(narrow, full.Data[:5*tlog.HashSize])
	check(partial.Tile, partial.Data)
	narrow = partial.Tile
	narrow.W--
	check(narrow, partial.Data[:narrow.W*tlog.HashSize])
	wider := partial.Tile
	wider.W++
	check(wider, nil)
	wider.W = 256
	check(wider, nil)
	check(tlog.Tile{H: 8, L: 0, N: 1 << 40, W: 256}, nil)
	if n := rp.Requests(realsum.KindTile); n != 7 {
		t.Errorf("%d tile requests counted", n)
	}
}

// TestLies flips a byte of a tile the client needs: the real client refuses
// the lookup, and accepts it again once the replay is honest.
func TestLies(t *testing.T) {
	rp, url := newReplay(t)
	head, _ := realsum.Head()
	m := realsum.Modules()[0]
	_, body, _ := realsum.Lookup(m)
	id, _, msg, _ := tlog.ParseRecord(body)
	own := openNote(t, msg)
	for _, tc := range []struct {
		name string
		l    int
		n    int64
	}{
		{"record's tile", 0, id >> 8},
		{"level 1 above it", 1, id >> 16},
		{"right edge of its tree", 0, own.N >> 8},
		{"top", 3, 0},
	} {
		rp.FlipTileByte(tc.l, tc.n, 100)
		c, _ := sumdbtest.NewClient(url, realsum.Key)
		_, err := c.Lookup(m.Path, m.Version)
		if err == nil || !strings.Contains(err.Error(), "inconsistent tile") {
			t.Errorf("%s: flipped tile %d/%d: err = %v", tc.name, tc.l, tc.n, err)
		}
		// A client that knows T fails too.
		c, ops := sumdbtest.NewClient(url, realsum.Key)
		ops.WriteConfig(realsum.Name+"/latest", nil, head.Note)
		if _, err := c.Lookup(m.Path, m.Version); err == nil {
			t.Errorf("%s: client at T accepted a flipped tile", tc.name)
		}
		rp.Honest()
		c, _ = sumdbtest.NewClient(url, realsum.Key)
		if _, err := c.Lookup(m.Path, m.Version); err != nil {
			t.Errorf("%s: honest again: %v", tc.name, err)
		}
	}
}
