// Command record records the real-data fixture of package realsum: a real
// project's go.sum, the checksum database's answers for every module@version
// it names, the hash tiles that prove them, and a small GOPROXY tree of real
// module zips. It is run by hand, once in a while; tests never touch the
// network.
//
// Usage:
//
//	go run ./internal/realsum/record -gosum FILE -source PROJECT@VERSION \
//		-modules M@V,M@V,... [-extra M@V,...] [-o internal/realsum/testdata] [-proxy URL] [-j 24]
//
// The fixture in testdata was recorded with the go.sum of
// github.com/hashicorp/terraform@v1.13.3 (taken from its module zip) and
//
//	-modules github.com/google/uuid@v1.6.0,github.com/pkg/errors@v0.9.1,golang.org/x/xerrors@v0.0.0-20220907171357-04be3eba64a2,github.com/mitchellh/go-homedir@v1.1.0,github.com/agext/levenshtein@v1.2.3
//	-extra github.com/google/uuid@v1.99.0,github.com/google/uuid@v0.0.0-20000101000000-000000000000
//
// (the extra lookups record the database's real not-found answer).
//
// The database is read through a Go module proxy's /sumdb/sum.golang.org/
// endpoint (the first http(s) entry of $GOPROXY, or of "go env GOPROXY"),
// which answers /latest, /lookup and hash tiles but refuses data tiles.
//
// Everything is verified before anything is written: every signed note with
// the real key, every lookup's record against its note's tree, every tree
// against the largest one, and every tile against the tree it was read for.
// See package realsum for the output format.
package main

import (
	"archive/zip"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Kept in step with package realsum (which embeds the recorded files and so
// cannot be imported before they exist).
const (
	dbKey  = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
	dbName = "sum.golang.org"
)

var (
	gosumFile = flag.String("gosum", "", "the go.sum file to record (required)")
	outDir    = flag.String("o", "internal/realsum/testdata", "output directory")
	proxyFlag = flag.String("proxy", "", "module proxy URL (default: first http(s) entry of $GOPROXY or go env GOPROXY)")
	jobs      = flag.Int("j", 24, "requests in flight")
	source    = flag.String("source", "", "the project and version the go.sum comes from, for SOURCE (required)")
	modules   = flag.String("modules", "", "comma-separated module@version list for the GOPROXY tree")
	maxZip    = flag.Int64("maxzip", 150<<10, "largest module zip accepted for the GOPROXY tree")
	extra     = flag.String("extra", "", "comma-separated module@version list to look up as well, e.g. to record the database's not-found answer")
	cacheDir  = flag.String("cache", "", "if set, keep raw HTTP answers here and reuse them (development only)")
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("record: ")
	flag.Parse()
	if *gosumFile == "" || *source == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	proxy := *proxyFlag
	if proxy == "" {
		var err error
		if proxy, err = defaultProxy(); err != nil {
			log.Fatal(err)
		}
	}
	proxy = strings.TrimSuffix(proxy, "/")
	r := &recorder{
		proxy: proxy,
		base:  proxy + "/sumdb/" + dbName,
		sem:   make(chan struct{}, *jobs),
		http: &http.Client{
			Timeout:   2 * time.Minute,
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: *jobs, ForceAttemptHTTP2: true},
		},
	}
	if err := r.run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// defaultProxy returns the first http(s) entry of GOPROXY, as the go command
// sees it.
func defaultProxy() (string, error) {
	list := os.Getenv("GOPROXY")
	if list == "" {
		out, err := exec.Command("go", "env", "GOPROXY").Output()
		if err != nil {
			return "", fmt.Errorf("go env GOPROXY: %v", err)
		}
		list = strings.TrimSpace(string(out))
	}
	for _, p := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://") {
			return p, nil
		}
	}
	return "", fmt.Errorf("GOPROXY=%q names no http(s) proxy; use -proxy", list)
}

type recorder struct {
	proxy, base string
	sem         chan struct{}
	http        *http.Client
	requests    atomic.Int64

	mu       sync.Mutex
	widest   map[[2]int64]tileData // (L, N) -> widest tile fetched
	inflight map[tlog.Tile]*tileCall
}

type tileData struct {
	tile tlog.Tile
	data []byte
}

type tileCall struct {
	done chan struct{}
	data []byte
	err  error
}

// answer is an HTTP answer, kept byte-exactly.
type answer struct {
	status int
	body   []byte
}

