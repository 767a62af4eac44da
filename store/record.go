package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
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
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) >= 2 {
		path, version = string(f[0]), string(f[1])
	}
	if h, ok := canonicalHashes(data, path, version); ok {
		return path, version, h, nil
	}
	return path, version, nil, bytes.Clone(data)
}

func canonicalHashes(data []byte, path, version string) ([]byte, bool) {
	if path == "" || len(data) != canonicalLen(path, version) {
		return nil, false
	}
	f := bytes.Fields(data)
	if len(f) != 6 || !bytes.HasPrefix(f[2], []byte("h1:")) || !bytes.HasPrefix(f[5], []byte("h1:")) {
		return nil, false
	}
	const b64 = 44 // base64 of 32 bytes
	if len(f[2]) != 3+b64 || len(f[5]) != 3+b64 {
		return nil, false
	}
	h := make([]byte, HashesSize)
	for i, field := range [][]byte{f[2][3:], f[5][3:]} {
		var buf [b64 * 3 / 4]byte // DecodedLen(44): 33, one more than a hash
		n, err := base64.StdEncoding.Decode(buf[:], field)
		if err != nil || n != sha256.Size {
			return nil, false
		}
		copy(h[i*sha256.Size:], buf[:n])
	}
	if !bytes.Equal(DecodeRecord(path, version, h, nil), data) {
		return nil, false
	}
	return h, true
}

func canonicalLen(path, version string) int {
	const b64 = 44 // base64 of 32 bytes
	return 2*(len(path)+1+len(version)) + len(" h1:\n")*2 + len("/go.mod") + 2*b64
}

// DecodeRecord rebuilds record bytes from EncodeRecord's output.
func DecodeRecord(path, version string, hashes, raw []byte) []byte {
	if raw != nil {
		return raw
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
	return b
}

// LookupKey is the 64-bit key stores index records by. It is not unique:
// lookups compare path and version too.
func LookupKey(path, version string) int64 {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write([]byte(version))
	var sum [sha256.Size]byte
	return int64(binary.BigEndian.Uint64(h.Sum(sum[:0])))
}
