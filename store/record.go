package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A checksum database record is two go.sum lines:
//
//	<path> <version> h1:<base64 SHA-256>\n
//	<path> <version>/go.mod h1:<base64 SHA-256>\n
//
// Stores keep such canonical records compactly as path, version and the 64
// hash bytes, and rebuild the exact bytes on read; EncodeRecord only accepts
// the compact form when rebuilding gives back the very same bytes. Any other
// record is kept raw.

// HashesSize is the size of the compact form of a canonical record's hashes.
const HashesSize = 2 * sha256.Size

// EncodeRecord splits record bytes into the module path and version they
// name, and either the 64 hash bytes of a canonical record (raw == nil) or the
// raw bytes of any other record (hashes == nil). A record whose first line
// does not start with a path and a version gets empty ones: it is kept but
// cannot be looked up.
func EncodeRecord(data []byte) (path, version string, hashes, raw []byte) {
	path, version = RecordModule(data)
	hashes, raw = CompactRecord(data, path, version)
	return path, version, hashes, raw
}

// CompactRecord is EncodeRecord for a caller that has the record's path and
// version already; they must be RecordModule(data).
func CompactRecord(data []byte, path, version string) (hashes, raw []byte) {
	if h, ok := AppendHashes(make([]byte, 0, HashesSize), data, path, version); ok {
		return h, nil
	}
	return nil, bytes.Clone(data)
}

// AppendHashes appends the 64 hash bytes of data to dst if data is exactly
// the canonical record for path@version, and reports whether it was; if not,
// dst is returned as it was. It is CompactRecord for a caller encoding many
// records into one buffer.
func AppendHashes(dst, data []byte, path, version string) ([]byte, bool) {
	if path == "" || len(data) != canonicalLen(path, version) {
		return dst, false
	}
	out := dst
	rest := data
	for _, suffix := range []string{" h1:", "/go.mod h1:"} {
		// <path> <version><suffix><44 base64 bytes>\n
		n := len(path) + 1 + len(version)
		if string(rest[:len(path)]) != path || rest[len(path)] != ' ' ||
			string(rest[len(path)+1:n]) != version || string(rest[n:n+len(suffix)]) != suffix {
			return dst, false
		}
		rest = rest[n+len(suffix):]
		if rest[b64Len] != '\n' {
			return dst, false
		}
		var ok bool
		if out, ok = appendHash(out, rest[:b64Len]); !ok {
			return dst, false
		}
		rest = rest[b64Len+1:]
	}
	return out, true
}

// RecordModule returns the first two space-separated fields of a record's
// first line: the module path and version it is for, or empty strings.
func RecordModule(data []byte) (path, version string) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	p, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(p) == 0 {
		return "", ""
	}
	v, _, _ := bytes.Cut(rest, []byte(" "))
	if len(v) == 0 || !plainText(p) || !plainText(v) {
		return "", ""
	}
	return string(p), string(v)
}

// plainText reports whether b is valid UTF-8 without control characters:
// what a module path or version may hold, and what a text column accepts
// (a record that is not is still kept, raw, but not indexed).
func plainText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			return utf8.Valid(b) && !bytes.ContainsFunc(b, unicode.IsControl)
		}
	}
	return true
}

const b64Len = 44 // base64 of a SHA-256 hash

// strictBase64 is made once: Strict returns a copy of the whole Encoding
// (its 256-byte decode map included), which a bulk sync made for every hash
// it decoded, two million times a million records (runtime.memmove under
// appendHash: 0.17 s of a 3.99 s sync profile).
var strictBase64 = base64.StdEncoding.Strict()

// appendHash decodes a 44-byte base64 hash and appends it to dst, accepting
// only the canonical spelling (the decoder alone would accept non-zero
// padding bits and skip newlines).
func appendHash(dst, field []byte) ([]byte, bool) {
	// Strict decoding rejects non-zero padding bits, and without line
	// breaks (which any decoding skips) 44 bytes decode to 32 only as
	// 43 characters and one "=": then the field is the hash's one
	// spelling. (A plain loop: bytes.ContainsAny builds its set anew on
	// every call, which a bulk sync pays two million times.)
	for _, c := range field {
		if c == '\r' || c == '\n' {
			return dst, false
		}
	}
	var buf [b64Len * 3 / 4]byte // DecodedLen: 33, one more than a hash
	n, err := strictBase64.Decode(buf[:], field)
	if err != nil || n != sha256.Size {
		return dst, false
	}
	return append(dst, buf[:n]...), true
}

func canonicalLen(path, version string) int {
	return 2*(len(path)+1+len(version)) + len(" h1:\n")*2 + len("/go.mod") + 2*b64Len
}

// DecodeRecord rebuilds record bytes from EncodeRecord's output. Its input
// comes from a database row, which someone other than a store may have
// written, so it checks that the row is exactly what EncodeRecord gives for
// some record: either hashes of HashesSize bytes for a path and version
// that the rebuilt bytes name, or (hashes == nil) raw bytes that name path
// and version and are not a canonical record (which would have been kept
// compact). Anything else is an error saying what is wrong with the row;
// stores wrap it in a *CorruptError.
func DecodeRecord(path, version string, hashes, raw []byte) ([]byte, error) {
	if hashes == nil {
		if p, v := RecordModule(raw); p != path || v != version {
			return nil, fmt.Errorf("raw record names %q@%q, not %q@%q", p, v, path, version)
		}
		if _, ok := AppendHashes(nil, raw, path, version); ok {
			return nil, errors.New("raw record is canonical: it would have been kept as hashes")
		}
		return raw, nil
	}
	if raw != nil {
		return nil, errors.New("both hashes and raw are set")
	}
	if len(hashes) != HashesSize {
		return nil, fmt.Errorf("hashes are %d bytes, want %d", len(hashes), HashesSize)
	}
	if path == "" || !plainText([]byte(path)) || !plainText([]byte(version)) ||
		strings.ContainsRune(path, ' ') || strings.ContainsRune(version, ' ') || version == "" {
		return nil, fmt.Errorf("%q@%q is not a module path and version a record can name", path, version)
	}
	b := make([]byte, 0, canonicalLen(path, version))
	b = append(b, path...)
	b = append(b, ' ')
	b = append(b, version...)
	b = append(b, " h1:"...)
	b = base64.StdEncoding.AppendEncode(b, hashes[:sha256.Size])
	b = append(b, '\n')
	b = append(b, path...)
	b = append(b, ' ')
	b = append(b, version...)
	b = append(b, "/go.mod h1:"...)
	b = base64.StdEncoding.AppendEncode(b, hashes[sha256.Size:])
	b = append(b, '\n')
	return b, nil
}

// LookupKey is the 64-bit key stores index records by. It is not unique:
// lookups compare path and version too.
func LookupKey(path, version string) int64 {
	// Hashed from a stack buffer when it fits (nearly always): a full sync
	// keys every record, and sha256.New would allocate for each.
	var buf [256]byte
	b := append(append(append(buf[:0], path...), 0), version...)
	sum := sha256.Sum256(b)
	return int64(binary.BigEndian.Uint64(sum[:]))
}
