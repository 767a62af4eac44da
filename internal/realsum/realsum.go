// Package realsum is a recorded real-data fixture of the Go checksum database
// sum.golang.org, signed with its real key, and a replaying upstream that
// serves it. Tests use it to check sumkeep against real, live data without
// touching the network; the bench program uses it too. The fixture was
// recorded by ./record (see testdata/SOURCE for what and when) and is
// embedded in the package, so it works from any working directory.
//
// # What is recorded
//
// A large real project's go.sum, verbatim (GoSum), and for every distinct
// module@version it names (a line "M V h1:" or "M V/go.mod h1:"; both name
// the record for M@V) the database's answer to /lookup/M@V, byte-exactly,
// including not-found answers. Then /latest, and the hash tiles that prove
// every record and every tree seen, as read by tlog.TileHashReader: every
// record proven (tlog.ProveRecord) in the largest tree T and in the tree its
// lookup was signed at, every smaller tree proven in T (tlog.ProveTree), and,
// because a client's current head may be any tree it has seen, every tree's
// hash (tlog.TreeHash) and every record's leaf hash read under every tree
// at least as large. Each tile is kept once, at the widest width read.
// Finally a small GOPROXY tree of real module zips that appear in the go.sum
// (ProxyDir, ProxyModules), so the real go command can download them and
// check them against the replayed database.
//
// # Storage format
//
// testdata/go.sum and testdata/SOURCE are plain text. testdata/sumdb.zip
// holds every answer of the database, each entry named by its URL path
// relative to the database root:
//
//	latest                       the body of /latest
//	lookup/<esc path>@<esc ver>  a 200 answer of /lookup: "<id>\n<record>\n<signed note>"
//	status/<code>/lookup/...     any other answer (e.g. a not-found 404), its body
//	tile/8/<L>/<NNN>[.p/<W>]     a hash tile at the widest width recorded
//
// Paths and versions are escaped with module.EscapePath and
// module.EscapeVersion, as the go command sends them. testdata/proxy is a
// GOPROXY directory (<esc path>/@v/list, .info, .mod, .zip) usable with
// GOPROXY=file://<ProxyDir()>.
//
// # Protocol facts the data shows
//
//   - A tree head note is "go.sum database tree\n<N>\n<base64 root>\n", a
//     blank line and the signature lines; it verifies with Key.
//   - A lookup answer is the record id, the record (the module's two go.sum
//     lines) and a signed note. A module proxy's /sumdb/ endpoint caches
//     lookup answers, so their notes are signed at older trees than its
//     /latest, and different lookups carry different trees. T (Head) is the
//     largest tree among /latest and all lookup notes; all others are proven
//     consistent with it. (In this recording the lookups carry seven trees,
//     from 52,791,161 to 70,776,918, most of them five trees near 66.3
//     million, all smaller than /latest's 71,848,828: the go command, which
//     never fetches /latest, ends at the largest lookup tree.)
//   - Such an endpoint serves hash tiles, full and partial (.p/W), but
//     refuses data tiles with 403 "Go module path not permitted". Its
//     not-found answer to a lookup is 404 with an empty body.
//   - Hash tiles are prefix-stable: a partial tile of width W is the first W
//     hashes of any wider version of the same tile, so the replaying upstream
//     slices the recorded tile.
package realsum

