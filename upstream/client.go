// Package upstream reads checksum databases over HTTP: a signed tree head
// (/latest), lookups and tiles, with bounded answers, retries of transient
// failures and errors that name the URL; and finds which URL to read the way
// the go command does (GOPROXY's /sumdb/<name>/supported, else direct).
//
// Nothing here verifies anything: every answer is hostile bytes until the
// mirror has checked it with package proof against the database's key.
package upstream

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/redact"
)

// Limits on what an upstream may send. Every byte from it is hostile until
// verified, so nothing is read unbounded.
const (
	maxNoteSize     = 16 << 10
	maxHashTileSize = 256 * tlog.HashSize
	maxDataTileSize = 8 << 20
	maxLookupSize   = 64 << 10
)

// ErrNotServed reports that the upstream answered 404 or 410.
var ErrNotServed = errors.New("not served by upstream")

// ErrRefused reports that the upstream answered 403, as a module proxy's
// /sumdb/ endpoint does for data tiles ("Go module path not permitted").
var ErrRefused = errors.New("refused by upstream")

// A StatusError is an upstream's answer other than 200: its status and the
// start of its body, made safe to print (the upstream is not trusted).
// It wraps ErrNotServed for 404 and 410, ErrRefused for 403.
type StatusError struct {
	URL    string
	Code   int
	Status string // e.g. "403 Forbidden"
	Body   string // printable ASCII, at most maxStatusBody bytes
}

// maxStatusBody bounds the part of an error answer's body kept.
const maxStatusBody = 200

func (e *StatusError) Error() string {
	msg := "fetching " + e.URL + ": " + e.Status
	if e.Body != "" {
		msg += ": " + e.Body
	}
	switch e.Code {
	case http.StatusNotFound, http.StatusGone:
		msg += ": " + ErrNotServed.Error()
	case http.StatusForbidden:
		msg += ": " + ErrRefused.Error()
	}
	return msg
}

func (e *StatusError) Unwrap() error {
	switch e.Code {
	case http.StatusNotFound, http.StatusGone:
		return ErrNotServed
	case http.StatusForbidden:
		return ErrRefused
	}
	return nil
}

// Said is what the upstream said: its status and the start of its body.
// PageError reports a 200 answer that is an HTML page. No checksum
// database serves HTML (its answers are text/plain and
// application/octet-stream), so something else answered in its place: a
// captive portal's login page, a proxy's error page, a web server at the
// wrong URL. It is the path's failure, not the upstream's word, and not a
// lie to keep as evidence: the pool moves to the next upstream as for a 5xx.
type PageError struct {
	URL         string
	ContentType string
}

func (e *PageError) Error() string {
	return fmt.Sprintf("fetching %s: the answer is an HTML page (Content-Type %s), not the checksum database's: a captive portal, a login page or a proxy's error page in the way?", e.URL, e.ContentType)
}

func (e *StatusError) Said() string {
	if e.Body == "" {
		return e.Status
	}
	return e.Status + ": " + e.Body
}

// safeText returns the first line of b as printable ASCII (other bytes as
// '?'), at most max bytes.
func safeText(b []byte, max int) string {
	b = bytes.TrimSpace(b)
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = bytes.TrimSpace(b[:i])
	}
	out := make([]byte, 0, min(len(b), max))
	for _, c := range b {
		if len(out) >= max {
			break
		}
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}

// Client fetches from a checksum database over HTTP: /latest, /lookup and
// tiles. It retries transient failures (network errors, 5xx, 429) a few
// times and names the URL in every error, with any credentials in it
// masked.
type Client struct {
	base  string // for requests: may hold credentials
	shown string // base for messages: credentials masked
	http  *http.Client
	tries int

	observe func(Observation) // nil: not observed
	own     *http.Transport   // the client's own transport (NewClient with hc nil), else nil
	slots   chan struct{}     // nil: unbounded; else one token per request in flight
	lanes   *lanes            // with own: how requests share connections; else nil
}

// WithMaxInFlight bounds the requests the Client has in flight at once to
// n (n <= 0: unbounded). A request waits for a slot, or for its context to
// end; a retry waits again. So however many lookups a mirror's clients
// make, and however many of them are abandoned, at most n connections to
// the upstream are busy; with the Client's own transport (NewClient with
// hc nil), at most n are open.
func WithMaxInFlight(n int) ClientOption {
	return func(c *Client) {
		c.slots = nil
		if n > 0 {
			c.slots = make(chan struct{}, n)
		}
		if c.own != nil && n > 0 {
			c.own.MaxConnsPerHost = n
		}
	}
}