// lookup is one module@version of the go.sum and the database's answer.
type lookup struct {
	mod   module.Version
	entry string // "lookup/<escaped path>@<escaped version>"
	ans   answer
	lines []string // the go.sum lines naming mod

	// For status 200:
	id   int64
	text []byte
	note []byte
	tree tlog.Tree
}

type treeInfo struct {
	tree tlog.Tree
	note []byte
	from string // where the note came from: "latest" or a lookup entry
}

func (r *recorder) run(ctx context.Context) error {
	gosum, err := os.ReadFile(*gosumFile)
	if err != nil {
		return err
	}
	lookups, nlines, err := parseGoSum(gosum)
	if err != nil {
		return err
	}
	extras, err := parseList(*extra)
	if err != nil {
		return fmt.Errorf("-extra: %v", err)
	}
	for _, m := range extras {
		l, err := newLookup(m)
		if err != nil {
			return fmt.Errorf("-extra: %v", err)
		}
		lookups = append(lookups, l)
	}
	log.Printf("%s: %d lines, %d module versions; database at %s", *gosumFile, nlines, len(lookups), r.base)

	verifier, err := note.NewVerifier(dbKey)
	if err != nil {
		return err
	}
	verifiers := note.VerifierList(verifier)
	trees := map[int64]*treeInfo{}
	addTree := func(msg []byte, from string) (tlog.Tree, error) {
		n, err := note.Open(msg, verifiers)
		if err != nil {
			return tlog.Tree{}, fmt.Errorf("%s: note does not verify: %v\n%s", from, err, msg)
		}
		tree, err := tlog.ParseTree([]byte(n.Text))
		if err != nil {
			return tlog.Tree{}, fmt.Errorf("%s: %v", from, err)
		}
		if old, ok := trees[tree.N]; ok {
			if old.tree.Hash != tree.Hash {
				return tlog.Tree{}, fmt.Errorf("FORK: tree %d has hash %v in %s and %v in %s", tree.N, old.tree.Hash, old.from, tree.Hash, from)
			}
		} else {
			trees[tree.N] = &treeInfo{tree: tree, note: msg, from: from}
		}
		return tree, nil
	}

	// /latest and every lookup.
	start := time.Now()
	latest, err := r.get(ctx, "latest")
	if err != nil {
		return err
	}
	if latest.status != http.StatusOK {
		return fmt.Errorf("/latest: status %d: %s", latest.status, latest.body)
	}
	latestTree, err := addTree(latest.body, "latest")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(lookups))
	for i, l := range lookups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.ans, errs[i] = r.get(ctx, l.entry)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Printf("fetched /latest (tree %d) and %d lookups in %v", latestTree.N, len(lookups), time.Since(start).Round(time.Millisecond))

	var found, missing []*lookup
	statuses := map[int]int{}
	for _, l := range lookups {
		statuses[l.ans.status]++
		if l.ans.status != http.StatusOK {
			if l.ans.status/100 != 4 {
				return fmt.Errorf("/%s: status %d: %s", l.entry, l.ans.status, l.ans.body)
			}
			missing = append(missing, l)
			continue
		}
		id, text, msg, err := tlog.ParseRecord(l.ans.body)
		if err != nil {
			return fmt.Errorf("/%s: %v", l.entry, err)
		}
		l.id, l.text, l.note = id, text, msg
		if l.tree, err = addTree(msg, l.entry); err != nil {
			return err
		}
		if id >= l.tree.N {
			return fmt.Errorf("/%s: record %d is not in its note's tree of size %d", l.entry, id, l.tree.N)
		}
		// The record must be exactly the module's two lines, and every
		// go.sum line for the module must be one of them.
		p := l.mod.Path + " " + l.mod.Version
		recLines := strings.SplitAfter(string(text), "\n")
		if len(recLines) != 3 || recLines[2] != "" ||
			!strings.HasPrefix(recLines[0], p+" h1:") || !strings.HasPrefix(recLines[1], p+"/go.mod h1:") {
			return fmt.Errorf("/%s: record is not the module's two lines:\n%s", l.entry, text)
		}
		for _, line := range l.lines {
			if !slices.Contains(recLines, line+"\n") {
				return fmt.Errorf("go.sum line %q does not match record %d:\n%s", line, id, text)
			}
		}
		found = append(found, l)
	}
	slices.SortFunc(found, func(a, b *lookup) int { return cmp.Compare(a.id, b.id) })
	for i := 1; i < len(found); i++ {
		if found[i].id == found[i-1].id {
			return fmt.Errorf("%s and %s are both record %d", found[i-1].entry, found[i].entry, found[i].id)
		}
	}
	log.Printf("lookup statuses: %v; %d records, %d not found; %d distinct trees", statuses, len(found), len(missing), len(trees))

	// Prove everything, recording the tiles read.
	sizes := make([]int64, 0, len(trees))
	for n := range trees {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	T := trees[sizes[len(sizes)-1]]
	log.Printf("largest tree %d (from %s); smallest %d; /latest %d", T.tree.N, T.from, sizes[0], latestTree.N)
	start = time.Now()
	if err := r.prove(trees, sizes, found); err != nil {
		return err
	}
	tiles := r.tiles()
	var tileBytes int
	var full int
	for _, t := range tiles {
		tileBytes += len(t.data)
		if t.tile.W == 1<<t.tile.H {
			full++
		}
	}
	log.Printf("proved %d records under %d trees in %v: %d tiles (%d full), %d bytes, %d requests",
		len(found), len(trees), time.Since(start).Round(time.Millisecond), len(tiles), full, tileBytes, r.requests.Load())

	// The GOPROXY tree.
	proxyMods, err := parseList(*modules)
	if err != nil {
		return fmt.Errorf("-modules: %v", err)
	}
	proxyFiles, err := r.proxyTree(ctx, proxyMods, lookups)
	if err != nil {
		return err
	}

	// Write.
	if err := os.MkdirAll(*outDir, 0o777); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*outDir, "go.sum"), gosum, 0o666); err != nil {
		return err
	}
	zipFile := filepath.Join(*outDir, "sumdb.zip")
	if err := writeZip(zipFile, latest, lookups, tiles); err != nil {
		return err
	}
	proxyDir := filepath.Join(*outDir, "proxy")
	if err := os.RemoveAll(proxyDir); err != nil {
		return err
	}
	for name, data := range proxyFiles {
		file := filepath.Join(proxyDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(file), 0o777); err != nil {
			return err
		}
		if err := os.WriteFile(file, data, 0o666); err != nil {
			return err
		}
	}

	var src strings.Builder
	fmt.Fprintf(&src, "Real data of the Go checksum database %s, recorded by internal/realsum/record\n", dbName)
	fmt.Fprintf(&src, "through a Go module proxy's /sumdb/%s/ endpoint.\n\n", dbName)
	fmt.Fprintf(&src, "project: %s\n", *source)
	fmt.Fprintf(&src, "recorded: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&src, "go.sum lines: %d\n", nlines)
	fmt.Fprintf(&src, "module versions: %d\n", len(lookups)-len(extras))
	for _, m := range extras {
		fmt.Fprintf(&src, "extra lookup: %s@%s\n", m.Path, m.Version)
	}
	fmt.Fprintf(&src, "records: %d\n", len(found))
	fmt.Fprintf(&src, "not found: %d\n", len(missing))
	fmt.Fprintf(&src, "latest: %d\n", latestTree.N)
	fmt.Fprintf(&src, "head: %d (note from %s)\n", T.tree.N, T.from)
	fmt.Fprintf(&src, "trees: %d (smallest %d)\n", len(trees), sizes[0])
	fmt.Fprintf(&src, "hash tiles: %d (%d full), %d bytes\n", len(tiles), full, tileBytes)
	for _, m := range proxyMods {
		fmt.Fprintf(&src, "proxy module: %s@%s\n", m.Path, m.Version)
	}
	if err := os.WriteFile(filepath.Join(*outDir, "SOURCE"), []byte(src.String()), 0o666); err != nil {
		return err
	}
	st, err := os.Stat(zipFile)
	if err != nil {
		return err
	}
	log.Printf("wrote %s (%d bytes), go.sum, SOURCE and %d proxy files", zipFile, st.Size(), len(proxyFiles))
	return nil
}

