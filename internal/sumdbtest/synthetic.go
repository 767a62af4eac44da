package sumdbtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// synthState is where AddSynthetic continues: the next record is version
// number ver of module number gen<<32 | mod.
type synthState struct {
	gen uint64 // generation, unique per Upstream (and Fork) in the process
	mod uint64 // module number within the generation
	ver int    // versions of module mod already emitted
}

// generations hands out generation numbers, so that no two Upstreams of a
// process (a log and its fork in particular) generate the same module paths.
var generations atomic.Uint64

func newGeneration() (uint64, error) {
	g := generations.Add(1) - 1
	if g >= 1<<16 {
		return 0, errors.New("sumdbtest: too many Upstreams in one process")
	}
	return g, nil
}

// synthBatch is how many synthetic records are generated and published at a
// time; handlers can run between batches.
const synthBatch = 1 << 14

// AddSynthetic appends n well-formed, fake go.sum records, quickly (a million
// take a few seconds): modules with distinct paths such as
// "example.com/mod/0f3a9c2e71b4" (20 to 45 bytes, some with a /v2 suffix),
// with one to four versions each (releases like v1.4.2, pre-releases,
// pseudo-versions like v0.0.0-20240314092653-abcdef123456 and, rarely,
// +incompatible ones), in the exact canonical form
// "<path> <version> h1:<44 chars>\n<path> <version>/go.mod h1:<44 chars>\n".
// The hashes are base64 SHA-256 sums of the module number and version.
// Records are generated deterministically from the order in which Upstreams
// were created in the process, and paths never repeat within a process.
// Records appear to HTTP clients in batches as they are added.
func (u *Upstream) AddSynthetic(n int) error {
	if n < 0 {
		return errors.New("sumdbtest: negative count")
	}
	u.addMu.Lock()
	defer u.addMu.Unlock()
	u.reserve(n)

	// A producer plans and generates batches (in parallel) while this
	// goroutine publishes the previous one; two jobs circulate.
	workers := max(1, min(runtime.GOMAXPROCS(0), 8))
	free := make(chan *synthJob, 2)
	for range 2 {
		free <- &synthJob{bufs: make([]synthBuf, workers)}
	}
	ready := make(chan *synthJob)
	var planErr error
	go func() {
		defer close(ready)
		for n > 0 {
			job := <-free
			k := min(n, synthBatch)
			n -= k
			if planErr = u.planSynthetic(job, k); planErr != nil {
				return
			}
			job.generate(u.seed)
			ready <- job
		}
	}()
	var err error
	for job := range ready {
		if err == nil {
			err = u.appendBatch(job.batch, false)
		}
		free <- job
	}
	if err == nil {
		err = planErr
	}
	return err
}

// reserve makes room for n more records, so that appending does not
// repeatedly copy large slices and grow the index.
func (u *Upstream) reserve(n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	size := int64(len(u.records))
	u.records = slices.Grow(u.records, n)
	u.hashes = slices.Grow(u.hashes, int(tlog.StoredHashCount(size+int64(n))-int64(len(u.hashes))))
	if n > len(u.index) && n > 1<<16 {
		index := make(map[uint64]int64, len(u.index)+n)
		maps.Copy(index, u.index)
		u.index = index
	}
}

// A synthJob is one batch of synthetic records being generated.
type synthJob struct {
	plan  []synthRec
	batch []pending
	bufs  []synthBuf // one per worker
}

// planSynthetic sets job.plan to the next k synthetic records: which module
// and version each is. The caller holds addMu.
func (u *Upstream) planSynthetic(job *synthJob, k int) error {
	job.plan = job.plan[:0]
	s := &u.synth
	for range k {
		if s.mod >= 1<<32 {
			return errors.New("sumdbtest: synthetic module numbers exhausted")
		}
		m := s.gen<<32 | s.mod
		job.plan = append(job.plan, synthRec{mod: m, ver: s.ver})
		s.ver++
		if s.ver >= synthVersions(mix64(m)) {
			s.mod++
			s.ver = 0
		}
	}
	return nil
}

// generate fills job.batch from job.plan, with one goroutine per buffer.
func (job *synthJob) generate(seed maphash.Seed) {
	k := len(job.plan)
	job.batch = slices.Grow(job.batch[:0], k)[:k]
	workers := len(job.bufs)
	per := (k + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*per, min(k, (w+1)*per)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func(b *synthBuf, lo, hi int) {
			defer wg.Done()
			b.generate(seed, job.plan[lo:hi], job.batch[lo:hi])
		}(&job.bufs[w], lo, hi)
	}
	wg.Wait()
}

// synthRec identifies a synthetic record: version number ver of module mod.
type synthRec struct {
	mod uint64
	ver int
}

// synthBuf is one generator's scratch space, reused across batches
// (appendBatch copies what it keeps).
type synthBuf struct {
	text []byte
	keys []byte
	path []byte
	vers []byte
	sum  [13]byte
}