// WithIdleConns keeps up to n idle connections to the upstream open
// (default idleConns) where the Client has its own transport (NewClient
// with hc nil): as many as its bursts have requests in flight, so that
// over HTTP/1.1 each burst reuses connections instead of dialing (and,
// over TLS, handshaking) anew. A seed has hundreds of requests in flight.
func WithIdleConns(n int) ClientOption {
	return func(c *Client) {
		if c.own != nil && n > 0 {
			c.own.MaxIdleConnsPerHost = n
			c.own.MaxIdleConns = n
		}
	}
}

// acquire takes a slot for one request, or fails with ctx's error.
func (c *Client) acquire(ctx context.Context) (release func(), err error) {
	if c.slots == nil {
		return func() {}, nil
	}
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a request slot to %s: %w", c.shown, ctx.Err())
	}
}

// idleConns is how many idle connections the default client keeps to the
// upstream: enough for a sync's tile requests in flight (32 by default), so
// that over HTTP/1.1 each burst reuses connections instead of dialing (and,
// over TLS, handshaking) anew.
const idleConns = 64

// NewClient returns a client for the database at base, e.g.
// "https://sum.golang.org" or "<proxy>/sumdb/sum.golang.org". With hc nil
// it uses its own transport, which keeps idleConns connections open.
func NewClient(base string, hc *http.Client, opts ...ClientOption) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			t := dt.Clone()
			t.MaxIdleConnsPerHost = idleConns
			t.MaxIdleConns = idleConns
			hc.Transport = t
		}
	}
	base = strings.TrimSuffix(base, "/")
	c := &Client{base: base, shown: redact.URL(base), http: hc, tries: 3}
	if t, ok := hc.Transport.(*http.Transport); ok && hc.Transport != http.DefaultTransport {
		c.own = t
	}
	for _, o := range opts {
		o(c)
	}
	if c.own != nil {
		c.lanes = newLanes(hc, c.own)
	}
	return c
}

// URL returns the upstream's base URL for messages: any credentials in it
// are masked.
func (c *Client) URL() string { return c.shown }

// Latest returns the signed tree head note.
// A note that does not parse is a MalformedError (see Lookup); whether
// its signature verifies is the caller's to check.
func (c *Client) Latest(ctx context.Context) ([]byte, error) {
	data, err := c.get(ctx, "latest", maxNoteSize)
	if err != nil {
		return nil, err
	}
	// Opened with no keys, a note in form fails only for want of one.
	if _, perr := note.Open(data, note.VerifierList()); !errors.As(perr, new(*note.UnverifiedNoteError)) {
		return nil, &MalformedError{URL: c.shown + "/latest", Err: perr}
	}
	return data, nil
}

// Lookup returns the /lookup answer for path@version: the record with its id
// line, then a signed tree head.
func (c *Client) Lookup(ctx context.Context, path, version string) ([]byte, error) {
	ep, err := module.EscapePath(path)
	if err != nil {
		return nil, err
	}
	ev, err := module.EscapeVersion(version)
	if err != nil {
		return nil, err
	}
	data, err := c.get(ctx, "lookup/"+ep+"@"+ev, maxLookupSize)
	if err != nil {
		return nil, err
	}
	// Not a lookup answer at all (a broken proxy's JSON error with status
	// 200, a truncated body): an error, so that a pool asks the next
	// upstream, as it does for a tile of the wrong size. Whether a
	// well-formed answer is true is the caller's to prove.
	if _, _, _, perr := tlog.ParseRecord(data); perr != nil {
		return nil, &MalformedError{URL: c.shown + "/lookup/" + ep + "@" + ev, Err: perr}
	}
	return data, nil
}

// MalformedError reports a 200 answer that is not an answer of the
// checksum database's protocol at all (it does not parse), as a broken
// proxy sends: the upstream's failure, unsigned, so not evidence of a lie.
type MalformedError struct {
	URL string
	Err error
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("fetching %s: malformed answer: %v", e.URL, e.Err)
}

func (e *MalformedError) Unwrap() error { return e.Err }

// Tile returns a hash tile (t.L >= 0) or data tile (t.L == -1). A partial
// tile the upstream no longer serves is read from the full tile, which
// starts with the same bytes; for data tiles the caller keeps the first W
// records. So the result may be longer than asked for.
func (c *Client) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	limit := int64(maxHashTileSize)
	if t.L < 0 {
		limit = maxDataTileSize
	}
	data, err := c.get(ctx, t.Path(), limit)
	if errors.Is(err, ErrNotServed) && t.W < 1<<t.H {
		full := t
		full.W = 1 << t.H
		data, err = c.get(ctx, full.Path(), limit)
	}
	if err != nil {
		return nil, err
	}
	if t.L >= 0 {
		if len(data) < t.W*tlog.HashSize || len(data)%tlog.HashSize != 0 {
			return nil, fmt.Errorf("%s/%s: %d bytes is not a tile of %d hashes", c.shown, t.Path(), len(data), t.W)
		}
		data = data[:t.W*tlog.HashSize]
	}
	return data, nil
}

