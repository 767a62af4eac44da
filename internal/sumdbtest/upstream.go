// Package sumdbtest provides a hermetic checksum database (a stand-in for
// sum.golang.org) that can be made to misbehave on demand.
//
// An [Upstream] holds a transparency log in memory, signs its tree heads with
// a key generated at [New], and serves the checksum database protocol
// (/latest, /lookup/M@V, /tile/8/L/N[.p/W], /tile/8/data/N[.p/W]) through
// golang.org/x/mod/sumdb.Server, both at the root and in the proxy form
// /sumdb/<name>/... (with /sumdb/<name>/supported answering 200).
//
// [Upstream.SetFault] makes it lie in one of the ways a mirror must detect
// and refuse (see [FaultKind]); [Upstream.Fork] and [Upstream.AddDuplicate]
// build logs that misbehave in their content while being honestly signed.
//
// The package does not import "testing": it is used by tests and by the
// benchmark program alike.
package sumdbtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// An Upstream is an in-memory checksum database. It is safe for concurrent
// use: HTTP handlers may run while records are being added, and then see the
// log at some size between the old and the new one.
type Upstream struct {
	name        string
	skey        string // signer key, shared with forks
	vkey        string
	signer      note.Signer
	badSigner   note.Signer // real name and key hash, signature by another key
	otherSigner note.Signer // same name, another key (and so another key hash)
	server      *sumdb.Server
	seed        maphash.Seed

	// addMu serializes writers; it is held for a whole Add* call, while mu
	// is taken only to publish records.
	addMu sync.Mutex
	synth synthState // guarded by addMu

	mu       sync.RWMutex
	hashes   []tlog.Hash      // stored hashes, indexed by tlog storage index
	records  [][]byte         // record text by id, slices of arena chunks
	arena    []byte           // current chunk records are copied into
	index    map[uint64]int64 // maphash(path@version) -> first id
	overflow map[string]int64 // path@version -> first id, for maphash collisions
	heads    map[int64][]byte // signed heads by tree size (honest signer)

	fmu    sync.Mutex
	fault  Fault
	hook   func(*http.Request)
	counts map[string]int64
	srv    *httptest.Server
	addr   string // address of the last server, reused by Start after Close
}

// New returns an empty Upstream for the checksum database name (for example
// "sumdb.test"), signing with a freshly generated Ed25519 key.
func New(name string) (*Upstream, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: %v", err)
	}
	return newUpstream(name, skey, vkey)
}

// NewFixedKey is New with a signing key derived from seed instead of a
// random one, so the same in every process. Fuzz targets need it: each of
// their worker processes builds its own Upstream, and the signed answers in
// the seed corpus (made by another process) must verify in all of them.
func NewFixedKey(name, seed string) (*Upstream, error) {
	sum := sha512.Sum512([]byte(seed))
	skey, vkey, err := note.GenerateKey(bytes.NewReader(sum[:]), name)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: %v", err)
	}
	return newUpstream(name, skey, vkey)
}

// NewSynthetic returns an Upstream for the checksum database name holding n
// synthetic records (see [Upstream.AddSynthetic]): the log most tests and
// the benchmarks start from.
func NewSynthetic(name string, n int) (*Upstream, error) {
	u, err := New(name)
	if err != nil {
		return nil, err
	}
	if err := u.AddSynthetic(n); err != nil {
		return nil, err
	}
	return u, nil
}

// newUpstream returns an empty Upstream signing with skey.
func newUpstream(name, skey, vkey string) (*Upstream, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: %v", err)
	}
	otherKey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: %v", err)
	}
	other, err := note.NewSigner(otherKey)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: %v", err)
	}
	gen, err := newGeneration()
	if err != nil {
		return nil, err
	}
	u := &Upstream{
		name:        name,
		skey:        skey,
		vkey:        vkey,
		signer:      signer,
		badSigner:   relabeledSigner{Signer: other, hash: signer.KeyHash()},
		otherSigner: other,
		seed:        maphash.MakeSeed(),
		synth:       synthState{gen: gen},
		index:       make(map[uint64]int64),
		overflow:    make(map[string]int64),
		heads:       make(map[int64][]byte),
		counts:      make(map[string]int64),
	}
	u.server = sumdb.NewServer(serverOps{u})
	return u, nil
}

