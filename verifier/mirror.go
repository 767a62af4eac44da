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
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
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

// MirrorSource proves records with golang.org/x/mod/sumdb's Client, which
// asks a checksum database server for lookups and hash tiles and verifies
// every answer against the key and against the newest tree head it has
// seen (kept in the state file).
type MirrorSource struct {
	cfg    MirrorConfig
	name   string
	client *sumdb.Client
	ops    *mirrorOps

	stateNote     []byte    // the head in the state file at the start
	state         tlog.Tree // its tree
	stateMismatch sync.Once // reported the server's log not matching it
}

// NewMirrorSource checks the configuration and the state file.
func NewMirrorSource(cfg MirrorConfig) (*MirrorSource, error) {
	v, err := note.NewVerifier(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("verifier key %q: %w", cfg.Key, err)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mirror URL %q: want http:// or https://", cfg.URL)
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
	ops := &mirrorOps{
		base: strings.TrimSuffix(cfg.URL, "/"), key: cfg.Key, name: v.Name(), state: cfg.StateFile,
		hc: hc, timeout: cfg.Timeout, ctx: context.Background(),
		cache: make(map[string][]byte), notFound: make(map[string]string),
	}
	latest, err := ops.readLatest()
	if err != nil {
		return nil, err
	}
	var tree tlog.Tree
	if len(latest) > 0 {
		if tree, err = openTree(latest, v); err != nil {
			return nil, fmt.Errorf("%s: %w: %v", cfg.StateFile, ErrBadState, err)
		}
	}
	ops.latest = latest
	return &MirrorSource{cfg: cfg, name: v.Name(), client: sumdb.NewClient(ops), ops: ops, stateNote: latest, state: tree}, nil
}

// openTree verifies a signed tree head and returns its tree.
func openTree(msg []byte, v note.Verifier) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return tlog.Tree{}, err
	}
	return tlog.ParseTree([]byte(n.Text))
}

// Database implements Source: the newest tree head the client verified.
func (s *MirrorSource) Database() Database {
	d := Database{Name: s.name, Source: "mirror", URL: s.ops.base}
	s.ops.mu.Lock()
	latest := s.ops.latest
	s.ops.mu.Unlock()
	if v, err := note.NewVerifier(s.cfg.Key); err == nil && len(latest) > 0 {
		d.Tree, _ = openTree(latest, v)
	}
	return d
}

// SecurityErrors returns the client's reports of server misbehaviour: the
// inconsistent signed heads and the proof of the inconsistency.
func (s *MirrorSource) SecurityErrors() []string {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	return append([]string(nil), s.ops.security...)
}

// Records implements Source.
func (s *MirrorSource) Records(ctx context.Context, mods []module.Version) ([]Answer, error) {
	s.ops.mu.Lock()
	s.ops.ctx = ctx
	s.ops.mu.Unlock()
	answers := make([]Answer, len(mods))
	err := parallel(ctx, len(mods), s.cfg.Lookups, func(i int) error {
		m := mods[i]
		var lines []string
		// The client's lookups of M@V and M@V/go.mod share one request.
		for _, v := range []string{m.Version, m.Version + "/go.mod"} {
			l, err := s.client.Lookup(m.Path, v)
			if err != nil {
				a, fatal := s.classify(m, err)
				answers[i].Err = a
				return fatal
			}
			lines = append(lines, l...)
		}
		if len(lines) == 0 {
			answers[i].Err = &ProofError{ID: -1, Err: errors.New("the server's record has no line for this module version")}
			return nil
		}
		answers[i].Record = []byte(strings.Join(lines, "\n") + "\n")
		return nil
	})
	if err != nil {
		return nil, err
	}
	return answers, nil
}

// classify turns a client error into an answer's error, or into an error
// of the environment that aborts the run. The client formats its errors
// with %v, so what happened is read from what the ops saw, and the
// security and signature failures from their (stable) messages.
func (s *MirrorSource) classify(m module.Version, err error) (answer, fatal error) {
	o := s.ops
	epath, _ := module.EscapePath(m.Path)
	evers, _ := module.EscapeVersion(m.Version)
	o.mu.Lock()
	said, notFound := o.notFound["/lookup/"+epath+"@"+evers]
	transport := o.transport
	o.mu.Unlock()
	msg := err.Error()
	// The client's first step links the head kept in the state file to
	// the server's log, reading that head's tiles from the server.
	initErr := strings.Contains(msg, "initializing sumdb.Client")
	switch {
	case strings.Contains(msg, sumdb.ErrSecurity.Error()):
		return &MisbehaviourError{
			Msg:    "the checksum database presented signed tree heads that are not consistent with each other (a fork of the log)",
			Detail: strings.Join(s.SecurityErrors(), "\n"),
		}, nil
	case notFound:
		return &notFoundError{fmt.Sprintf("not in the checksum database as far as the server at %s knows: it answered %s", o.base, said)}, nil
	case strings.Contains(msg, (&note.UnverifiedNoteError{}).Error()):
		return nil, fmt.Errorf("%s: %w (wrong key?): %v", o.base, ErrHeadNotVerified, err)
	case transport != nil:
		return nil, fmt.Errorf("reading from %s: %w", o.base, transport)
	case initErr && strings.Contains(msg, "downloaded inconsistent tile"):
		e := &MisbehaviourError{Msg: fmt.Sprintf(
			"the checksum database's log is not the one whose tree head %d was verified in an earlier run (its hash tiles do not hash to that head's signed root): a fork of the log, or a corrupted server",
			s.state.N)}
		s.stateMismatch.Do(func() {
			e.Detail = fmt.Sprintf("SECURITY ERROR\nthe checksum database at %s serves hash tiles that do not hash to the signed root of the tree head kept in %s:\n\t%s",
				o.base, s.cfg.StateFile, strings.ReplaceAll(string(s.stateNote), "\n", "\n\t"))
			o.SecurityError(e.Detail)
		})
		return e, nil
	case initErr:
		return &ProofError{ID: -1, Err: fmt.Errorf("cannot link the server's log to the tree head %d verified in an earlier run (is the server behind it?): %v", s.state.N, err)}, nil
	}
	return &ProofError{ID: -1, Err: err}, nil
}

