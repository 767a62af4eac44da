package verifier_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/verifier"
)

// FuzzMirrorTile verifies, with --mirror, a go.sum line that is not the
// log's (record 6 with its hash altered) against a server that answers its
// lookup with that altered record (and the log's real signed head), and
// the level-0 tile holding it, at any width, with arbitrary bytes; the rest
// comes from a real log. The seeds are the real tile, the real tile with
// record 6's leaf replaced by the altered record's hash (the forgery a
// lying server would try), another tile and a short one. Whatever the
// bytes, the line never verifies: the tile cannot hash to the signed root
// unless it is the log's, and then the altered leaf is not in it.
func FuzzMirrorTile(f *testing.F) {
	u, target := fuzzLog(f, "FuzzMirrorTile")

	const id = 6
	real := u.Record(id)
	altered := bytes.Clone(real)
	i := bytes.Index(altered, []byte(" h1:")) + len(" h1:")
	altered[i] ^= 'A' ^ 'B' // another base64 letter
	if altered[i] == real[i] {
		f.Fatal("the record was not altered")
	}
	path, version := store.RecordModule(real)
	escPath, _ := module.EscapePath(path)
	escVersion, _ := module.EscapeVersion(version)
	answer, err := tlog.FormatRecord(id, altered)
	if err != nil {
		f.Fatal(err)
	}
	answer = append(answer, u.SignedHead()...)

	var tile atomic.Pointer[[]byte] // the tile answer of the current input
	pass := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/lookup/"+escPath+"@"+escVersion:
			w.Write(answer)
		case r.URL.Path == "/tile/8/0/000" || strings.HasPrefix(r.URL.Path, "/tile/8/0/000.p/"):
			w.Write(*tile.Load())
		default:
			pass.ServeHTTP(w, r)
		}
	}))
	f.Cleanup(srv.Close)

	at := func(n int64, w int) []byte {
		data, err := tlog.ReadTileData(tlog.Tile{H: store.TileHeight, L: 0, N: n, W: w}, u.HashReader())
		if err != nil {
			f.Fatal(err)
		}
		return data
	}
	want := at(0, 256)
	forged := bytes.Clone(want)
	leaf := tlog.RecordHash(altered)
	copy(forged[id*tlog.HashSize:], leaf[:])
	f.Add(want)
	f.Add(forged)
	f.Add(at(2, 600-512))
	f.Add(want[:(id+1)*tlog.HashSize])

	// The first line of the altered record: its module's zip hash.
	line, _, _ := bytes.Cut(altered, []byte("\n"))
	gosum := append(line, '\n')
	f.Fuzz(func(t *testing.T, data []byte) {
		tile.Store(&data)
		v, _ := mirrorVerifier(t, srv.URL, u.VerifierKey(), "")
		rep, err := v.Verify(context.Background(), []verifier.Input{{Name: "go.sum", Data: gosum}})
		if err == nil && rep.Summary.Verified > 0 {
			t.Fatalf("tile of %d bytes: the altered line %q verified (%+v)", len(data), line, rep.Summary)
		}
	})
}