// parseGoSum returns the distinct module versions a go.sum names, in order of
// first appearance, with their lines, and the number of lines.
func parseGoSum(data []byte) ([]*lookup, int, error) {
	byMod := map[module.Version]*lookup{}
	var list []*lookup
	n := 0
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		n++
		f := strings.Fields(line)
		if len(f) != 3 || !strings.HasPrefix(f[2], "h1:") {
			return nil, 0, fmt.Errorf("go.sum:%d: not a go.sum line: %q", i+1, line)
		}
		m := module.Version{Path: f[0], Version: strings.TrimSuffix(f[1], "/go.mod")}
		l := byMod[m]
		if l == nil {
			var err error
			if l, err = newLookup(m); err != nil {
				return nil, 0, fmt.Errorf("go.sum:%d: %v", i+1, err)
			}
			byMod[m] = l
			list = append(list, l)
		}
		l.lines = append(l.lines, line)
	}
	return list, n, nil
}

func newLookup(m module.Version) (*lookup, error) {
	ep, err := module.EscapePath(m.Path)
	if err != nil {
		return nil, err
	}
	ev, err := module.EscapeVersion(m.Version)
	if err != nil {
		return nil, err
	}
	return &lookup{mod: m, entry: "lookup/" + ep + "@" + ev}, nil
}

