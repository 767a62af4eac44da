// Package proof authenticates what a checksum database serves: it opens
// signed tree heads and reads hash tiles in a way that lets tlog prove
// records and heads against a signed root. The mirror and the verifier both
// use it, so there is one place where bytes from an upstream, a bundle or a
// store become trusted.
//
// Nothing a tile source returns is trusted: a Reader's tiles are only ever
// used through its HashReader, which authenticates them against the signed
// root of a tree (tlog.TileHashReader), and only the tiles that passed are
// reported by Verified.
package proof

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/store"
)

// ErrBadSignature reports a signed tree head whose signature does not verify
// with the key (a wrong key, a forged note, or no signature by the key).
var ErrBadSignature = errors.New("signed tree head does not verify")

// ErrMalformedHead reports a note whose signature verifies but whose text is
// not a tree head.
var ErrMalformedHead = errors.New("malformed tree head")

// OpenHead verifies the signed tree head msg with v and returns the head it
// signs: the size and root hash are read from the verified text, never from
// anywhere else. Its errors wrap ErrBadSignature or ErrMalformedHead, and the
// underlying reason.
func OpenHead(msg []byte, v note.Verifier) (store.Head, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return store.Head{}, fmt.Errorf("%w with key %s: %w", ErrBadSignature, v.Name(), err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return store.Head{}, fmt.Errorf("%w: %w", ErrMalformedHead, err)
	}
	return store.Head{Size: tree.N, Hash: tree.Hash, Note: msg}, nil
}

// InconsistentTileError reports hash tiles that do not hash to the signed
// root of Tree (or to their parent tiles): a lie by whoever served them.
// Tiles lists the tiles read for the failed proof, one of which is at fault;
// Data holds their bytes as received.
type InconsistentTileError struct {
	Tree  tlog.Tree
	Tiles []tlog.Tile
	Data  [][]byte
	Err   error // tlog's report
}

func (e *InconsistentTileError) Error() string {
	return fmt.Sprintf("hash tiles %s do not hash to the signed root of tree %d: %v", tilePaths(e.Tiles), e.Tree.N, e.Err)
}

func (e *InconsistentTileError) Unwrap() error { return e.Err }

func tilePaths(tiles []tlog.Tile) string {
	const most = 8
	s := ""
	for i, t := range tiles {
		if i == most {
			s += fmt.Sprintf(" (and %d more)", len(tiles)-most)
			break
		}
		if i > 0 {
			s += ", "
		}
		s += t.Path()
	}
	if s == "" {
		s = "(none read)"
	}
	return s
}

// CheckHead opens h's signed note with v, as OpenHead does, and checks that
// the size and hash h claims (a store's other columns) are the signed ones.
// It returns h with the signed size and hash.
func CheckHead(h store.Head, v note.Verifier) (store.Head, error) {
	signed, err := OpenHead(h.Note, v)
	if err != nil {
		return h, err
	}
	if signed.Size != h.Size || signed.Hash != h.Hash {
		return h, fmt.Errorf("the stored size and hash (%d, %s) are not the signed ones (%d, %s)", h.Size, h.Hash, signed.Size, signed.Hash)
	}
	signed.FirstSeen = h.FirstSeen
	return signed, nil
}

// Record proves rec in head b from hr's tiles: rec names the module it is
// filed under, lies inside b, and its leaf hash is in b's signed tree.
func Record(hr tlog.HashReader, b store.Head, rec store.Record) error {
	if p, v := store.RecordModule(rec.Data); p != rec.Path || v != rec.Version {
		return fmt.Errorf("record %d is stored as %s@%s but names %s@%s", rec.ID, rec.Path, rec.Version, p, v)
	}
	if rec.ID < 0 || rec.ID >= b.Size {
		return fmt.Errorf("record %d is outside head %d", rec.ID, b.Size)
	}
	p, err := tlog.ProveRecord(b.Size, rec.ID, hr)
	if err != nil {
		return fmt.Errorf("proving record %d (%s@%s) in head %d: %w", rec.ID, rec.Path, rec.Version, b.Size, err)
	}
	if err := tlog.CheckRecord(p, b.Size, b.Hash, rec.ID, tlog.RecordHash(rec.Data)); err != nil {
		return fmt.Errorf("record %d (%s@%s) is not in head %d: %w", rec.ID, rec.Path, rec.Version, b.Size, err)
	}
	return nil
}

// Head proves h consistent with the larger head b from hr's tiles.
func Head(hr tlog.HashReader, b, h store.Head) error {
	if h.Size == b.Size {
		if h.Hash != b.Hash {
			return fmt.Errorf("two heads of size %d with different hashes", h.Size)
		}
		return nil
	}
	p, err := tlog.ProveTree(b.Size, h.Size, hr)
	if err != nil {
		return fmt.Errorf("proving head %d consistent with head %d: %w", h.Size, b.Size, err)
	}
	if err := tlog.CheckTree(p, b.Size, b.Hash, h.Size, h.Hash); err != nil {
		return fmt.Errorf("head %d is not consistent with head %d: %w", h.Size, b.Size, err)
	}
	return nil
}
