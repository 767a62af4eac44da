package verifier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/redact"
	"github.com/sumkeep/sumkeep/proof"
	"github.com/sumkeep/sumkeep/store"
)

// MirrorConfig configures a MirrorSource.
type MirrorConfig struct {
	// URL is the checksum database server: a sumkeep mirror, the database
	// itself (https://sum.golang.org), or a module proxy's
	// https://proxy.example/sumdb/<name>.
	URL string
	// Key is the verifier key of the database.
	Key string
	// StateFile keeps the newest verified signed tree head between runs
	// (as $GOPATH/pkg/sumdb/<name>/latest does for the go command), so a
	// server that forks its log between two runs is caught. Empty keeps it
	// in memory only.
	StateFile string
	// HTTPClient makes the requests; nil uses http.DefaultTransport.
	HTTPClient *http.Client
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	// Lookups is how many lookups are in flight (default 16).
	Lookups int
}

// maxResponse bounds a server's answer: a hash tile is 8 KiB, a lookup a
// record and a signed note.
const maxResponse = 1 << 20

// ErrBadState reports a state file that does not hold a tree head signed
// with the key.
var ErrBadState = errors.New("the state file does not hold a tree head signed with the key")

// MirrorSource proves records against a checksum database server, as the
// go command does: each lookup's signed tree head is verified with the key
// and linked by a consistency proof to the newest head seen before (kept in
// the state file across runs), and each record is proven in the newest head
// from hash tiles authenticated against its signed root (package proof).
// Nothing the server sends is trusted.
type MirrorSource struct {
	cfg   MirrorConfig
	base  string
	shown string // base for messages: credentials masked
	name  string
	v     note.Verifier
	hc    *http.Client

	stateNote []byte    // the head in the state file at the start
	state     tlog.Tree // its tree

	linkMu sync.Mutex // one link at a time; guards latest's moves
	mu     sync.Mutex
	latest store.Head // the newest verified head
	tiles  *proof.Reader
	// security holds the reports of server misbehaviour: the inconsistent
	// signed heads and the proof of the inconsistency.
	security      []string
	stateMismatch bool // reported the server's log not matching the state
}

// NewMirrorSource checks the configuration and the state file.
func NewMirrorSource(cfg MirrorConfig) (*MirrorSource, error) {
	v, err := note.NewVerifier(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("verifier key %q: %w", cfg.Key, err)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mirror URL %q: want http:// or https://", redact.URL(cfg.URL))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Lookups <= 0 {
		cfg.Lookups = 16
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout}
	}
	s := &MirrorSource{cfg: cfg, base: strings.TrimSuffix(cfg.URL, "/"), shown: redact.URL(strings.TrimSuffix(cfg.URL, "/")), name: v.Name(), v: v, hc: hc}
	latest, err := s.readState()
	if err != nil {
		return nil, err
	}
	if len(latest) > 0 {
		h, err := proof.OpenHead(latest, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", cfg.StateFile, ErrBadState, err)
		}
		s.latest, s.stateNote, s.state = h, latest, h.Tree()
	}
	return s, nil
}

// Database implements Source: the newest tree head verified.
func (s *MirrorSource) Database() Database {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Database{Name: s.name, Source: "mirror", URL: s.shown, Tree: s.latest.Tree()}
}

// SecurityErrors returns the reports of server misbehaviour: the
// inconsistent signed heads and the proof of the inconsistency.
func (s *MirrorSource) SecurityErrors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.security...)
}