import (
	"archive/zip"
	"bytes"
	"cmp"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// Name is the name of the recorded database.
const Name = "sum.golang.org"

// Key is the real verifier key of sum.golang.org; every recorded note
// verifies with it.
const Key = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"

//go:embed testdata
var testdata embed.FS

// GoSum returns the recorded project's go.sum, verbatim.
func GoSum() []byte {
	data, err := testdata.ReadFile("testdata/go.sum")
	if err != nil {
		panic("realsum: " + err.Error())
	}
	return data
}

// Source returns testdata/SOURCE: which project and version the go.sum
// comes from, when it was recorded, and which modules the GOPROXY tree holds.
func Source() string {
	data, err := testdata.ReadFile("testdata/SOURCE")
	if err != nil {
		panic("realsum: " + err.Error())
	}
	return string(data)
}

// answer is a recorded HTTP answer.
type answer struct {
	status int
	body   []byte
}

// fixture is the parsed recording.
type fixture struct {
	latest   []byte            // /latest, as recorded
	head     store.Head        // T, the largest tree seen
	heads    []store.Head      // every tree seen, ascending
	lookups  map[string]answer // "<esc path>@<esc ver>" -> answer
	records  []store.Record    // ascending id
	notFound []module.Version  // lookups answered other than 200, sorted
	modules  []module.Version  // go.sum module versions with records, in go.sum order
	tiles    []store.Tile      // widest recorded, by level and index
	tileIdx  map[[2]int64]int  // (L, N) -> index in tiles
}

var (
	parseOnce sync.Once
	parsed    *fixture
	parseErr  error
)

// get returns the parsed fixture.
func get() (*fixture, error) {
	parseOnce.Do(func() {
		parsed, parseErr = parse()
		if parseErr != nil {
			parseErr = fmt.Errorf("realsum: bad fixture: %w", parseErr)
		}
	})
	return parsed, parseErr
}

// mustGet is get for functions without an error result: the fixture is
// embedded, so failing to parse it is a build defect.
func mustGet() *fixture {
	f, err := get()
	if err != nil {
		panic(err)
	}
	return f
}

func parse() (*fixture, error) {
	zdata, err := testdata.ReadFile("testdata/sumdb.zip")
	if err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(bytes.NewReader(zdata), int64(len(zdata)))
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(Key)
	if err != nil {
		return nil, err
	}
	f := &fixture{lookups: map[string]answer{}, tileIdx: map[[2]int64]int{}}
	heads := map[int64]store.Head{}
	notes := map[string]tlog.Tree{} // note text -> tree, to open each note once
	addHead := func(msg []byte, from string) (tlog.Tree, error) {
		if tree, ok := notes[string(msg)]; ok {
			return tree, nil
		}
		n, err := note.Open(msg, note.VerifierList(verifier))
		if err != nil {
			return tlog.Tree{}, fmt.Errorf("%s: %v", from, err)
		}
		tree, err := tlog.ParseTree([]byte(n.Text))
		if err != nil {
			return tlog.Tree{}, fmt.Errorf("%s: %v", from, err)
		}
		notes[string(msg)] = tree
		if h, ok := heads[tree.N]; ok {
			if h.Hash != tree.Hash {
				return tlog.Tree{}, fmt.Errorf("%s: tree %d has two hashes", from, tree.N)
			}
		} else {
			heads[tree.N] = store.Head{Size: tree.N, Hash: tree.Hash, Note: msg}
		}
		return tree, nil
	}

	// "latest" first, so that its note stands for its tree.
	files := slices.Clone(zr.File)
	slices.SortStableFunc(files, func(a, b *zip.File) int {
		return boolCmp(a.Name != "latest", b.Name != "latest")
	})
	byID := map[int64]bool{}
	for _, zf := range files {
		data, err := readZipFile(zf)
		if err != nil {
			return nil, err
		}
		name := zf.Name
		switch {
		case name == "latest":
			f.latest = data
			if _, err := addHead(data, name); err != nil {
				return nil, err
			}

		case strings.HasPrefix(name, "lookup/"):
			key := strings.TrimPrefix(name, "lookup/")
			m, err := unescapeModule(key)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			id, text, msg, err := tlog.ParseRecord(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			tree, err := addHead(msg, name)
			if err != nil {
				return nil, err
			}
			if id >= tree.N {
				return nil, fmt.Errorf("%s: record %d is not in tree %d", name, id, tree.N)
			}
			path, version := store.RecordModule(text)
			if path != m.Path || version != m.Version {
				return nil, fmt.Errorf("%s: record is for %s@%s", name, path, version)
			}
			if byID[id] {
				return nil, fmt.Errorf("%s: record %d twice", name, id)
			}
			byID[id] = true
			f.lookups[key] = answer{http.StatusOK, data}
			f.records = append(f.records, store.Record{ID: id, Path: path, Version: version, Data: text})

		case strings.HasPrefix(name, "status/"):
			code, rest, _ := strings.Cut(strings.TrimPrefix(name, "status/"), "/")
			status, err := strconv.Atoi(code)
			key, ok := strings.CutPrefix(rest, "lookup/")
			if err != nil || !ok {
				return nil, fmt.Errorf("unexpected entry %s", name)
			}
			m, err := unescapeModule(key)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			f.lookups[key] = answer{status, data}
			f.notFound = append(f.notFound, m)

		case strings.HasPrefix(name, "tile/"):
			t, err := tlog.ParseTilePath(name)
			if err != nil || t.H != store.TileHeight || t.L < 0 {
				return nil, fmt.Errorf("unexpected entry %s", name)
			}
			if len(data) != t.W*tlog.HashSize {
				return nil, fmt.Errorf("%s: %d bytes", name, len(data))
			}
			key := [2]int64{int64(t.L), t.N}
			if _, ok := f.tileIdx[key]; ok {
				return nil, fmt.Errorf("%s: tile recorded twice", name)
			}
			f.tileIdx[key] = len(f.tiles)
			f.tiles = append(f.tiles, store.Tile{Tile: t, Data: data})

		default:
			return nil, fmt.Errorf("unexpected entry %s", name)
		}
	}
	if f.latest == nil || len(f.records) == 0 || len(f.tiles) == 0 {
		return nil, fmt.Errorf("incomplete: latest, lookups or tiles missing")
	}
	slices.SortFunc(f.records, func(a, b store.Record) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(f.notFound, compareModule)
	for _, h := range heads {
		f.heads = append(f.heads, h)
	}
	slices.SortFunc(f.heads, func(a, b store.Head) int { return cmp.Compare(a.Size, b.Size) })
	f.head = f.heads[len(f.heads)-1]

	// Modules: the go.sum's module versions that have records.
	seen := map[module.Version]bool{}
	for line := range strings.SplitSeq(string(GoSum()), "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			continue
		}
		m := module.Version{Path: fields[0], Version: strings.TrimSuffix(fields[1], "/go.mod")}
		if seen[m] {
			continue
		}
		seen[m] = true
		if key, err := escapeModule(m); err == nil && f.lookups[key].status == http.StatusOK {
			f.modules = append(f.modules, m)
		}
	}
	return f, nil
}

func readZipFile(zf *zip.File) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func compareModule(a, b module.Version) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return semver.Compare(a.Version, b.Version)
}

// escapeModule returns "<escaped path>@<escaped version>", the form of a
// lookup's URL path.
func escapeModule(m module.Version) (string, error) {
	p, err := module.EscapePath(m.Path)
	if err != nil {
		return "", err
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		return "", err
	}
	return p + "@" + v, nil
}

func unescapeModule(s string) (module.Version, error) {
	ep, ev, ok := strings.Cut(s, "@")
	if !ok {
		return module.Version{}, fmt.Errorf("no @ in %q", s)
	}
	p, err := module.UnescapePath(ep)
	if err != nil {
		return module.Version{}, err
	}
	v, err := module.UnescapeVersion(ev)
	if err != nil {
		return module.Version{}, err
	}
	return module.Version{Path: p, Version: v}, nil
}

// Head returns T, the largest signed tree head recorded (from /latest or a
// lookup's note): every record and every other head is proven in it by the
// recorded tiles. Its Note is the signed note exactly as received.
func Head() (store.Head, error) {
	f, err := get()
	if err != nil {
		return store.Head{}, err
	}
	h := f.head
	h.Note = bytes.Clone(h.Note)
	return h, nil
}

// Heads returns every distinct signed tree head recorded (/latest and the
// lookups' notes), in ascending size; the last is Head.
func Heads() ([]store.Head, error) {
	f, err := get()
	if err != nil {
		return nil, err
	}
	heads := slices.Clone(f.heads)
	for i := range heads {
		heads[i].Note = bytes.Clone(heads[i].Note)
	}
	return heads, nil
}

// Latest returns the body of /latest as recorded. Its tree may be smaller
// than Head's, if a lookup was signed at a newer tree.
func Latest() ([]byte, error) {
	f, err := get()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(f.latest), nil
}

// Records returns the recorded records in ascending id order, with module
// path and version as store.RecordModule gives them and the record bytes
// exactly as the log holds them. The caller owns the result.
func Records() ([]store.Record, error) {
	f, err := get()
	if err != nil {
		return nil, err
	}
	recs := slices.Clone(f.records)
	for i := range recs {
		recs[i].Data = bytes.Clone(recs[i].Data)
	}
	return recs, nil
}

// Tiles returns the recorded hash tiles, each at the widest width recorded,
// ordered by level and index. The caller owns the result.
func Tiles() ([]store.Tile, error) {
	f, err := get()
	if err != nil {
		return nil, err
	}
	tiles := slices.Clone(f.tiles)
	for i := range tiles {
		tiles[i].Data = bytes.Clone(tiles[i].Data)
	}
	return tiles, nil
}

// Modules returns the module versions of the go.sum that have a record, in
// the go.sum's order.
func Modules() []module.Version {
	return slices.Clone(mustGet().modules)
}

// NotFound returns the module versions whose recorded lookup was not
// answered with a record (e.g. 404), sorted. They may be go.sum entries or
// extra lookups made when recording (see Source).
func NotFound() []module.Version {
	return slices.Clone(mustGet().notFound)
}

// Lookup returns the recorded answer to /lookup/M@V: its HTTP status and body
// exactly as received. ok is false if M@V was not looked up.
func Lookup(m module.Version) (status int, body []byte, ok bool) {
	key, err := escapeModule(m)
	if err != nil {
		return 0, nil, false
	}
	a, ok := mustGet().lookups[key]
	return a.status, bytes.Clone(a.body), ok
}

// TileReader is a tlog.TileReader over the recorded tiles: narrower widths
// are sliced from the recorded ones, and a tile not recorded at least as wide
// is an error wrapping store.ErrNotFound. Use it with tlog.TileHashReader to
// prove records offline.
type TileReader struct{}

// Height implements tlog.TileReader.
func (TileReader) Height() int { return store.TileHeight }

// ReadTiles implements tlog.TileReader.
func (TileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	f, err := get()
	if err != nil {
		return nil, err
	}
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		if data[i] = f.tile(t); data[i] == nil {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), store.ErrNotFound)
		}
	}
	return data, nil
}