// generate fills out[i] with the record described by plan[i].
func (b *synthBuf) generate(seed maphash.Seed, plan []synthRec, out []pending) {
	b.text, b.keys = b.text[:0], b.keys[:0]
	type span struct{ t0, t1, k0, k1 int }
	spans := make([]span, len(plan))
	for i, p := range plan {
		r := mix64(p.mod)
		b.path = synthPath(b.path[:0], p.mod, r)
		b.vers = synthVersion(b.vers[:0], p.mod, r, p.ver)

		t0 := len(b.text)
		b.text = append(b.text, b.path...)
		b.text = append(b.text, ' ')
		b.text = append(b.text, b.vers...)
		b.text = append(b.text, " h1:"...)
		b.text = b.appendHash(b.text, p, 'z')
		b.text = append(b.text, '\n')
		b.text = append(b.text, b.path...)
		b.text = append(b.text, ' ')
		b.text = append(b.text, b.vers...)
		b.text = append(b.text, "/go.mod h1:"...)
		b.text = b.appendHash(b.text, p, 'm')
		b.text = append(b.text, '\n')

		k0 := len(b.keys)
		b.keys = append(b.keys, b.path...)
		b.keys = append(b.keys, '@')
		b.keys = append(b.keys, b.vers...)
		spans[i] = span{t0, len(b.text), k0, len(b.keys)}
	}
	// Slice only now: appends above may have moved the buffers.
	for i, s := range spans {
		text, key := b.text[s.t0:s.t1:s.t1], b.keys[s.k0:s.k1:s.k1]
		out[i] = pending{
			text: text,
			hash: tlog.RecordHash(text),
			key:  key,
			kh:   maphash.Bytes(seed, key),
		}
	}
}

// appendHash appends the base64 SHA-256 of (module, version, tag).
func (b *synthBuf) appendHash(dst []byte, p synthRec, tag byte) []byte {
	binary.BigEndian.PutUint64(b.sum[0:], p.mod)
	binary.BigEndian.PutUint32(b.sum[8:], uint32(p.ver))
	b.sum[12] = tag
	h := sha256.Sum256(b.sum[:])
	return base64.StdEncoding.AppendEncode(dst, h[:])
}

// Bits of mix64(module) used for choices.
const (
	bitsTemplate = 0  // 3 bits: path template
	bitsVersions = 3  // 2 bits: number of versions - 1
	bitsStyle    = 5  // 2 bits: version style
	bitsMajor    = 7  // 1 bit: major version 0 or 1
	bitsMinor    = 8  // 5 bits: minor version
	bitsIncompat = 13 // 4 bits: 0 means +incompatible
	bitsTime     = 17 // 25 bits: seconds into 2024 for pseudo-versions
)

func bitField(r uint64, shift, width uint) uint64 { return r >> shift & (1<<width - 1) }

// synthVersions returns the number of versions of the module with choice
// bits r.
func synthVersions(r uint64) int { return 1 + int(bitField(r, bitsVersions, 2)) }

// pathTemplates are the shapes of synthetic module paths: prefix, 12 hex
// digits, suffix. Lengths run from 23 to 41 bytes.
var pathTemplates = [8]struct{ prefix, suffix string }{
	{"example.com/mod/", ""},
	{"example.com/mod/", ""},
	{"golang.example.org/x/", ""},
	{"github.com/example-org/", "/v2"},
	{"gitlab.example.com/grp/sub/", ""},
	{"exmpl.io/m/", ""},
	{"example.com/mod/", "/cmd/tool"},
	{"github.com/long-org-name/", "/api"},
}

const hexDigits = "0123456789abcdef"

// synthPath appends the path of module m (choice bits r).
func synthPath(dst []byte, m, r uint64) []byte {
	t := pathTemplates[bitField(r, bitsTemplate, 3)]
	dst = append(dst, t.prefix...)
	id := perm48(m & (1<<48 - 1))
	for i := 11; i >= 0; i-- {
		dst = append(dst, hexDigits[id>>(4*uint(i))&15])
	}
	return append(dst, t.suffix...)
}

// synthVersion appends version number j of module m (choice bits r).
func synthVersion(dst []byte, m, r uint64, j int) []byte {
	major := bitField(r, bitsMajor, 1)
	t := pathTemplates[bitField(r, bitsTemplate, 3)]
	v2 := t.suffix == "/v2"
	if v2 {
		major = 2
	}
	minor := bitField(r, bitsMinor, 5)
	style := bitField(r, bitsStyle, 2)
	if !v2 && bitField(r, bitsIncompat, 4) == 0 {
		// v3.M.j+incompatible
		dst = append(dst, "v3."...)
		dst = strconv.AppendUint(dst, minor, 10)
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, int64(j), 10)
		return append(dst, "+incompatible"...)
	}
	switch {
	case style == 2: // pseudo-versions only
		if !v2 {
			major = 0
		}
		dst = append(dst, 'v')
		dst = strconv.AppendUint(dst, major, 10)
		dst = append(dst, ".0.0-"...)
		sec := int64(bitField(r, bitsTime, 25)) + int64(j)*86400
		dst = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(sec)*time.Second).AppendFormat(dst, "20060102150405")
		dst = append(dst, '-')
		c := mix64(m ^ uint64(j+1)<<52)
		for i := 11; i >= 0; i-- {
			dst = append(dst, hexDigits[c>>(4*uint(i))&15])
		}
		return dst
	case style == 3 && j == 0: // a release candidate before the releases
		dst = append(dst, 'v')
		dst = strconv.AppendUint(dst, major, 10)
		dst = append(dst, '.')
		dst = strconv.AppendUint(dst, minor+1, 10)
		return append(dst, ".0-rc.1"...)
	default: // vMAJOR.MINOR.j
		dst = append(dst, 'v')
		dst = strconv.AppendUint(dst, major, 10)
		dst = append(dst, '.')
		dst = strconv.AppendUint(dst, minor, 10)
		dst = append(dst, '.')
		return strconv.AppendInt(dst, int64(j), 10)
	}
}

// mix64 is the SplitMix64 finalizer: a well-mixed function of x.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// perm48 is a bijection on [0, 2⁴⁸) that looks random, so distinct module
// numbers get distinct, unordered path ids.
func perm48(x uint64) uint64 {
	const mask = 1<<48 - 1
	for _, k := range [...]uint64{0x9e3779b97f4b, 0xbf58476d1ce5, 0x94d049bb1331} { // odd multipliers
		x ^= x >> 24
		x = x * k & mask
	}
	return x ^ x>>24
}