// Records implements Source.
func (s *MirrorSource) Records(ctx context.Context, mods []module.Version) ([]Answer, error) {
	s.mu.Lock()
	s.tiles = proof.NewReader(ctx, proof.ReaderConfig{Log: s.name, Source: tileSource{s}})
	s.mu.Unlock()
	answers := make([]Answer, len(mods))
	err := parallel(ctx, len(mods), s.cfg.Lookups, func(i int) error {
		rec, err := s.record(ctx, mods[i])
		if err != nil {
			if fe, ok := errors.AsType[*fatalError](err); ok {
				return fe.err
			}
			answers[i].Err = err
			return nil
		}
		answers[i].Record = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return answers, nil
}

// fatalError marks an error of the environment (the server cannot be read,
// the key is wrong), which aborts the run rather than failing one answer.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// httpError is a server's answer other than 200.
type httpError struct {
	path   string
	status string
	code   int
	body   []byte
}

func (e *httpError) Error() string {
	if len(e.body) == 0 {
		return fmt.Sprintf("GET %s: %s", e.path, e.status)
	}
	return fmt.Sprintf("GET %s: %s: %s", e.path, e.status, e.body)
}

// record looks m up and proves its record in the newest verified head. It
// returns the record's lines for m: the record text.
func (s *MirrorSource) record(ctx context.Context, m module.Version) ([]byte, error) {
	epath, err := module.EscapePath(m.Path)
	if err != nil {
		return nil, &ProofError{ID: -1, Err: err}
	}
	evers, err := module.EscapeVersion(m.Version)
	if err != nil {
		return nil, &ProofError{ID: -1, Err: err}
	}
	path := "/lookup/" + epath + "@" + evers
	body, err := s.get(ctx, path)
	if he, ok := errors.AsType[*httpError](err); ok && (he.code == http.StatusNotFound || he.code == http.StatusGone) {
		return nil, &notFoundError{fmt.Sprintf("not in the checksum database as far as the server at %s knows: it answered %s", s.shown, printableAnswer(he.status, he.body))}
	}
	if err != nil {
		return nil, &fatalError{fmt.Errorf("reading from %s: %w", s.shown, err)}
	}
	id, text, msg, err := tlog.ParseRecord(body)
	if err != nil {
		return nil, &ProofError{ID: -1, Err: fmt.Errorf("%s%s: malformed answer: %v", s.shown, path, err)}
	}
	h, err := proof.OpenHead(msg, s.v)
	if _, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
		return nil, &fatalError{fmt.Errorf("%s: %w (wrong key?): %v", s.shown, ErrHeadNotVerified, err)}
	}
	if err != nil {
		return nil, &ProofError{ID: -1, Err: fmt.Errorf("%s%s: %v", s.shown, path, err)}
	}
	latest, err := s.link(h)
	if err != nil {
		return nil, err
	}
	rec := store.Record{ID: id, Data: text}
	rec.Path, rec.Version = store.RecordModule(text)
	if rec.Path != m.Path || rec.Version != m.Version {
		return nil, &ProofError{ID: id, Err: fmt.Errorf("the server answered with the record of %s@%s", printable(rec.Path), printable(rec.Version))}
	}
	if id >= h.Size {
		return nil, &ProofError{ID: id, Err: fmt.Errorf("the record is outside the tree of size %d signed with it", h.Size)}
	}
	if err := proof.Record(s.hashReader(latest), latest, rec); err != nil {
		if fe, ok := errors.AsType[*fatalError](err); ok {
			return nil, fe
		}
		return nil, &ProofError{ID: id, Err: err}
	}
	return text, nil
}

// hashReader reads tree's hashes from the server's tiles, authenticated.
func (s *MirrorSource) hashReader(h store.Head) tlog.HashReader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tiles.HashReader(h.Tree())
}

// link proves h consistent with the newest verified head and, if h is
// newer, makes it the newest (and writes it to the state file). It returns
// the newest head.
func (s *MirrorSource) link(h store.Head) (store.Head, error) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	s.mu.Lock()
	latest := s.latest
	s.mu.Unlock()
	if err := s.consistent(latest, h); err != nil {
		return latest, err
	}
	if h.Size <= latest.Size {
		return latest, nil
	}
	if err := s.writeState(h); err != nil {
		return latest, err
	}
	s.mu.Lock()
	s.latest = h
	s.mu.Unlock()
	return h, nil
}

