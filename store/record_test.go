package store

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestRecordRoundTrip(t *testing.T) {
	canonical := []byte("golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=\n" +
		"golang.org/x/text v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=\n")
	for _, tc := range []struct {
		name      string
		data      []byte
		path, ver string
		compact   bool
	}{
		{"canonical", canonical, "golang.org/x/text", "v0.3.0", true},
		{"trailing space", append(bytes.TrimSuffix(canonical, []byte("\n")), " \n"...), "golang.org/x/text", "v0.3.0", false},
		{"no final newline", bytes.TrimSuffix(canonical, []byte("\n")), "golang.org/x/text", "v0.3.0", false},
		{"h2 hash", bytes.Replace(canonical, []byte(" h1:"), []byte(" h2:"), 1), "golang.org/x/text", "v0.3.0", false},
		{"one line", []byte("example.com/m v1.0.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=\n"), "example.com/m", "v1.0.0", false},
		{"short hash", []byte("a v1 h1:AAAA\na v1/go.mod h1:AAAA\n"), "a", "v1", false},
		{"long hash", bytes.Replace(canonical, []byte("RWg="), []byte("RWgA="), 1), "golang.org/x/text", "v0.3.0", false},
		{"long hash, short path", []byte("golang.org/x/tex v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWgA=\ngolang.org/x/tex v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=\n"), "golang.org/x/tex", "v0.3.0", false},
		{"line break in hash", bytes.Replace(canonical, []byte("RWg="), []byte("RW\ng"), 1), "golang.org/x/text", "v0.3.0", false},
		{"unpadded hash", bytes.Replace(canonical, []byte("RWg="), []byte("RWgA"), 1), "golang.org/x/text", "v0.3.0", false},
		{"NUL in path", []byte("a\x00b v1 h1:x\n"), "", "", false},
		{"invalid UTF-8 in version", []byte("a v1\xff h1:x\n"), "", "", false},
		{"unicode path", []byte("example.com/caf\u00e9 v1.0.0 h1:x\n"), "example.com/caf\u00e9", "v1.0.0", false},
		{"garbage", []byte("x\n"), "", "", false},
		{"other path on line 2", bytes.Replace(canonical, []byte("text v0.3.0/go.mod"), []byte("tent v0.3.0/go.mod"), 1), "golang.org/x/text", "v0.3.0", false},
		// Base64 with non-zero padding bits decodes to the same bytes as the
		// canonical spelling; only re-encoding shows the difference.
		{"non-canonical base64", bytes.Replace(canonical, []byte("RWg="), []byte("RWh="), 1), "golang.org/x/text", "v0.3.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, v, h, raw := EncodeRecord(tc.data)
			if p != tc.path || v != tc.ver {
				t.Errorf("path, version = %q, %q; want %q, %q", p, v, tc.path, tc.ver)
			}
			if compact := raw == nil; compact != tc.compact {
				t.Errorf("compact = %v, want %v", compact, tc.compact)
			}
			if tc.compact && len(h) != HashesSize {
				t.Errorf("len(hashes) = %d", len(h))
			}
			if got, err := DecodeRecord(p, v, h, raw); err != nil || !bytes.Equal(got, tc.data) {
				t.Errorf("round trip:\n got %q, %v\nwant %q", got, err, tc.data)
			}
		})
	}
}

func TestLookupKeySeparatesFields(t *testing.T) {
	if LookupKey("a", "bc") == LookupKey("ab", "c") {
		t.Fatal("path/version boundary does not change the key")
	}
	if LookupKey("a", "v1") != LookupKey("a", "v1") {
		t.Fatal("key not deterministic")
	}
}

// FuzzRecordRoundTrip: whatever bytes an upstream sends, the store gives back
// exactly those bytes.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add([]byte("golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=\n" +
		"golang.org/x/text v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=\n"))
	f.Add([]byte("a b h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\na b/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, v, h, raw := EncodeRecord(data)
		if got, err := DecodeRecord(p, v, h, raw); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip of %q gave %q, %v", data, got, err)
		}
		// What goes into text columns is text Postgres accepts.
		for _, f := range []string{p, v} {
			if !utf8.ValidString(f) || strings.ContainsFunc(f, unicode.IsControl) {
				t.Fatalf("%q yields path, version %q, %q", data, p, v)
			}
		}
	})
}

// BenchmarkRecordRow is the decoding every record read pays (lookups that
// miss the cache, verify, proofs); -benchmem shows its allocations.
func BenchmarkRecordRow(b *testing.B) {
	data := []byte("golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=\ngolang.org/x/text v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=\n")
	path, version, hashes, raw := EncodeRecord(data)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RecordRow("sum.example", 123456789, path, version, hashes, raw); err != nil {
			b.Fatal(err)
		}
	}
}