// mirrorOps implements sumdb.ClientOps: HTTP to the server, the key, the
// newest verified head in the state file, and an in-memory cache for the
// run. Nothing is cached across runs but the head, so each run asks the
// server again and a fork is seen.
type mirrorOps struct {
	base, key, name string
	state           string
	hc              *http.Client
	timeout         time.Duration

	mu        sync.Mutex
	ctx       context.Context
	latest    []byte // the newest verified head
	cache     map[string][]byte
	notFound  map[string]string // lookup paths answered 404 or 410: what the server said
	transport error             // the first failure to reach the server
	security  []string
	stateMu   sync.Mutex // serializes state file updates
}

// ReadRemote implements sumdb.ClientOps.
func (o *mirrorOps) ReadRemote(path string) ([]byte, error) {
	o.mu.Lock()
	ctx := o.ctx
	o.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := o.hc.Do(req)
	if err != nil {
		o.fail(err)
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		err = fmt.Errorf("GET %s: %w", path, err)
		o.fail(err)
		return nil, err
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", path, maxResponse)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return data, nil
	case http.StatusNotFound, http.StatusGone:
		if strings.HasPrefix(path, "/lookup/") {
			o.mu.Lock()
			// What it said, made printable: a sumkeep mirror says why
			// (not in the log, refused by its upstream, ...).
			o.notFound[path] = printableAnswer(resp.Status, data)
			o.mu.Unlock()
		}
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(data[:min(len(data), 200)]))
	o.fail(err)
	return nil, err
}

func (o *mirrorOps) fail(err error) {
	o.mu.Lock()
	if o.transport == nil {
		o.transport = err
	}
	o.mu.Unlock()
}

// ReadConfig implements sumdb.ClientOps.
func (o *mirrorOps) ReadConfig(file string) ([]byte, error) {
	switch file {
	case "key":
		return []byte(o.key), nil
	case o.name + "/latest":
		o.stateMu.Lock()
		defer o.stateMu.Unlock()
		return o.readLatest()
	}
	return nil, fmt.Errorf("unknown config file %q", file)
}

// readLatest returns the stored head: the state file's, or the in-memory
// one without a state file. A missing file is an empty tree.
func (o *mirrorOps) readLatest() ([]byte, error) {
	if o.state == "" {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.latest, nil
	}
	data, err := os.ReadFile(o.state)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	return data, nil
}

// WriteConfig implements sumdb.ClientOps: it replaces the stored head,
// atomically (a temporary file renamed over the state file), if it is
// still old.
func (o *mirrorOps) WriteConfig(file string, old, new []byte) error {
	if file != o.name+"/latest" {
		return fmt.Errorf("unknown config file %q", file)
	}
	o.stateMu.Lock()
	defer o.stateMu.Unlock()
	cur, err := o.readLatest()
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		return sumdb.ErrWriteConflict
	}
	if o.state != "" {
		if err := writeAtomic(o.state, new); err != nil {
			return fmt.Errorf("writing state: %w", err)
		}
	}
	o.mu.Lock()
	o.latest = bytes.Clone(new)
	o.mu.Unlock()
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

// ReadCache implements sumdb.ClientOps.
func (o *mirrorOps) ReadCache(file string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if data, ok := o.cache[file]; ok {
		return data, nil
	}
	return nil, fs.ErrNotExist
}

// WriteCache implements sumdb.ClientOps.
func (o *mirrorOps) WriteCache(file string, data []byte) {
	o.mu.Lock()
	o.cache[file] = data
	o.mu.Unlock()
}

// Log implements sumdb.ClientOps.
func (o *mirrorOps) Log(string) {}

// SecurityError implements sumdb.ClientOps: the message is kept for the
// report, and the client's operation fails with sumdb.ErrSecurity.
func (o *mirrorOps) SecurityError(msg string) {
	o.mu.Lock()
	o.security = append(o.security, msg)
	o.mu.Unlock()
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