// relabeledSigner signs with one key but claims another key's hash, so the
// signature line names the real key and fails verification.
type relabeledSigner struct {
	note.Signer
	hash uint32
}

func (s relabeledSigner) KeyHash() uint32 { return s.hash }

// Name returns the checksum database name given to New.
func (u *Upstream) Name() string { return u.name }

// VerifierKey returns the verifier key, as used in GOSUMDB
// ("<VerifierKey> <URL>") and by note.NewVerifier.
func (u *Upstream) VerifierKey() string { return u.vkey }

// lockedHashes is a tlog.HashReader over an Upstream's stored hashes, for
// callers holding its mu. (A pointer, so conversion to the interface does
// not allocate.)
type lockedHashes Upstream

// ReadHashes returns the hashes at the given storage indexes, or
// os.ErrNotExist when one is beyond the stored hashes.
func (l *lockedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	h := l.hashes
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(h)) {
			return nil, os.ErrNotExist
		}
		out[i] = h[x]
	}
	return out, nil
}

// pending is a record about to be appended.
type pending struct {
	text []byte
	hash tlog.Hash // tlog.RecordHash(text)
	key  []byte    // path@version, or nil when the text has none
	kh   uint64    // maphash of key
}

// recordKey returns "path@version" from the first line of a record
// ("path version hash"), dropping a "/go.mod" suffix of the version.
// It returns nil if the line does not look like a go.sum line: three fields
// separated by single spaces, the version starting with "v".
func recordKey(text []byte) []byte {
	line, _, _ := bytes.Cut(text, []byte("\n"))
	path, rest, ok1 := bytes.Cut(line, []byte(" "))
	vers, hash, ok2 := bytes.Cut(rest, []byte(" "))
	vers = bytes.TrimSuffix(vers, []byte("/go.mod"))
	if !ok1 || !ok2 || len(path) == 0 || len(vers) < 2 || vers[0] != 'v' || len(hash) == 0 || bytes.IndexByte(hash, ' ') >= 0 {
		return nil
	}
	key := make([]byte, 0, len(path)+1+len(vers))
	key = append(key, path...)
	key = append(key, '@')
	return append(key, vers...)
}

// newPending validates text and prepares it for appending.
func (u *Upstream) newPending(text []byte) (pending, error) {
	if _, err := tlog.FormatRecord(0, text); err != nil {
		return pending{}, fmt.Errorf("sumdbtest: invalid record %q: %v", text, err)
	}
	p := pending{text: text, hash: tlog.RecordHash(text), key: recordKey(text)}
	if p.key != nil {
		p.kh = maphash.Bytes(u.seed, p.key)
	}
	return p, nil
}

// Add appends records, each the exact text of a log record (valid tlog
// record text: UTF-8, no control characters but newlines, ending in a newline,
// no blank lines), normally two go.sum lines. The records are copied. Add
// appends nothing and returns an error if any record is invalid or its
// module@version (from the first line) is already in the log or repeated in
// records; see AddDuplicate for deliberately breaking that rule.
func (u *Upstream) Add(records ...[]byte) error {
	batch := make([]pending, len(records))
	seen := make(map[string]bool)
	for i, text := range records {
		p, err := u.newPending(text)
		if err != nil {
			return err
		}
		if p.key != nil {
			if seen[string(p.key)] {
				return fmt.Errorf("sumdbtest: %s added twice", p.key)
			}
			seen[string(p.key)] = true
		}
		batch[i] = p
	}
	u.addMu.Lock()
	defer u.addMu.Unlock()
	return u.appendBatch(batch, false)
}