// parseList parses a comma-separated module@version list.
func parseList(list string) ([]module.Version, error) {
	var mods []module.Version
	for mv := range strings.SplitSeq(list, ",") {
		if mv = strings.TrimSpace(mv); mv == "" {
			continue
		}
		p, v, ok := strings.Cut(mv, "@")
		if !ok {
			return nil, fmt.Errorf("%q is not module@version", mv)
		}
		mods = append(mods, module.Version{Path: p, Version: v})
	}
	return mods, nil
}

// get fetches a path below the database root, retrying transient failures.
func (r *recorder) get(ctx context.Context, rel string) (answer, error) {
	return r.fetch(ctx, r.base+"/"+rel, "sumdb/"+rel)
}

func (r *recorder) fetch(ctx context.Context, url, cacheName string) (answer, error) {
	var cacheFile string
	if *cacheDir != "" {
		cacheFile = filepath.Join(*cacheDir, filepath.FromSlash(cacheName))
		if data, err := os.ReadFile(cacheFile); err == nil {
			s, body, _ := bytes.Cut(data, []byte("\n"))
			status, err := strconv.Atoi(string(s))
			if err == nil {
				return answer{status, body}, nil
			}
		}
	}
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	var last error
	for try := 0; try < 6; try++ {
		if try > 0 {
			time.Sleep(time.Duration(1<<try) * 250 * time.Millisecond)
		}
		r.requests.Add(1)
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return answer{}, err
		}
		resp, err := r.http.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			last = err
			continue
		}
		if resp.StatusCode/100 == 5 || resp.StatusCode == http.StatusTooManyRequests {
			last = fmt.Errorf("GET %s: %s: %s", cacheName, resp.Status, body)
			continue
		}
		a := answer{resp.StatusCode, body}
		if cacheFile != "" {
			os.MkdirAll(filepath.Dir(cacheFile), 0o777)
			os.WriteFile(cacheFile, append([]byte(strconv.Itoa(a.status)+"\n"), a.body...), 0o666)
		}
		return a, nil
	}
	return answer{}, last
}

// Height implements tlog.TileReader.
func (r *recorder) Height() int { return 8 }

// SaveTiles implements tlog.TileReader; the recorder keeps every tile it
// fetched anyway.
func (r *recorder) SaveTiles([]tlog.Tile, [][]byte) {}

// ReadTiles implements tlog.TileReader: tiles come from the widest version
// fetched so far when it is wide enough, else from the database, in
// parallel. Every fetched tile is remembered at the widest width fetched.
func (r *recorder) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, t := range tiles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data[i], errs[i] = r.readTile(t)
		}()
	}
	wg.Wait()
	return data, errors.Join(errs...)
}

func (r *recorder) readTile(t tlog.Tile) ([]byte, error) {
	if t.H != 8 || t.L < 0 {
		return nil, fmt.Errorf("unexpected tile %s", t.Path())
	}
	key := [2]int64{int64(t.L), t.N}
	r.mu.Lock()
	if w, ok := r.widest[key]; ok && w.tile.W >= t.W {
		r.mu.Unlock()
		return w.data[:t.W*tlog.HashSize], nil
	}
	c := r.inflight[t]
	if c == nil {
		c = &tileCall{done: make(chan struct{})}
		if r.inflight == nil {
			r.inflight = map[tlog.Tile]*tileCall{}
		}
		r.inflight[t] = c
		r.mu.Unlock()
		c.data, c.err = r.fetchTile(t)
		close(c.done)
		r.mu.Lock()
		delete(r.inflight, t)
	}
	r.mu.Unlock()
	<-c.done
	return c.data, c.err
}