// Supported reports whether a proxy serves this database (GET .../supported
// answering 200), as the go command checks before using a proxy's /sumdb/.
func (c *Client) Supported(ctx context.Context) (bool, error) {
	_, err := c.get(ctx, "supported", 1<<10)
	if errors.Is(err, ErrNotServed) {
		return false, nil
	}
	return err == nil, err
}

func (c *Client) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	var err error
	for try := 0; try < c.tries; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(try*try) * 200 * time.Millisecond):
			}
		}
		var data []byte
		var retry bool
		data, retry, err = c.observed(ctx, path, limit)
		if err == nil || !retry || ctx.Err() != nil {
			return data, err
		}
	}
	return nil, err
}

// observed is getOnce in a request slot, reported to the observer if
// there is one. The time spent waiting for a slot, or for the first
// connection to the upstream (see lanes), is not the upstream's: the
// observation, and the hook of ctx (see withAdmitted), start when the
// request is sent.
func (c *Client) observed(ctx context.Context, path string, limit int64) ([]byte, bool, error) {
	release, err := c.acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	defer release()
	hc, rctx, done := c.http, ctx, func() {}
	if c.lanes != nil {
		if hc, rctx, done, err = c.lanes.admit(ctx, c.shown); err != nil {
			return nil, false, err
		}
	}
	if f, ok := ctx.Value(admittedKey{}).(func()); ok {
		f()
	}
	start := time.Now()
	data, retry, err := c.getOnce(rctx, hc, path, limit)
	done()
	if c.observe == nil {
		return data, retry, err
	}
	o := Observation{Upstream: c.shown, Kind: pathKind(path), Duration: time.Since(start), Err: err}
	if err == nil {
		o.Status = http.StatusOK
	} else if se := (*StatusError)(nil); errors.As(err, &se) {
		o.Status = se.Code
	}
	c.observe(o)
	return data, retry, err
}

// admittedKey is the context key of withAdmitted's hook.
type admittedKey struct{}

// withAdmitted returns ctx with a hook that the Client calls each time it
// sends a request made with it, after any wait for a slot: a Pool times
// a copy of a request from then.
func withAdmitted(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, admittedKey{}, f)
}

// pathKind is the kind of request a path under the base URL is.
func pathKind(path string) string {
	switch {
	case path == "latest":
		return KindLatest
	case strings.HasPrefix(path, "lookup/"):
		return KindLookup
	case strings.HasPrefix(path, "tile/"):
		if strings.Contains(path, "/data/") {
			return KindDataTile
		}
		return KindTile
	case path == "supported":
		return KindSupported
	}
	return "other"
}

// getOnce fetches base/path once. Its errors name the URL without
// credentials: the client's own (*url.Error) are masked too.
func (c *Client) getOnce(ctx context.Context, hc *http.Client, path string, limit int64) (data []byte, retry bool, err error) {
	url := c.shown + "/" + path
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/"+path, nil)
	if err != nil {
		return nil, false, fmt.Errorf("fetching %s: %w", url, redact.URLError(err))
	}
	req.Header.Set("User-Agent", "sumkeep")
	resp, err := hc.Do(req)
	if err != nil {
		if errors.As(err, new(x509.UnknownAuthorityError)) {
			// The usual cause where sumkeep runs: a proxy that intercepts
			// TLS with a CA of its own. Not retried: that does not pass.
			return nil, false, fmt.Errorf("fetching %s: %w (a TLS-intercepting proxy on the path? trust its CA certificate with SSL_CERT_FILE or SSL_CERT_DIR)", url, redact.URLError(err))
		}
		return nil, true, fmt.Errorf("fetching %s: %w", url, redact.URLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return nil, retry, &StatusError{URL: url, Code: resp.StatusCode, Status: safeText([]byte(resp.Status), 64), Body: safeText(msg, maxStatusBody)}
	}
	if ct := resp.Header.Get("Content-Type"); isHTML(ct) {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		// Not retried here: a portal does not go away in a second; the
		// pool asks the next upstream at once.
		return nil, false, &PageError{URL: url, ContentType: safeText([]byte(ct), 64)}
	}
	// A declared length within the limit sizes the buffer (a tile is read
	// in one allocation); a false one only costs a regrowth or a failure.
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	data = buf.Bytes()
	if err != nil {
		return nil, true, fmt.Errorf("fetching %s: %w", url, err)
	}
	if int64(len(data)) > limit {
		return nil, false, fmt.Errorf("fetching %s: response larger than %d bytes", url, limit)
	}
	return data, false, nil
}

// isHTML reports whether a Content-Type is an HTML page's.
func isHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "text/html" || mt == "application/xhtml+xml")
}
