package store

import "testing"

// TestCheckModule: CheckModule agrees with RecordModule, on its fast path
// and off it.
func TestCheckModule(t *testing.T) {
	for _, tc := range []struct {
		data, path, version string
		ok                  bool
	}{
		{"golang.org/x/text v0.3.0 h1:x\ngolang.org/x/text v0.3.0/go.mod h1:y\n", "golang.org/x/text", "v0.3.0", true},
		{"golang.org/x/text v0.3.0 h1:x\n", "golang.org/x/tent", "v0.3.0", false},
		{"golang.org/x/text v0.3.0 h1:x\n", "golang.org/x/text", "v0.3.1", false},
		{"golang.org/x/text v0.3.0\n", "golang.org/x/text", "v0.3.0", true},
		{"golang.org/x/text v0.3.0", "golang.org/x/text", "v0.3.0", true},          // no newline: off the fast path
		{"golang.org/x/text v0.3.0x h1:x\n", "golang.org/x/text", "v0.3.0", false}, // a longer version
		{"example.com/é v1.0.0 h1:x\n", "example.com/é", "v1.0.0", true},           // not ASCII: off the fast path
		{"example.com/a\tb v1.0.0 h1:x\n", "example.com/a\tb", "v1.0.0", false},    // a control character
		{"no-version\n", "", "", true},                                             // names no module
		{"", "", "", true},
	} {
		r := Record{ID: 7, Path: tc.path, Version: tc.version, Data: []byte(tc.data)}
		p, v := RecordModule(r.Data)
		if want := p == tc.path && v == tc.version; want != tc.ok {
			t.Fatalf("%q: the table disagrees with RecordModule (%q, %q)", tc.data, p, v)
		}
		if err := CheckModule(&r); (err == nil) != tc.ok {
			t.Errorf("CheckModule(%q as %s@%s) = %v, want ok=%v", tc.data, tc.path, tc.version, err, tc.ok)
		}
	}
}