func (r *recorder) fetchTile(t tlog.Tile) ([]byte, error) {
	a, err := r.get(context.Background(), t.Path())
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("/%s: status %d: %s", t.Path(), a.status, a.body)
	}
	if len(a.body) != t.W*tlog.HashSize {
		return nil, fmt.Errorf("/%s: %d bytes, want %d", t.Path(), len(a.body), t.W*tlog.HashSize)
	}
	key := [2]int64{int64(t.L), t.N}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.widest == nil {
		r.widest = map[[2]int64]tileData{}
	}
	old, ok := r.widest[key]
	narrow, wide := old.data, a.body
	if len(narrow) > len(wide) {
		narrow, wide = wide, narrow
	}
	if ok && !bytes.Equal(wide[:len(narrow)], narrow) {
		return nil, fmt.Errorf("tiles %s and %s are not prefix-consistent", old.tile.Path(), t.Path())
	}
	if !ok || t.W > old.tile.W {
		r.widest[key] = tileData{t, a.body}
	}
	return a.body, nil
}

// tiles returns the widest recorded tiles, by level and index.
func (r *recorder) tiles() []tileData {
	r.mu.Lock()
	defer r.mu.Unlock()
	var list []tileData
	for _, t := range r.widest {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b tileData) int {
		if a.tile.L != b.tile.L {
			return a.tile.L - b.tile.L
		}
		return cmp.Compare(a.tile.N, b.tile.N)
	})
	return list
}

// prove checks every tree against the largest one and every record against
// its note's tree and the largest tree, reading tiles through r, so that
// what r fetched is what a client proving the same needs. A client's
// current tree may be any tree it has seen, so every tree is also checked
// against every larger one, and every record against every tree it is in
// that is at least as large as its note's.
func (r *recorder) prove(trees map[int64]*treeInfo, sizes []int64, found []*lookup) error {
	T := trees[sizes[len(sizes)-1]].tree
	work := make(chan int64)
	errc := make(chan error, len(sizes))
	var wg sync.WaitGroup
	var done atomic.Int64
	for range max(*jobs, 4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				err := r.proveUnder(trees[n].tree, T, trees, sizes, found)
				if err != nil {
					errc <- err
				}
				if d := done.Add(1); d%100 == 0 {
					log.Printf("  %d/%d trees", d, len(sizes))
				}
			}
		}()
	}
	// Largest first: its tiles are the widest, so smaller trees mostly reuse them.
	for i := len(sizes) - 1; i >= 0; i-- {
		work <- sizes[i]
	}
	close(work)
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// proveUnder checks, with tiles read for tree b: b itself, every smaller
// tree, and every record in b whose note's tree is not larger than b.
func (r *recorder) proveUnder(b, T tlog.Tree, trees map[int64]*treeInfo, sizes []int64, found []*lookup) error {
	thr := tlog.TileHashReader(b, r)
	for _, n := range sizes {
		if n > b.N {
			break
		}
		a := trees[n].tree
		h, err := tlog.TreeHash(a.N, thr)
		if err != nil {
			return fmt.Errorf("tree %d under tree %d: %v", a.N, b.N, err)
		}
		if h != a.Hash {
			return fmt.Errorf("FORK: tree %d has hash %v, but tree %d says %v", a.N, a.Hash, b.N, h)
		}
		if b == T && a.N < b.N {
			p, err := tlog.ProveTree(b.N, a.N, thr)
			if err != nil {
				return fmt.Errorf("proving tree %d in tree %d: %v", a.N, b.N, err)
			}
			if err := tlog.CheckTree(p, b.N, b.Hash, a.N, a.Hash); err != nil {
				return fmt.Errorf("proving tree %d in tree %d: %v", a.N, b.N, err)
			}
		}
	}
	for _, l := range found {
		if l.tree.N > b.N {
			continue
		}
		leaf := tlog.RecordHash(l.text)
		hs, err := thr.ReadHashes([]int64{tlog.StoredHashIndex(0, l.id)})
		if err != nil {
			return fmt.Errorf("record %d (%s) under tree %d: %v", l.id, l.entry, b.N, err)
		}
		if hs[0] != leaf {
			return fmt.Errorf("record %d (%s) does not match its leaf hash in tree %d", l.id, l.entry, b.N)
		}
		if b == T || b == l.tree {
			p, err := tlog.ProveRecord(b.N, l.id, thr)
			if err != nil {
				return fmt.Errorf("proving record %d (%s) in tree %d: %v", l.id, l.entry, b.N, err)
			}
			if err := tlog.CheckRecord(p, b.N, b.Hash, l.id, leaf); err != nil {
				return fmt.Errorf("proving record %d (%s) in tree %d: %v", l.id, l.entry, b.N, err)
			}
		}
	}
	return nil
}

