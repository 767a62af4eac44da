package store

import (
	"bytes"
	"fmt"
)

// CheckModule fails if r's data does not name r.Path@r.Version as
// RecordModule reads it: every store checks this before it indexes a
// record under its path and version.
func CheckModule(r *Record) error {
	if namesModule(r.Data, r.Path, r.Version) {
		return nil
	}
	p, v := RecordModule(r.Data)
	return fmt.Errorf("record %d names %s@%s, not %s@%s", r.ID, p, v, r.Path, r.Version)
}

// namesModule reports whether RecordModule(data) is (path, version),
// without allocating for records that begin "<path> <version> " or
// "<path> <version>\n" with both in printable ASCII (every record of the Go
// checksum database). Anything else is left to RecordModule itself.
func namesModule(data []byte, path, version string) bool {
	n := len(path) + 1 + len(version)
	if path != "" && version != "" && len(data) > n &&
		string(data[:len(path)]) == path && data[len(path)] == ' ' &&
		string(data[len(path)+1:n]) == version && (data[n] == ' ' || data[n] == '\n') &&
		printable(path) && printable(version) {
		return true
	}
	p, v := RecordModule(data)
	return p == path && v == version
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// StoredCheck compares the records a store finds stored under a batch's
// ids with the batch's own: a record stored already (fetched on demand
// earlier) must be the same bytes, and is then not written again.
type StoredCheck struct {
	log  string
	want map[int64][]byte
	have map[int64]bool
}

// NewStoredCheck checks stored rows of log against recs, marking in have
// the ids stored already with the same bytes.
func NewStoredCheck(log string, recs []Record, have map[int64]bool) *StoredCheck {
	want := make(map[int64][]byte, len(recs))
	for _, r := range recs {
		want[r.ID] = r.Data
	}
	return &StoredCheck{log: log, want: want, have: have}
}

// Row checks one stored row, as EncodeRecord split it. Ids that are not the
// batch's (between two ids of a scattered batch) are ignored. A row that
// does not decode is a *CorruptError.
func (c *StoredCheck) Row(id int64, path, version string, hashes, raw []byte) error {
	want, ok := c.want[id]
	if !ok {
		return nil
	}
	r, err := RecordRow(c.log, id, path, version, hashes, raw)
	if err != nil {
		return err
	}
	if !bytes.Equal(r.Data, want) {
		return fmt.Errorf("record %d is stored with other bytes than the log now gives", id)
	}
	c.have[id] = true
	return nil
}