// SaveTiles implements tlog.TileReader; it does nothing.
func (TileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// tile returns a copy of t's hashes sliced from the recorded tile, or nil
// if t is not recorded at least as wide.
func (f *fixture) tile(t tlog.Tile) []byte {
	if t.H != store.TileHeight || t.L < 0 || t.W <= 0 {
		return nil
	}
	i, ok := f.tileIdx[[2]int64{int64(t.L), t.N}]
	if !ok || f.tiles[i].Tile.W < t.W {
		return nil
	}
	return bytes.Clone(f.tiles[i].Data[:t.W*tlog.HashSize])
}

// ProxyModules returns the module versions of the GOPROXY tree at ProxyDir,
// sorted.
func ProxyModules() []module.Version {
	var mods []module.Version
	fs.WalkDir(testdata, "testdata/proxy", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, "/@v/list") {
			return err
		}
		esc := strings.TrimSuffix(strings.TrimPrefix(name, "testdata/proxy/"), "/@v/list")
		path, err := module.UnescapePath(esc)
		if err != nil {
			return err
		}
		list, err := testdata.ReadFile(name)
		if err != nil {
			return err
		}
		for _, v := range strings.Fields(string(list)) {
			mods = append(mods, module.Version{Path: path, Version: v})
		}
		return nil
	})
	slices.SortFunc(mods, compareModule)
	return mods
}
