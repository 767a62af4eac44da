package mirror

import (
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// TestRecordModule: the allocation-free path and version of a full sync's
// records are store.RecordModule's, for canonical records and odd ones.
func TestRecordModule(t *testing.T) {
	for _, text := range []string{
		"example.com/m v1.0.0 h1:abc=\nexample.com/m v1.0.0/go.mod h1:def=\n",
		"example.com/m v1.0.0\n",
		"example.com/m\n v1.0.0 x\n",
		"example.com/m  v1.0.0 x\n",
		" example.com/m v1.0.0 x\n",
		"exämple.com/m v1.0.0 x\n",
		"example.com/m v1\x01 x\n",
		"example.com/m v1.0.0 ",
		"nospace\n",
		"",
	} {
		p, v := recordModule(text, []byte(text))
		wp, wv := store.RecordModule([]byte(text))
		if p != wp || v != wv {
			t.Errorf("recordModule(%q) = %q, %q; want %q, %q", text, p, v, wp, wv)
		}
	}
}

// TestLeafHash: leafHash is tlog.RecordHash, whatever the buffer held
// before.
func TestLeafHash(t *testing.T) {
	var buf []byte
	for _, text := range []string{"", "a\n", "golang.org/x/mod v0.1.0 h1:x\ngolang.org/x/mod v0.1.0/go.mod h1:y\n", "b\n"} {
		var h tlog.Hash
		h, buf = leafHash(buf, []byte(text))
		if want := tlog.RecordHash([]byte(text)); h != want {
			t.Errorf("leafHash(%q) = %v, want %v", text, h, want)
		}
	}
}