// AddModule appends the record for path@version with the given go.sum hashes
// ("h1:..."): "path version zipHash\npath version/go.mod modHash\n".
func (u *Upstream) AddModule(path, version, zipHash, modHash string) error {
	if err := module.Check(path, version); err != nil {
		return fmt.Errorf("sumdbtest: %v", err)
	}
	return u.Add(fmt.Appendf(nil, "%s %s %s\n%s %s/go.mod %s\n", path, version, zipHash, path, version, modHash))
}

// AddDuplicate appends a record for the same module@version as record id but
// with different hashes (every "h1:" hash has its first character changed),
// as a misbehaving log might, and returns the new record's id. The log stays
// honestly signed; lookups of that module@version keep answering with the
// first record.
func (u *Upstream) AddDuplicate(id int64) (int64, error) {
	u.addMu.Lock()
	defer u.addMu.Unlock()
	text := u.Record(id)
	if text == nil {
		return 0, fmt.Errorf("sumdbtest: no record %d", id)
	}
	if recordKey(text) == nil {
		return 0, fmt.Errorf("sumdbtest: record %d has no module@version", id)
	}
	dup := alterHashes(text, -1)
	p, err := u.newPending(dup)
	if err != nil {
		return 0, err
	}
	newID := u.Size()
	if err := u.appendBatch([]pending{p}, true); err != nil {
		return 0, err
	}
	return newID, nil
}

// appendBatch publishes batch at the end of the log. The caller holds addMu.
// Unless allowDup, it first checks that no key is already in the log.
func (u *Upstream) appendBatch(batch []pending, allowDup bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !allowDup {
		for _, p := range batch {
			if p.key == nil {
				continue
			}
			if _, ok := u.lookupLocked(p.key, p.kh); ok {
				return fmt.Errorf("sumdbtest: %s is already in the log", p.key)
			}
		}
	}
	for _, p := range batch {
		id := int64(len(u.records))
		hs, err := tlog.StoredHashesForRecordHash(id, p.hash, (*lockedHashes)(u))
		if err != nil {
			return fmt.Errorf("sumdbtest: %v", err) // cannot happen
		}
		u.hashes = append(u.hashes, hs...)
		u.records = append(u.records, u.storeLocked(p.text))
		if p.key != nil {
			u.indexLocked(p.key, p.kh, id)
		}
	}
	return nil
}

// chunkSize is the size of the arena chunks record text is copied into.
const chunkSize = 4 << 20

// storeLocked copies text into the arena and returns the copy, with its
// capacity clipped so that nothing can append into the arena through it.
func (u *Upstream) storeLocked(text []byte) []byte {
	if len(text) > chunkSize/8 {
		return bytes.Clone(text)
	}
	if cap(u.arena)-len(u.arena) < len(text) {
		u.arena = make([]byte, 0, chunkSize)
	}
	n := len(u.arena)
	u.arena = append(u.arena, text...)
	return u.arena[n:len(u.arena):len(u.arena)]
}

// indexLocked records that key (with maphash kh) is at id, unless the key is
// already known (a duplicate keeps pointing at the first record).
func (u *Upstream) indexLocked(key []byte, kh uint64, id int64) {
	old, ok := u.index[kh]
	if !ok {
		u.index[kh] = id
		return
	}
	if bytes.Equal(recordKey(u.records[old]), key) {
		return
	}
	if _, ok := u.overflow[string(key)]; !ok {
		u.overflow[string(key)] = id
	}
}

// lookupLocked returns the id of the first record for key.
func (u *Upstream) lookupLocked(key []byte, kh uint64) (int64, bool) {
	id, ok := u.index[kh]
	if !ok {
		return 0, false
	}
	if bytes.Equal(recordKey(u.records[id]), key) {
		return id, true
	}
	id, ok = u.overflow[string(key)]
	return id, ok
}

