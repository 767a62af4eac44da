package postgres

import (
	"encoding/binary"
	"io"
	"math"
	"sync/atomic"

	"github.com/sumkeep/sumkeep/store"
)

// CopyRecordsSQL takes rows in COPY's binary format from RecordCopy.
const CopyRecordsSQL = `COPY records (id, key, log_id, path, version, hashes, raw) FROM STDIN (FORMAT binary)`

// RecordCopy returns the COPY data for recs in log logID, exactly as Commit
// writes it (the same reader, keying records as it streams them) but with
// no checks at all: for measuring a plain COPY of the
// same rows (make bench), never for storing data.
func RecordCopy(logID int16, recs []store.Record) io.Reader {
	return &recordReader{recs: recs, logID: logID}
}

// recordReader streams records as COPY binary rows, encoding them as the
// server reads (so Go's work overlaps Postgres's), or all at once ahead of
// the COPY (encodeAll, for staged batches). Writing the format
// directly instead of through pgx's per-value type planning saves most of
// the client's CPU in a bulk sync, which on a small machine is CPU the
// database needs.
//
// The format: a signature, flags and header-extension length; each row a
// 16-bit field count, then per field a 32-bit length (-1 for NULL) and the
// value in the type's binary form (big-endian integers, raw text and bytea
// bytes); a 16-bit -1 ends the data.
type recordReader struct {
	recs  []store.Record
	skip  map[int64]bool // stored already
	logID int16
	// If keys is not nil, the reader keeps each record's lookup key in it,
	// then publishes how many it has keyed in keyedUpto and signals keyed.
	keys      []int64
	keyedUpto atomic.Int64
	keyed     chan struct{}

	next   int
	buf    []byte
	off    int
	header bool
	done   bool
}

var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

func (r *recordReader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if r.done {
			return 0, io.EOF
		}
		r.fill(64 << 10)
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// encodeAll encodes every row now; Read then only hands out the bytes.
//
// The buffer is sized for the rows as canonical records (see fill) and
// grows for any other: a flat 256 bytes a row allocated and zeroed 4 MiB a
// 16,384-record batch for rows of about 160, the sync's largest
// allocation.
func (r *recordReader) encodeAll() {
	n := len(copySignature) + 8 + 2
	for i := range r.recs {
		n += canonicalRowSize + len(r.recs[i].Path) + len(r.recs[i].Version)
	}
	r.buf = make([]byte, 0, n)
	for !r.done {
		r.fill(math.MaxInt)
	}
}

// fill encodes the next rows, about size bytes of them, in place of those
// read.
func (r *recordReader) fill(size int) {
	b := r.buf[:0]
	r.off = 0
	if !r.header {
		b = append(b, copySignature...)
		b = binary.BigEndian.AppendUint32(b, 0) // flags
		b = binary.BigEndian.AppendUint32(b, 0) // header extension
		r.header = true
	}
	for len(b) < size && r.next < len(r.recs) {
		i := r.next
		r.next++
		rec := &r.recs[i]
		key := store.LookupKey(rec.Path, rec.Version)
		if r.keys != nil {
			r.keys[i] = key
		}
		if r.skip[rec.ID] {
			continue
		}
		b = binary.BigEndian.AppendUint16(b, 7)
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(rec.ID))
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(key))
		b = binary.BigEndian.AppendUint32(b, 2)
		b = binary.BigEndian.AppendUint16(b, uint16(r.logID))
		b = appendField(b, []byte(rec.Path))
		b = appendField(b, []byte(rec.Version))
		// A canonical record is its hashes, decoded straight into the
		// stream, any other record its raw bytes. Commit checks beside
		// the COPY that Path and Version are the record's own, and rolls
		// back if not.
		b = binary.BigEndian.AppendUint32(b, store.HashesSize)
		var canonical bool
		if b, canonical = store.AppendHashes(b, rec.Data, rec.Path, rec.Version); canonical {
			b = appendNull(b)
		} else {
			b = appendNull(b[:len(b)-4])
			b = appendField(b, rec.Data)
		}
	}
	if r.next == len(r.recs) {
		b = binary.BigEndian.AppendUint16(b, 0xffff) // end of data
		r.done = true
	}
	r.buf = b
	if r.keys != nil {
		r.keyedUpto.Store(int64(r.next))
		select {
		case r.keyed <- struct{}{}:
		default: // the checker has a signal waiting already
		}
	}
}

// canonicalRowSize is a canonical record's row in fill's encoding, less its
// path and version: the field count, seven field lengths, id, key, log id
// and hashes.
const canonicalRowSize = 2 + 7*4 + 8 + 8 + 2 + store.HashesSize

func appendField(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendNull(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, 0xffffffff)
}
