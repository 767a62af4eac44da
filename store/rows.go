package store

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Rows read from a database are hostile input: the database may have been
// altered by hand, damaged, or (a bundle) made by someone else. Stores
// check every row with the functions below before they use a byte of it,
// and report a row that is not one a store writes as a *CorruptError.

// ErrCorrupt reports a stored row that no store writes.
var ErrCorrupt = errors.New("the store holds a row sumkeep does not write (altered or damaged)")

// CorruptError names a stored row that is not one a store writes.
type CorruptError struct {
	Log   string // the log the row belongs to
	Table string // "records", "tiles", "heads", ...
	Row   string // which row of it: "id 5", "level 1 idx 3", "size 300"
	Err   error  // what is wrong with it
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("log %s: table %s, row %s: %v: %v", e.Log, e.Table, e.Row, e.Err, ErrCorrupt)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

func corrupt(log, table, row string, err error) error {
	return &CorruptError{Log: log, Table: table, Row: row, Err: err}
}

// RecordRow turns a row of a records table (id, path, version and the
// hashes and raw columns, see EncodeRecord) into a Record, or fails with a
// *CorruptError if the row is not one a store writes.
func RecordRow(log string, id int64, path, version string, hashes, raw []byte) (Record, error) {
	// The row is named only in an error: this runs for every record read.
	if id < 0 {
		return Record{}, corrupt(log, "records", fmt.Sprintf("id %d", id), errors.New("negative record id"))
	}
	data, err := DecodeRecord(path, version, hashes, raw)
	if err != nil {
		return Record{}, corrupt(log, "records", fmt.Sprintf("id %d", id), err)
	}
	return Record{ID: id, Path: path, Version: version, Data: data}, nil
}

// CheckRecordIDs fails with a *CorruptError unless the ids of records read
// in id order ascend strictly from 0 or more (a records table with two rows
// for one id, or a negative id, is corrupt).
func CheckRecordIDs(log string, prev, id int64, first bool) error {
	switch {
	case id < 0:
		return corrupt(log, "records", fmt.Sprintf("id %d", id), errors.New("negative record id"))
	case !first && id <= prev:
		return corrupt(log, "records", fmt.Sprintf("id %d", id), errors.New("two rows with this id"))
	}
	return nil
}

// CheckTileRow fails with a *CorruptError unless a row of a tiles table
// (level, idx, width, hashes) is one a store writes: a width of 1 to 256
// and width hashes.
func CheckTileRow(log string, level, idx, width int64, hashes []byte) error {
	// The row is named only in an error: this runs for every tile read.
	row := func() string { return fmt.Sprintf("level %d idx %d", level, idx) }
	switch {
	case level < 0 || idx < 0:
		return corrupt(log, "tiles", row(), errors.New("negative level or index"))
	case width < 1 || width > 1<<TileHeight:
		return corrupt(log, "tiles", row(), fmt.Errorf("width %d is not between 1 and %d", width, 1<<TileHeight))
	case int64(len(hashes)) != width*tlog.HashSize:
		return corrupt(log, "tiles", row(), fmt.Errorf("width %d but %d bytes of hashes, want %d", width, len(hashes), width*tlog.HashSize))
	}
	return nil
}

// HeadRow turns a row of a heads table into a Head, or fails with a
// *CorruptError if the hash is not a hash or the note does not sign a tree
// of the row's size and hash. (The signature itself is for the readers who
// hold the key to check.)
func HeadRow(log string, size int64, hash, note []byte, firstSeen time.Time) (Head, error) {
	row := fmt.Sprintf("size %d", size)
	if size < 0 {
		return Head{}, corrupt(log, "heads", row, errors.New("negative tree size"))
	}
	if len(hash) != tlog.HashSize {
		return Head{}, corrupt(log, "heads", row, fmt.Errorf("hash is %d bytes, want %d", len(hash), tlog.HashSize))
	}
	h := Head{Size: size, Hash: tlog.Hash(hash), Note: note, FirstSeen: firstSeen}
	tree, err := NoteTree(note)
	if err != nil {
		return Head{}, corrupt(log, "heads", row, err)
	}
	if tree != h.Tree() {
		return Head{}, corrupt(log, "heads", row, fmt.Errorf("the note is for tree %d %s, not %d %s", tree.N, tree.Hash, h.Size, h.Hash))
	}
	return h, nil
}

// NoteTree parses the tree a signed tree head note is for, without checking
// its signatures: the text before the blank line that ends it.
func NoteTree(note []byte) (tlog.Tree, error) {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return tlog.Tree{}, errors.New("the note has no blank line before its signatures")
	}
	tree, err := tlog.ParseTree(note[:i+1])
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("the note is not a tree head: %w", err)
	}
	return tree, nil
}