// Lookup returns the id of the (first) record for path@version.
func (u *Upstream) Lookup(path, version string) (int64, bool) {
	key := []byte(path + "@" + version)
	kh := maphash.Bytes(u.seed, key)
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.lookupLocked(key, kh)
}

// Module returns the module path and version of record id, as found in its
// first line. It returns ok == false if there is no such record or it does
// not look like a go.sum record.
func (u *Upstream) Module(id int64) (path, version string, ok bool) {
	key := recordKey(u.Record(id))
	if key == nil {
		return "", "", false
	}
	p, v, _ := bytes.Cut(key, []byte("@"))
	return string(p), string(v), true
}

// Size returns the number of records in the log.
func (u *Upstream) Size() int64 {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return int64(len(u.records))
}

// Record returns a copy of the text of record id, or nil if there is none.
func (u *Upstream) Record(id int64) []byte {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if id < 0 || id >= int64(len(u.records)) {
		return nil
	}
	return bytes.Clone(u.records[id])
}

// Tree returns the current tree: its size and root hash.
func (u *Upstream) Tree() tlog.Tree {
	u.mu.RLock()
	defer u.mu.RUnlock()
	t, err := u.treeLocked(int64(len(u.records)))
	if err != nil {
		panic(err) // cannot happen
	}
	return t
}

// treeLocked returns the tree of the first n records.
func (u *Upstream) treeLocked(n int64) (tlog.Tree, error) {
	if n < 0 || n > int64(len(u.records)) {
		return tlog.Tree{}, fmt.Errorf("sumdbtest: no tree of size %d (log has %d records)", n, len(u.records))
	}
	h, err := tlog.TreeHash(n, (*lockedHashes)(u))
	if err != nil {
		return tlog.Tree{}, err
	}
	return tlog.Tree{N: n, Hash: h}, nil
}

// HashReader returns a tlog.HashReader over the log's stored hashes (as they
// are when ReadHashes is called), for computing proofs in tests.
func (u *Upstream) HashReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		u.mu.RLock()
		defer u.mu.RUnlock()
		return (*lockedHashes)(u).ReadHashes(indexes)
	})
}

// SignedHead returns the signed note for the current tree:
// "go.sum database tree\n<N>\n<base64 root>\n", a blank line and the
// signature line. Notes are cached per tree size.
func (u *Upstream) SignedHead() []byte {
	b, err := u.SignedHeadAt(u.Size())
	if err != nil {
		panic(err) // cannot happen
	}
	return b
}

// SignedHeadAt returns the signed note for the tree of the first n records,
// which is what a caching proxy still serving an old head would answer.
func (u *Upstream) SignedHeadAt(n int64) ([]byte, error) {
	u.mu.RLock()
	if b, ok := u.heads[n]; ok {
		u.mu.RUnlock()
		return b, nil
	}
	tree, err := u.treeLocked(n)
	u.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	b, err := u.sign(tree, u.signer)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.heads[n] = b
	u.mu.Unlock()
	return b, nil
}

// sign returns the note for tree signed by s.
func (u *Upstream) sign(tree tlog.Tree, s note.Signer) ([]byte, error) {
	b, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tree))}, s)
	if err != nil {
		return nil, fmt.Errorf("sumdbtest: signing: %v", err)
	}
	return b, nil
}