// proxyTree fetches the .info, .mod and .zip files of mods, checks them
// against the go.sum, and returns the GOPROXY tree's files by slash path.
func (r *recorder) proxyTree(ctx context.Context, mods []module.Version, lookups []*lookup) (map[string][]byte, error) {
	sums := map[string]bool{}
	inGoSum := map[module.Version]bool{}
	for _, l := range lookups {
		for _, line := range l.lines {
			sums[line] = true
		}
		inGoSum[l.mod] = true
	}
	recorded := map[module.Version]bool{}
	for _, m := range mods {
		recorded[m] = true
	}
	files := map[string][]byte{}
	versions := map[string][]string{}
	for _, m := range mods {
		ep, err := module.EscapePath(m.Path)
		if err != nil {
			return nil, err
		}
		ev, err := module.EscapeVersion(m.Version)
		if err != nil {
			return nil, err
		}
		prefix := ep + "/@v/" + ev
		for _, ext := range []string{".info", ".mod", ".zip"} {
			a, err := r.fetch(ctx, r.proxy+"/"+prefix+ext, "proxy/"+prefix+ext)
			if err != nil {
				return nil, err
			}
			if a.status != http.StatusOK {
				return nil, fmt.Errorf("%s%s: status %d: %s", prefix, ext, a.status, a.body)
			}
			files[prefix+ext] = a.body
		}
		versions[ep] = append(versions[ep], m.Version)

		zipData := files[prefix+".zip"]
		if int64(len(zipData)) > *maxZip {
			return nil, fmt.Errorf("%s@%s: zip is %d bytes, more than -maxzip", m.Path, m.Version, len(zipData))
		}
		tmp, err := os.CreateTemp("", "realsum-*.zip")
		if err != nil {
			return nil, err
		}
		tmp.Write(zipData)
		tmp.Close()
		zipHash, err := dirhash.HashZip(tmp.Name(), dirhash.Hash1)
		os.Remove(tmp.Name())
		if err != nil {
			return nil, fmt.Errorf("%s@%s: %v", m.Path, m.Version, err)
		}
		gomod := files[prefix+".mod"]
		modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(gomod)), nil
		})
		if err != nil {
			return nil, err
		}
		for _, line := range []string{
			m.Path + " " + m.Version + " " + zipHash,
			m.Path + " " + m.Version + "/go.mod " + modHash,
		} {
			if !sums[line] {
				return nil, fmt.Errorf("%s@%s: %q is not a line of the go.sum", m.Path, m.Version, line)
			}
		}
		mf, err := modfile.ParseLax("go.mod", gomod, nil)
		if err != nil {
			return nil, fmt.Errorf("%s@%s: go.mod: %v", m.Path, m.Version, err)
		}
		for _, req := range mf.Require {
			if !recorded[req.Mod] {
				return nil, fmt.Errorf("%s@%s requires %s@%s, which is not in -modules", m.Path, m.Version, req.Mod.Path, req.Mod.Version)
			}
		}
		log.Printf("proxy: %s@%s: zip %d bytes, %d requirements", m.Path, m.Version, len(zipData), len(mf.Require))
	}
	for ep, vs := range versions {
		semver.Sort(vs)
		files[ep+"/@v/list"] = []byte(strings.Join(vs, "\n") + "\n")
	}
	return files, nil
}

// writeZip writes the database's answers: "latest", "lookup/M@V" for found
// records, "status/<code>/lookup/M@V" for other answers, and the widest
// recorded hash tiles under their own paths ("tile/8/L/NNN[.p/W]").
func writeZip(file string, latest answer, lookups []*lookup, tiles []tileData) error {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	mtime := time.Now().UTC().Truncate(time.Second)
	add := func(name string, method uint16, data []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: mtime})
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	if err := add("latest", zip.Deflate, latest.body); err != nil {
		return err
	}
	sorted := slices.Clone(lookups)
	slices.SortFunc(sorted, func(a, b *lookup) int { return strings.Compare(a.entry, b.entry) })
	for _, l := range sorted {
		name := l.entry
		if l.ans.status != http.StatusOK {
			name = path.Join("status", strconv.Itoa(l.ans.status), l.entry)
		}
		if err := add(name, zip.Deflate, l.ans.body); err != nil {
			return err
		}
	}
	for _, t := range tiles {
		if err := add(t.tile.Path(), zip.Store, t.data); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o666); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
