package verifier_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/verifier"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// h1 returns a well-formed h1 hash of s.
func h1(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "h1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// toolchain is a golang.org/toolchain record added to fixtures.
var toolchain = module.Version{Path: "golang.org/toolchain", Version: "v0.0.1-go1.21.0.linux-amd64"}

func addToolchain(u *sumdbtest.Upstream) error {
	return u.AddModule(toolchain.Path, toolchain.Version, h1("toolchain zip"), h1("toolchain mod"))
}

// TestVerifyGoSum verifies go.sum files generated from the upstream's
// records: every line verifies, blank lines and CRLF line ends are fine,
// and the report names the signed tree it proved against.
func TestVerifyGoSum(t *testing.T) {
	f := newFixture(t, 3000, nil)
	v := f.storeVerifier(t, verifier.Policy{})
	gosum := f.goSum(spread(3000, 400)...)
	work := "\n" + strings.ReplaceAll(string(f.goSum(5, 2999)), "\n", "\r\n") + "\n \n"
	rep, err := v.Verify(context.Background(), []verifier.Input{{Name: "go.sum", Data: gosum}, {Name: "go.work.sum", Data: []byte(work)}})
	if err != nil {
		t.Fatal(err)
	}
	want := verifier.Summary{Files: 2, Lines: 804, Verified: 804}
	if rep.Summary != want || !rep.OK || rep.Failed() {
		t.Fatalf("summary = %+v (ok %v), want %+v; failures: %v", rep.Summary, rep.OK, want, failures(rep))
	}
	if r := resultAt(t, rep, "go.work.sum", 2); r.Status != verifier.StatusVerified || r.Module == "" || r.GoMod {
		t.Errorf("go.work.sum:2 = %+v", r)
	}
	if r := resultAt(t, rep, "go.work.sum", 3); !r.GoMod {
		t.Errorf("go.work.sum:3 is not a go.mod line: %+v", r)
	}
	db := rep.Database
	if tree := f.u.Tree(); db.Name != logName || db.Source != "store" || db.Tree != tree {
		t.Errorf("database = %+v, want %s at %+v", db, logName, tree)
	}

	// Proven a few records at a time, with a bad line in the middle: the
	// same results.
	v.Source.(*verifier.StoreSource).Batch = 7
	half := len(strings.Join(strings.SplitAfter(string(gosum), "\n")[:400], ""))
	bad := append(append(append([]byte(nil), gosum[:half]...), "example.com/none v1.0.0 "+h1("x")+"\n"...), gosum[half:]...)
	rep = verify(t, v, bad)
	if got, want := failures(rep), []string{"go.sum:401 not-found"}; fmt.Sprint(got) != fmt.Sprint(want) || rep.Summary.Verified != 800 {
		t.Errorf("in batches of 7: summary %+v, failures %v, want %v", rep.Summary, got, want)
	}
}

// badLine is a line that must fail, and how.
type badLine struct {
	name, line, kind, msg string
}

// badLines returns one line of each kind that must fail, built from the
// fixture's records (record ids 10 to 13 must exist).
func badLines(f *fixture) []badLine {
	alter := func(line string) string {
		i := strings.Index(line, "h1:") + 3
		c := byte('A')
		if line[i] == 'A' {
			c = 'B'
		}
		return line[:i] + string(c) + line[i+1:]
	}
	h1Line, _ := f.lines(10)
	_, modLine := f.lines(11)
	path, version, _ := f.u.Module(12)
	_, major, _ := module.SplitPathVersion(path)
	missingVersion := "v1.99.0"
	if major != "" {
		missingVersion = "v" + major[2:] + ".99.0"
	}
	_ = version
	good := h1("x")
	return []badLine{
		{"ChangedH1", alter(h1Line), verifier.KindHashMismatch, "h1 hash mismatch: go.sum has h1:"},
		{"ChangedGoModHash", alter(modLine), verifier.KindGoModMismatch, "go.mod hash mismatch"},
		{"VersionMissing", path + " " + missingVersion + " " + good, verifier.KindNotFound, "not in the checksum database"},
		{"ModuleMissing", "example.com/not/there v1.0.0/go.mod " + good, verifier.KindNotFound, "not in the checksum database"},
		{"TwoFields", path + " " + good, verifier.KindMalformed, "2 fields"},
		{"FourFields", path + " v1.0.0 " + good + " extra", verifier.KindMalformed, "4 fields"},
		{"InvalidPath", "nodot/x v1.0.0 " + good, verifier.KindMalformed, "invalid module path"},
		{"InvalidUTF8", "example.com/\xff\xfe v1.0.0 " + good, verifier.KindMalformed, "invalid module path"},
		{"ControlChar", "example.com/a\x01b v1.0.0 " + good, verifier.KindMalformed, "invalid module path"},
		{"NotSemver", "example.com/m latest " + good, verifier.KindMalformed, "invalid version"},
		{"NotCanonical", "example.com/m v1.2 " + good, verifier.KindMalformed, "not canonical"},
		{"WrongMajor", "example.com/m/v2 v1.0.0 " + good, verifier.KindMalformed, "invalid version"},
		{"HugeLine", "example.com/m v1.0.0 h1:" + strings.Repeat("A", 100000), verifier.KindMalformed, "bytes long"},
		{"BadBase64", "example.com/m v1.0.0 h1:not-base64!", verifier.KindMalformed, "not the base64"},
		{"ShortHash", "example.com/m v1.0.0 h1:AAAA", verifier.KindMalformed, "not the base64"},
		{"NoAlgorithm", "example.com/m v1.0.0 " + good[3:], verifier.KindMalformed, "no algorithm"},
		{"UnknownAlgorithm", "example.com/m v1.0.0 h2:" + good[3:], verifier.KindUnknownAlgorithm, `unknown hash algorithm "h2"`},
		{"SHA256Algorithm", "example.com/m v1.0.0 sha256:" + good[3:], verifier.KindUnknownAlgorithm, "unknown hash algorithm"},
	}
}

// TestBadLines appends one bad line of each kind to a good go.sum and checks
// that exactly that line fails, at the right line number, with the right
// kind and reason.
func TestBadLines(t *testing.T) {
	f := newFixture(t, 1000, nil)
	v := f.storeVerifier(t, verifier.Policy{})
	good := f.goSum(spread(1000, 50)...)
	for _, bl := range badLines(f) {
		t.Run(bl.name, func(t *testing.T) {
			gosum := append(append([]byte(nil), good...), bl.line+"\n"...)
			gosum = append(gosum, f.goSum(999)...) // good lines after it
			rep := verify(t, v, gosum)
			line := countLines(good) + 1
			r := resultAt(t, rep, "go.sum", line)
			if r.Status != verifier.StatusFailed || r.Kind != bl.kind || !strings.Contains(r.Message, bl.msg) {
				t.Errorf("go.sum:%d = %s %s %q; want failed %s with %q", line, r.Status, r.Kind, r.Message, bl.kind, bl.msg)
			}
			if rep.Summary.Failed != 1 || rep.Summary.Verified != rep.Summary.Lines-1 || rep.OK {
				t.Errorf("summary = %+v, ok %v; want exactly one failure: %v", rep.Summary, rep.OK, failures(rep))
			}
			var text strings.Builder
			rep.WriteText(&text)
			prefix := fmt.Sprintf("go.sum:%d: ", line)
			if !strings.HasPrefix(text.String(), prefix) || !strings.Contains(strings.SplitN(text.String(), "\n", 2)[0], bl.msg) {
				t.Errorf("text report does not start with %q and name %q:\n%s", prefix, bl.msg, text.String())
			}
		})
	}
}

// TestSkipping checks GONOSUMDB, GOPRIVATE and GOSUMDB=off skipping, that
// golang.org/toolchain is checked regardless, and that the go command's
// ignored empty go.mod hash is skipped.
func TestSkipping(t *testing.T) {
	f := newFixture(t, 500, addToolchain)
	tcID, ok := f.u.Lookup(toolchain.Path, toolchain.Version)
	if !ok {
		t.Fatal("no toolchain record")
	}
	private := "corp.example.com/secret v1.0.0 " + h1("secret") + "\n" +
		"corp.example.com/secret v1.0.0/go.mod " + h1("secret mod") + "\n"
	synth := f.goSum(1, 2, 3) // 6 lines of example.com-style synthetic modules
	gosum := string(synth) + private + string(f.goSum(tcID)) +
		"example.com/old v1.0.0/go.mod h1:G7mAYYxgmS0lVkHyy2hEOLQCFB0DlQFTMLWggykrydY=\n"
	// Line numbers: 1-6 synthetic, 7-8 private, 9-10 toolchain, 11 empty go.mod.
	p1, _, _ := f.u.Module(1)
	onP1 := map[int]string{11: verifier.KindIgnoredByGo} // the lines of p1's versions
	for i, id := range []int64{1, 2, 3} {
		if p, _, _ := f.u.Module(id); p == p1 {
			onP1[2*i+1], onP1[2*i+2] = verifier.KindGONOSUMDB, verifier.KindGONOSUMDB
		}
	}

	fromEnv := func(env map[string]string) verifier.Policy {
		p, err := verifier.PolicyFromEnv(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name     string
		policy   verifier.Policy
		skipped  map[int]string // line -> kind
		failed   []int
		msgMatch string // in the message of skipped line 7, if set
	}{
		{"NoPolicy", verifier.Policy{}, map[int]string{11: verifier.KindIgnoredByGo}, []int{7, 8}, ""},
		{"GONOSUMDB", fromEnv(map[string]string{"GONOSUMDB": "corp.example.com,golang.org/toolchain"}),
			map[int]string{7: verifier.KindGONOSUMDB, 8: verifier.KindGONOSUMDB, 11: verifier.KindIgnoredByGo}, nil, "GONOSUMDB=corp.example.com"},
		{"GOPRIVATE", fromEnv(map[string]string{"GOPRIVATE": "*.example.com/secret,golang.org"}),
			map[int]string{7: verifier.KindGONOSUMDB, 8: verifier.KindGONOSUMDB, 11: verifier.KindIgnoredByGo}, nil, "GOPRIVATE="},
		{"GONOSUMDBOverGOPRIVATE", fromEnv(map[string]string{"GOPRIVATE": "corp.example.com", "GONOSUMDB": "nothing.example"}),
			map[int]string{11: verifier.KindIgnoredByGo}, []int{7, 8}, ""},
		{"PatternOnSynthetic", verifier.Policy{NoSumDB: p1}, onP1, []int{7, 8}, ""},
		{"GOSUMDBOff", fromEnv(map[string]string{"GOSUMDB": "off"}), map[int]string{
			1: verifier.KindGOSUMDBOff, 2: verifier.KindGOSUMDBOff, 3: verifier.KindGOSUMDBOff, 4: verifier.KindGOSUMDBOff,
			5: verifier.KindGOSUMDBOff, 6: verifier.KindGOSUMDBOff, 7: verifier.KindGOSUMDBOff, 8: verifier.KindGOSUMDBOff,
			11: verifier.KindIgnoredByGo}, nil, "GOSUMDB=off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := verify(t, f.storeVerifier(t, tt.policy), []byte(gosum))
			for _, r := range rep.Results {
				kind, skip := tt.skipped[r.Line]
				failed := false
				for _, l := range tt.failed {
					failed = failed || l == r.Line
				}
				switch {
				case skip && (r.Status != verifier.StatusSkipped || r.Kind != kind):
					t.Errorf("line %d (%s): %s %s %q, want skipped %s", r.Line, r.Module, r.Status, r.Kind, r.Message, kind)
				case failed && (r.Status != verifier.StatusFailed || r.Kind != verifier.KindNotFound):
					t.Errorf("line %d (%s): %s %s %q, want failed not-found", r.Line, r.Module, r.Status, r.Kind, r.Message)
				case !skip && !failed && r.Status != verifier.StatusVerified:
					t.Errorf("line %d (%s): %s %s %q, want verified", r.Line, r.Module, r.Status, r.Kind, r.Message)
				}
			}
			if tt.msgMatch != "" && !strings.Contains(resultAt(t, rep, "go.sum", 7).Message, tt.msgMatch) {
				t.Errorf("line 7 message %q does not name %q", resultAt(t, rep, "go.sum", 7).Message, tt.msgMatch)
			}
			if got := rep.Summary.Skipped; got != len(tt.skipped) {
				t.Errorf("skipped %d lines, want %d", got, len(tt.skipped))
			}
			if tc := resultAt(t, rep, "go.sum", 9); tc.Module != toolchain.Path || tc.Status != verifier.StatusVerified {
				t.Errorf("toolchain line: %+v", tc)
			}
		})
	}
}

// TestTamperedRecord alters a record row in the database: its lines must
// fail with a proof error, not a hash mismatch. A fully synced store holds
// no level-0 tiles (they are rebuilt from the records), so the lines of the
// records sharing the altered record's tile fail with it, and nothing else.
func TestTamperedRecord(t *testing.T) {
	f := newFixture(t, 1000, nil)
	ids := spread(1000, 100)
	gosum := f.goSum(ids...)
	v := f.storeVerifier(t, verifier.Policy{})
	if rep := verify(t, v, gosum); !rep.OK {
		t.Fatalf("before tampering: %v", failures(rep))
	}
	victim := ids[37]
	execSQL(t, f.st, `UPDATE records SET hashes = set_byte(hashes, 3, get_byte(hashes, 3) # 1) WHERE id = $1`, victim)
	rep := verify(t, v, gosum)
	var want []string
	for i, id := range ids {
		if id/256 == victim/256 {
			want = append(want, fmt.Sprintf("go.sum:%d proof-failed", 2*i+1), fmt.Sprintf("go.sum:%d proof-failed", 2*i+2))
		}
	}
	if len(want) < 4 || len(want) > 2*26 {
		t.Fatalf("the fixture puts %d lines under the victim's tile", len(want))
	}
	if got := failures(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("failures = %v, want %v", got, want)
	}
	// The tile rebuilt from the altered record no longer hashes into the
	// signed tree.
	if msg := resultAt(t, rep, "go.sum", 37*2+1).Message; !strings.Contains(msg, "inconsistent tile") {
		t.Errorf("message = %q", msg)
	}
}

// TestTamperedIndex files another module's (genuine, provable) record under
// a module's path and version: the store refuses the row, whose record does
// not name the module it is filed under, and the module's lines fail,
// naming the row; the other lines verify.
func TestTamperedIndex(t *testing.T) {
	f := newFixture(t, 1000, nil)
	v := f.storeVerifier(t, verifier.Policy{})
	const a, b = 700, 300 // the lookup of a finds row b first (lower id)
	pa, va, _ := f.u.Module(a)
	execSQL(t, f.st, `UPDATE records SET key = $2, path = $3, version = $4, hashes = NULL, raw = $5 WHERE id = $1`,
		b, store.LookupKey(pa, va), pa, va, f.u.Record(b))
	rep := verify(t, v, f.goSum(a, 900))
	want := []string{"go.sum:1 proof-failed", "go.sum:2 proof-failed"}
	if got := failures(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("failures = %v, want %v", got, want)
	}
	if msg := resultAt(t, rep, "go.sum", 1).Message; !strings.Contains(msg, "table records, row id 300") {
		t.Errorf("message = %q", msg)
	}
}

// TestTamperedTile alters one hash in a stored tile: the proofs that read
// that tile fail, the others hold.
func TestTamperedTile(t *testing.T) {
	f := newFixture(t, 2000, nil)
	ids := spread(2000, 200) // every 10th record
	gosum := f.goSum(ids...)
	v := f.storeVerifier(t, verifier.Policy{})

	// A full sync stores no level-0 tiles (they are rebuilt from the
	// records); a store that holds them, as on-demand fetches leave them,
	// reads them before rebuilding any. Store them as such a store would.
	for k := int64(0); k*256 < 2000; k++ {
		w := min(256, 2000-k*256)
		data, err := tlog.ReadTileData(tlog.Tile{H: 8, L: 0, N: k, W: int(w)}, f.u.HashReader())
		if err != nil {
			t.Fatal(err)
		}
		execSQL(t, f.st, `INSERT INTO tiles (log_id, level, idx, width, hashes) SELECT id, 0, $1, $2, $3 FROM logs`, k, w, data)
	}

	// Level 0, tile 3: records 768 to 1023; not on the right edge of the tree.
	execSQL(t, f.st, `UPDATE tiles SET hashes = set_byte(hashes, 40, get_byte(hashes, 40) # 1) WHERE level = 0 AND idx = 3`)
	rep := verify(t, v, gosum)
	var want []string
	for i, id := range ids {
		if id >= 768 && id < 1024 {
			want = append(want, fmt.Sprintf("go.sum:%d proof-failed", 2*i+1), fmt.Sprintf("go.sum:%d proof-failed", 2*i+2))
		}
	}
	if got := failures(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("failures = %v\nwant %v", got, want)
	}
	if msg := resultAt(t, rep, "go.sum", 2*(768/10+1)+1).Message; !strings.Contains(msg, "inconsistent tile") {
		t.Errorf("message = %q", msg)
	}
	execSQL(t, f.st, `UPDATE tiles SET hashes = set_byte(hashes, 40, get_byte(hashes, 40) # 1) WHERE level = 0 AND idx = 3`)
	if rep := verify(t, v, gosum); !rep.OK {
		t.Fatalf("after restoring the tile: %v", failures(rep))
	}

	// Level 1 holds hashes every proof needs: everything fails.
	execSQL(t, f.st, `UPDATE tiles SET hashes = set_byte(hashes, 0, get_byte(hashes, 0) # 1) WHERE level = 1 AND idx = 0`)
	rep = verify(t, v, gosum)
	if rep.Summary.Failed != rep.Summary.Lines || rep.Summary.Lines != 400 {
		for _, r := range rep.Results {
			if r.Status == verifier.StatusVerified {
				t.Logf("verified line %d", r.Line)
			}
		}
		t.Fatalf("summary = %+v, want all 400 lines failed", rep.Summary)
	}
	for _, r := range rep.Results {
		if r.Kind != verifier.KindProofFailed {
			t.Fatalf("go.sum:%d: %s %q, want proof-failed", r.Line, r.Kind, r.Message)
		}
	}

	// A tile missing from the store (not stored, and not rebuildable: a
	// record under it, not one the go.sum names, is gone too) fails the
	// proofs that need it.
	execSQL(t, f.st, `UPDATE tiles SET hashes = set_byte(hashes, 0, get_byte(hashes, 0) # 1) WHERE level = 1 AND idx = 0`)
	execSQL(t, f.st, `DELETE FROM tiles WHERE level = 0 AND idx = 5`)
	execSQL(t, f.st, `DELETE FROM records WHERE id = 1281`)
	rep = verify(t, v, gosum)
	if got := len(failures(rep)); got != 2*26 { // ids 1280, 1290, ..., 1530
		t.Fatalf("with tile 0/5 deleted, %d lines failed, want 52: %v", got, failures(rep))
	}
	if msg := resultAt(t, rep, "go.sum", 2*128+1).Message; !strings.Contains(msg, "not in the store") {
		t.Errorf("message = %q", msg)
	}

	// A tile is authenticated as a whole: altering the one hash of a tile
	// that the only proof reading it does not use (its own record's leaf
	// hash, which the proof computes from the record) still fails it.
	execSQL(t, f.st, `UPDATE tiles SET hashes = set_byte(hashes, 64, get_byte(hashes, 64) # 1) WHERE level = 0 AND idx = 3`)
	rep = verify(t, v, f.goSum(100, 770, 1100)) // tile 0/5 is gone
	if got, want := failures(rep), []string{"go.sum:3 proof-failed", "go.sum:4 proof-failed"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("with the leaf hash of record 770 altered in its tile: failures = %v, want %v", got, want)
	}
	// The same on the tree's right edge (tile 0/7 is partial: records 1792
	// to 1999), where tiles are authenticated by the signed root itself.
	execSQL(t, f.st, `UPDATE tiles SET hashes = set_byte(hashes, 8*32, get_byte(hashes, 8*32) # 1) WHERE level = 0 AND idx = 7`)
	rep = verify(t, v, f.goSum(1800))
	if got, want := failures(rep), []string{"go.sum:1 proof-failed", "go.sum:2 proof-failed"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("with the leaf hash of record 1800 altered in its tile: failures = %v, want %v", got, want)
	}
}

// TestServedHead checks what the verifier trusts about the served head:
// the note, verified with the key, and never the store's other columns.
func TestServedHead(t *testing.T) {
	f := newFixture(t, 600, nil)
	ctx := context.Background()
	gosum := f.goSum(1, 500)

	// A key of the same name that did not sign the head.
	_, otherKey, err := note.GenerateKey(rand.Reader, logName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifier.NewStoreSource(ctx, f.st, otherKey); !errors.Is(err, verifier.ErrHeadNotVerified) {
		t.Errorf("with another key: err = %v, want ErrHeadNotVerified", err)
	}
	// A key of another log: the store has no head for it.
	_, otherLog, _ := note.GenerateKey(rand.Reader, "other.test")
	if _, err := verifier.NewStoreSource(ctx, f.st, otherLog); !errors.Is(err, verifier.ErrNoHead) {
		t.Errorf("with another log's key: err = %v, want ErrNoHead", err)
	}
	if _, err := verifier.NewStoreSource(ctx, f.st, "not a key"); err == nil {
		t.Error("an invalid key was accepted")
	}

	// The hash column is not what the verifier proves against; altered,
	// it no longer agrees with the note, and the store refuses the row.
	execSQL(t, f.st, `UPDATE heads SET hash = $1 WHERE size = 600`, make([]byte, 32))
	if _, err := verifier.NewStoreSource(ctx, f.st, f.u.VerifierKey()); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("with the hash column altered: err = %v, want store.ErrCorrupt", err)
	}
	tree := f.u.Tree()
	execSQL(t, f.st, `UPDATE heads SET hash = $1 WHERE size = 600`, tree.Hash[:])
	v := f.storeVerifier(t, verifier.Policy{})
	rep := verify(t, v, gosum)
	if !rep.OK || rep.Database.Tree != f.u.Tree() {
		t.Fatalf("ok %v, tree %+v, failures %v", rep.OK, rep.Database.Tree, failures(rep))
	}

	// Records stored beyond the served head are not looked up: the signed
	// tree cannot prove them.
	if err := f.u.AddSynthetic(5); err != nil {
		t.Fatal(err)
	}
	var beyond []store.Record
	for id := int64(600); id < 605; id++ {
		p, v, _ := f.u.Module(id)
		beyond = append(beyond, store.Record{ID: id, Path: p, Version: v, Data: f.u.Record(id)})
	}
	if err := f.st.Commit(ctx, logName, store.Batch{Records: beyond, Synced: -1}); err != nil {
		t.Fatal(err)
	}
	rep = verify(t, f.storeVerifier(t, verifier.Policy{}), f.goSum(1, 602))
	if got, want := failures(rep), []string{"go.sum:3 not-found", "go.sum:4 not-found"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("record beyond the served head: failures = %v, want %v", got, want)
	}

	// An altered note does not verify.
	h, err := f.st.ServedHead(ctx, logName)
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(h.Note), "\n600\n", "\n601\n", 1)
	execSQL(t, f.st, `UPDATE heads SET note = $1 WHERE size = 600`, []byte(forged))
	// (Refused by the store already: the note is for another tree than
	// the row's; a forgery that kept them in agreement would fail the
	// signature.)
	if _, err := verifier.NewStoreSource(ctx, f.st, f.u.VerifierKey()); !errors.Is(err, verifier.ErrHeadNotVerified) && !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("with the note altered: err = %v, want ErrHeadNotVerified or store.ErrCorrupt", err)
	}

	// An empty store has no head.
	empty := newEmptyStore(t)
	if _, err := verifier.NewStoreSource(ctx, empty, f.u.VerifierKey()); !errors.Is(err, verifier.ErrNoHead) {
		t.Errorf("empty store: err = %v, want ErrNoHead", err)
	}
}

// TestUnreadableFile: a file that cannot be read is an error, not a report.
func TestUnreadableFile(t *testing.T) {
	if _, err := verifier.ReadInputs([]string{t.TempDir() + "/go.sum"}, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func newEmptyStore(t testing.TB) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(context.Background(), pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// execSQL runs SQL on the fixture's database directly.
func execSQL(t testing.TB, st *postgres.Store, sql string, args ...any) {
	t.Helper()
	tag, err := st.Pool().Exec(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("%s: %d rows affected, want 1", sql, tag.RowsAffected())
	}
}