// Fork returns a new Upstream with the same name and signing key whose log
// starts with the first keep records of u and is empty after them: records
// added to it from then on (AddSynthetic uses paths of its own) make a
// history that u's signed heads are not consistent with. Present it at u's
// URL with SetFault(Fault{Kind: FaultFork, Fork: f}).
func (u *Upstream) Fork(keep int64) (*Upstream, error) {
	f, err := newUpstream(u.name, u.skey, u.vkey)
	if err != nil {
		return nil, err
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if keep < 0 || keep > int64(len(u.records)) {
		return nil, fmt.Errorf("sumdbtest: cannot keep %d of %d records", keep, len(u.records))
	}
	f.hashes = append([]tlog.Hash(nil), u.hashes[:tlog.StoredHashCount(keep)]...)
	f.records = append([][]byte(nil), u.records[:keep]...) // arena text is immutable
	for id, text := range f.records {
		if key := recordKey(text); key != nil {
			f.indexLocked(key, maphash.Bytes(f.seed, key), int64(id))
		}
	}
	return f, nil
}

// serverOps implements sumdb.ServerOps for an Upstream, applying the fault of
// the request being served (see faultFor).
type serverOps struct{ u *Upstream }

func (o serverOps) Signed(ctx context.Context) ([]byte, error) {
	u := o.u
	f := u.faultFor(ctx)
	switch f.Kind {
	case FaultBadSignature, FaultUnknownKey:
		s := u.badSigner
		if f.Kind == FaultUnknownKey {
			s = u.otherSigner
		}
		u.mu.RLock()
		tree, err := u.treeLocked(int64(len(u.records)))
		u.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		return u.sign(tree, s)
	case FaultStaleHead:
		return u.SignedHeadAt(min(f.N, u.Size()))
	case FaultCachedHeads:
		if st, ok := ctx.Value(stateKey{}).(*requestState); ok && st.lookup {
			return u.SignedHeadAt(cachedSize(st.id, u.Size()))
		}
	}
	return u.SignedHead(), nil
}

func (o serverOps) ReadRecords(ctx context.Context, id, n int64) ([][]byte, error) {
	u := o.u
	f := u.faultFor(ctx)
	u.mu.RLock()
	defer u.mu.RUnlock()
	size := int64(len(u.records))
	if id < 0 || n < 0 || id+n > size {
		return nil, os.ErrNotExist
	}
	out := append([][]byte(nil), u.records[id:id+n]...)
	switch f.Kind {
	case FaultAlterRecord:
		if f.ID >= id && f.ID < id+n {
			out[f.ID-id] = alterHashes(out[f.ID-id], 1)
		}
	case FaultWrongLookup:
		if isLookup(ctx) && n == 1 {
			if size > 1 {
				out[0] = u.records[(id+1)%size]
			} else {
				out[0] = alterHashes(out[0], 1)
			}
		}
	}
	return out, nil
}

func (o serverOps) Lookup(ctx context.Context, m module.Version) (int64, error) {
	id, ok := o.u.Lookup(m.Path, m.Version)
	if !ok {
		return 0, os.ErrNotExist
	}
	if st, ok := ctx.Value(stateKey{}).(*requestState); ok {
		st.id = id
	}
	return id, nil
}

// cachedSize is the tree size of the head FaultCachedHeads serves with
// record id of a log of n records: fixed per record, in [id+1, n].
func cachedSize(id, n int64) int64 {
	x := uint64(id)*0x9e3779b97f4a7c15 + 1
	x ^= x >> 31
	return id + 1 + int64(x%uint64(n-id))
}

func (o serverOps) ReadTileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	u := o.u
	f := u.faultFor(ctx)
	u.mu.RLock()
	data, err := tlog.ReadTileData(t, (*lockedHashes)(u))
	u.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if f.Kind == FaultFlipTileByte && t.L == f.L && (f.N < 0 || t.N == f.N) {
		data[f.Offset%len(data)] ^= 0xff
	}
	return data, nil
}

// alterHashes returns a copy of text with the first character after "h1:"
// changed in the first n lines (all lines if n < 0). The result is still
// valid record text.
func alterHashes(text []byte, n int) []byte {
	out := bytes.Clone(text)
	marker := []byte(" h1:")
	for i, line := 0, 0; (n < 0 || line < n) && i < len(out); line++ {
		end := bytes.IndexByte(out[i:], '\n')
		if end < 0 {
			end = len(out) - i
		}
		if j := bytes.Index(out[i:i+end], marker); j >= 0 {
			c := &out[i+j+len(marker)]
			if *c == 'A' {
				*c = 'B'
			} else {
				*c = 'A'
			}
		}
		i += end + 1
	}
	return out
}