// consistent proves heads a and b consistent from the larger one's tiles.
func (s *MirrorSource) consistent(a, b store.Head) error {
	older, newer := a, b
	if b.Size < a.Size {
		older, newer = b, a
	}
	if older.Size == 0 {
		return nil
	}
	th := newer.Hash
	if older.Size < newer.Size {
		var err error
		th, err = tlog.TreeHash(older.Size, s.hashReader(newer))
		if fe, ok := errors.AsType[*fatalError](err); ok {
			return fe
		}
		if ite, ok := errors.AsType[*proof.InconsistentTileError](err); ok && ite.Tree == s.state && s.state.N > 0 {
			return s.stateMismatchError()
		}
		if err != nil {
			return &ProofError{ID: -1, Err: fmt.Errorf("cannot link the server's tree head %d to the tree head %d verified before: %v", b.Size, a.Size, err)}
		}
	}
	if th == older.Hash {
		return nil
	}
	var buf strings.Builder
	indent := func(b []byte) string { return strings.ReplaceAll(string(b), "\n", "\n\t") }
	fmt.Fprintf(&buf, "SECURITY ERROR\ngo.sum database server misbehavior detected!\n\n")
	fmt.Fprintf(&buf, "old database:\n\t%s\n", indent(older.Note))
	fmt.Fprintf(&buf, "new database:\n\t%s\n", indent(newer.Note))
	fmt.Fprintf(&buf, "proof of misbehavior:\n\t%v", th)
	if p, err := tlog.ProveTree(newer.Size, older.Size, s.hashReader(newer)); err == nil {
		for _, h := range p {
			fmt.Fprintf(&buf, "\n\t%v", h)
		}
	}
	s.mu.Lock()
	s.security = append(s.security, buf.String())
	s.mu.Unlock()
	return &MisbehaviourError{
		Msg:    "the checksum database presented signed tree heads that are not consistent with each other (a fork of the log)",
		Detail: buf.String(),
	}
}

// stateMismatchError reports hash tiles that do not hash to the signed root
// of the head kept from an earlier run, with the evidence the first time.
func (s *MirrorSource) stateMismatchError() error {
	e := &MisbehaviourError{Msg: fmt.Sprintf(
		"the checksum database's log is not the one whose tree head %d was verified in an earlier run (its hash tiles do not hash to that head's signed root): a fork of the log, or a corrupted server",
		s.state.N)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stateMismatch {
		s.stateMismatch = true
		e.Detail = fmt.Sprintf("SECURITY ERROR\nthe checksum database at %s serves hash tiles that do not hash to the signed root of the tree head kept in %s:\n\t%s",
			s.shown, s.cfg.StateFile, strings.ReplaceAll(string(s.stateNote), "\n", "\n\t"))
		s.security = append(s.security, e.Detail)
	}
	return e
}

// tileSource reads hash tiles from the server. Its failures are fatal to
// the run (the server cannot be read); a tile it does not have is a proof
// that cannot be made.
type tileSource struct{ s *MirrorSource }

func (t tileSource) Tile(ctx context.Context, tile tlog.Tile) ([]byte, error) {
	data, err := t.s.get(ctx, "/"+tile.Path())
	if he, ok := errors.AsType[*httpError](err); ok && (he.code == http.StatusNotFound || he.code == http.StatusGone) {
		return nil, err
	}
	if err != nil {
		return nil, &fatalError{fmt.Errorf("reading from %s: %w", t.s.shown, err)}
	}
	return data, nil
}

// get fetches path from the server, at most maxResponse bytes.
func (s *MirrorSource) get(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return nil, redact.URLError(err)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, redact.URLError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", path, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &httpError{path: path, status: resp.Status, code: resp.StatusCode, body: bytes.TrimSpace(data[:min(len(data), 200)])}
	}
	return data, nil
}

// readState returns the head in the state file; none without a state file
// or when the file does not exist.
func (s *MirrorSource) readState() ([]byte, error) {
	if s.cfg.StateFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	return data, nil
}

// writeState replaces the head in the state file with h, atomically. A
// head another run wrote meanwhile is linked to h first: the file never
// moves to a head that is not consistent with it, nor backwards.
func (s *MirrorSource) writeState(h store.Head) error {
	if s.cfg.StateFile == "" {
		return nil
	}
	cur, err := s.readState()
	if err != nil {
		return err
	}
	if len(cur) > 0 && !bytes.Equal(cur, s.latest.Note) {
		other, err := proof.OpenHead(cur, s.v)
		if err != nil {
			return &fatalError{fmt.Errorf("%s: %w: %v", s.cfg.StateFile, ErrBadState, err)}
		}
		if err := s.consistent(other, h); err != nil {
			return err
		}
		if other.Size >= h.Size {
			return nil
		}
	}
	if err := writeAtomic(s.cfg.StateFile, h.Note); err != nil {
		return &fatalError{fmt.Errorf("writing state: %w", err)}
	}
	return nil
}

// writeAtomic replaces name with data: readers see the old or the new
// contents, never a mix.
func writeAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// printableAnswer returns a server's status and the first line of its
// answer, as printable ASCII of bounded length (the server is not trusted).
func printableAnswer(status string, body []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	s := strings.TrimSpace(status)
	if len(line) > 0 {
		s += ": " + string(line)
	}
	b := []byte(s)
	if len(b) > 300 {
		b = b[:300]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
