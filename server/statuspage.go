package server

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/sumkeep/sumkeep/internal/redact"
	"github.com/sumkeep/sumkeep/store"
)

// StatusReader is what the status page reads from a store beyond
// store.Reader: the newest verified head (to say how far the served head is
// behind) and the evidence of misbehaviour. It is an optional capability
// (Config.StatusStore, else Config.Store when it has these methods), not
// part of store.Reader, because Reader is
// what every answer of the protocol is served from and a read replica may
// implement it alone: a page that cannot read these says so instead of
// forcing every reader to offer them. store.Store has both.
type StatusReader interface {
	// LatestHead returns the largest stored head, or store.ErrNotFound.
	LatestHead(ctx context.Context, log string) (store.Head, error)
	// Evidence lists the evidence kept for a log, oldest first. Evidence
	// is kept once per kind, source and object, so the list stays short
	// unless a source keeps inventing new lies; the page shows at most
	// maxEvidenceShown of them.
	Evidence(ctx context.Context, log string) ([]store.Evidence, error)
}

// DefaultStatusCache is how long the data of the status page is reused
// when Config.StatusCache is zero: a page load costs two store queries per
// log at most once per this period, however many clients reload it.
const DefaultStatusCache = 5 * time.Second

// maxEvidenceShown bounds the evidence rows the page and /status.json list
// (the total is still counted).
const maxEvidenceShown = 100

// Status is what the status page shows and /status.json answers. The JSON
// field names are stable: scripts read them (README, "Status page").
type Status struct {
	// GeneratedAt is when the store was read (the data is reused for
	// Config.StatusCache).
	GeneratedAt time.Time `json:"generated_at"`
	// StoreOK is false when the store did not answer (within
	// Config.StoreTimeout); StoreError then says why, and the answer's
	// status is 503.
	StoreOK    bool   `json:"store_ok"`
	StoreError string `json:"store_error,omitempty"`

	// Log is the log served at the root ("" if none).
	Log string `json:"log"`
	// URL is this server's base URL: Config.PublicURL, else built from the
	// request (http, or https over TLS, and the request's Host when it is a
	// valid host[:port], else the address the request came in on).
	URL string `json:"url"`
	// Key is the root log's verifier key ("" if not configured).
	Key string `json:"key"`
	// GOSUMDB is the value for the go command's GOSUMDB, "<key> <url>";
	// GOSUMDBCommand the go env line setting it. Both "" without a key.
	GOSUMDB        string `json:"gosumdb"`
	GOSUMDBCommand string `json:"gosumdb_command"`
	// ProxyCommands are the go env lines for the proxy form: GOSUMDB=<key>
	// (only when the log is not the go command's default, sum.golang.org)
	// and GOPROXY="<url>,<your proxy>", where "<your proxy>" is to be replaced
	// with the proxy list used now (what `go env GOPROXY` prints).
	ProxyCommands []string `json:"proxy_commands"`

	// Evidence of upstream misbehaviour in every log, newest first; at
	// most 100 (EvidenceTotal counts them all).
	Evidence      []EvidenceStatus `json:"evidence"`
	EvidenceTotal int              `json:"evidence_total"`
	// EvidenceUnknown is set when the store cannot list evidence.
	EvidenceUnknown bool `json:"evidence_unknown,omitempty"`

	Logs      []LogStatus      `json:"logs"`
	Upstreams []UpstreamStatus `json:"upstreams"`
}

// HeadStatus is a signed tree head.
type HeadStatus struct {
	Size      int64     `json:"size"`
	Hash      string    `json:"hash"` // base64, as in the signed note
	FirstSeen time.Time `json:"first_seen"`
}

// LogStatus is one log the store holds.
type LogStatus struct {
	Name string `json:"name"`
	Root bool   `json:"root"` // served at the root (else only as /sumdb/<name>/)
	// Served is the head answers are served under; Newest the newest
	// verified head known (null when none, or the store cannot say).
	Served *HeadStatus `json:"served"`
	Newest *HeadStatus `json:"newest"`
	// BehindRecords is Newest.Size - Served.Size; BehindSeconds how much
	// later the newest head was first seen than the served one.
	BehindRecords int64   `json:"behind_records"`
	BehindSeconds float64 `json:"behind_seconds"`
	// ServedAgeSeconds is GeneratedAt - Served.FirstSeen.
	ServedAgeSeconds float64    `json:"served_age_seconds"`
	Sync             SyncStatus `json:"sync"`
	// Error says what could not be read about this log.
	Error string `json:"error,omitempty"`
}

// SyncStatus is what the server knows of a log's syncing.
type SyncStatus struct {
	// InProcess is true when this process syncs on a schedule (serve
	// --sync-schedule); otherwise another process syncs (or none does),
	// and only the served head's first-seen time tells when it last
	// moved.
	InProcess bool   `json:"in_process"`
	Schedule  string `json:"schedule,omitempty"`
	Running   bool   `json:"running"`
	// Last is the last finished run, LastSuccess the last that succeeded
	// (null when none yet).
	Last        *SyncRunStatus `json:"last"`
	LastSuccess *SyncRunStatus `json:"last_success"`
}

// SyncRunStatus is one finished sync run.
type SyncRunStatus struct {
	Started         time.Time `json:"started"`
	Ended           time.Time `json:"ended"`
	DurationSeconds float64   `json:"duration_seconds"`
	// Outcome is "success", "failure", or "elsewhere": another process
	// held the log's sync lock, so it synced instead.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
	Served  int64  `json:"served"`  // the served head's size after a success
	Records int64  `json:"records"` // records stored by the run
}

// UpstreamStatus is one upstream, as Config.Upstreams measures it.
type UpstreamStatus struct {
	URL string `json:"url"` // credentials masked
	// Measured is false when nothing measures it (no
	// Config.Upstreams): the other fields are then zero, and State is
	// "not measured".
	Measured bool   `json:"measured"`
	State    string `json:"state"` // healthy, slow, down, quarantined
	// Latencies in seconds: a moving estimate, and over recent requests.
	LatencySeconds float64    `json:"latency_seconds"`
	P50Seconds     float64    `json:"p50_seconds"`
	P99Seconds     float64    `json:"p99_seconds"`
	Requests       int64      `json:"requests"`
	Errors         int64      `json:"errors"`
	Hedges         int64      `json:"hedges"`
	Lies           int64      `json:"lies"`
	LastError      string     `json:"last_error,omitempty"`
	LastErrorAt    *time.Time `json:"last_error_at,omitempty"`
	Until          *time.Time `json:"until,omitempty"`
	// History is the median latency a minute over the last hour, oldest
	// first.
	History []SampleStatus `json:"history"`
}

// SampleStatus is one minute of an upstream's history.
type SampleStatus struct {
	At         time.Time `json:"at"`
	P50Seconds float64   `json:"p50_seconds"`
	Requests   int64     `json:"requests"`
	Errors     int64     `json:"errors"`
}

// EvidenceStatus is one piece of evidence of upstream misbehaviour, as the
// store keeps it.
type EvidenceStatus struct {
	Log     string `json:"log"`
	Kind    string `json:"kind"`   // fork, record-mismatch, tile-mismatch, ...
	Source  string `json:"source"` // where the bytes came from, credentials masked
	Object  string `json:"object"`
	Message string `json:"message"`
	Count   int64  `json:"count"`
	// FirstSeen and LastSeen are as the store gives them (LastSeen may be
	// zero where the store kept it once).
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// SyncLog keeps what an in-process sync schedule did, per log, for the
// status page: give it as Config.Syncs and tell it of every run. It is
// safe for concurrent use.
type SyncLog struct {
	schedule string
	mu       sync.Mutex
	logs     map[string]*syncEntry
}

type syncEntry struct {
	running      bool
	last, lastOK *SyncRunStatus
}

// NewSyncLog returns an empty SyncLog for runs on the cron schedule spec.
func NewSyncLog(schedule string) *SyncLog {
	return &SyncLog{schedule: schedule, logs: make(map[string]*syncEntry)}
}

// Started records that a run of log started.
func (l *SyncLog) Started(log string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entry(log).running = true
}

// Finished records a finished run of log. err is nil for success; an
// error wrapping store.ErrLocked means another process holds the sync
// lock. The error's text is shown on the status page: it must hold no
// credentials (the mirror's errors mask them).
func (l *SyncLog) Finished(log string, started, ended time.Time, served, records int64, err error) {
	r := &SyncRunStatus{Started: started.UTC(), Ended: ended.UTC(), DurationSeconds: ended.Sub(started).Seconds(),
		Outcome: "success", Served: served, Records: records}
	switch {
	case errors.Is(err, store.ErrLocked):
		r.Outcome, r.Error = "elsewhere", "another process holds the sync lock and syncs this log"
	case err != nil:
		r.Outcome, r.Error = "failure", shownText(err.Error(), 500)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(log)
	e.running = false
	e.last = r
	if err == nil {
		e.lastOK = r
	}
}

func (l *SyncLog) entry(log string) *syncEntry {
	e := l.logs[log]
	if e == nil {
		e = new(syncEntry)
		l.logs[log] = e
	}
	return e
}

func (l *SyncLog) status(log string) SyncStatus {
	if l == nil {
		return SyncStatus{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := SyncStatus{InProcess: true, Schedule: l.schedule}
	if e := l.logs[log]; e != nil {
		st.Running, st.Last, st.LastSuccess = e.running, e.last, e.lastOK
	}
	return st
}

// statusCache holds the gathered status data, shared by page loads for
// Config.StatusCache, and the one gathering under way.
type statusCache struct {
	mu     sync.Mutex
	data   *Status // without the per-request fields
	flight chan struct{}
}

// statusData returns the status data, gathering it anew when the cached
// copy is older than the cache period. Page loads share one gathering; a
// request waits for it no longer than its own context allows, and the
// gathering itself is bounded by StoreTimeout, so a store that hangs gives
// an answer saying so, not a hung page.
func (s *Server) statusData(ctx context.Context) *Status {
	c := &s.status
	c.mu.Lock()
	if c.data != nil && time.Since(c.data.GeneratedAt) < s.statusTTL {
		d := c.data
		c.mu.Unlock()
		return d
	}
	if c.flight == nil {
		done := make(chan struct{})
		c.flight = done
		go func() {
			defer close(done)
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.storeTimeout)
			defer cancel()
			d := s.gatherStatus(gctx)
			c.mu.Lock()
			c.data, c.flight = d, nil
			c.mu.Unlock()
		}()
	}
	done, old := c.flight, c.data
	c.mu.Unlock()
	select {
	case <-done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.data
	case <-ctx.Done():
		if old != nil {
			return old
		}
		return &Status{GeneratedAt: time.Now().UTC(), StoreError: "the request ended before the store answered"}
	}
}

// gatherStatus reads what the page shows: per log two store queries (the
// newest head and the evidence) besides the served heads the server holds
// already; nothing walks the records. Every query shares ctx's deadline.
func (s *Server) gatherStatus(ctx context.Context) *Status {
	now := time.Now()
	st := &Status{GeneratedAt: now.UTC(), StoreOK: true, Log: s.log}
	fail := func(err error) {
		if st.StoreOK {
			st.StoreOK = false
			st.StoreError = "the store does not answer: " + shownText(err.Error(), 300)
		}
	}
	// The store's own answer, not the served heads held in memory: those
	// outlive an outage.
	names, err := s.store.Logs(ctx)
	if err != nil {
		fail(err)
	}
	snap := s.snap.Load()
	if err == nil {
		snap = s.current(ctx)
	}
	if snap == nil && st.StoreOK {
		fail(errors.New("no served head could be read yet"))
	}
	seen := make(map[string]bool)
	var order []string
	add := func(name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
	}
	add(s.log)
	for _, n := range names {
		add(n)
	}
	if snap != nil {
		for n := range snap.logs {
			add(n)
		}
	}
	sr := s.statusStore
	st.EvidenceUnknown = sr == nil
	for _, name := range order {
		ls := LogStatus{Name: name, Root: name == s.log, Sync: s.syncs.status(name)}
		if snap != nil {
			if l := snap.logs[name]; l != nil && l.head != nil {
				ls.Served = headStatus(*l.head)
				ls.ServedAgeSeconds = now.Sub(l.head.FirstSeen).Seconds()
			}
		}
		if sr != nil && st.StoreOK {
			h, err := sr.LatestHead(ctx, name)
			switch {
			case err == nil:
				ls.Newest = headStatus(h)
			case errors.Is(err, store.ErrNotFound):
			case store.Unavailable(err) || ctx.Err() != nil:
				fail(err)
			default:
				ls.Error = "reading the newest head failed"
				s.logger.ErrorContext(ctx, "status page: reading the newest head", "log", name, "err", err)
			}
			if st.StoreOK {
				evs, err := sr.Evidence(ctx, name)
				switch {
				case err == nil:
					st.EvidenceTotal += len(evs)
					for _, e := range evs {
						st.Evidence = append(st.Evidence, evidenceStatus(name, e))
					}
				case store.Unavailable(err) || ctx.Err() != nil:
					fail(err)
				default:
					ls.Error = "reading the evidence failed"
					st.EvidenceUnknown = true
					s.logger.ErrorContext(ctx, "status page: reading evidence", "log", name, "err", err)
				}
			}
		}
		if ls.Served != nil && ls.Newest != nil && ls.Newest.Size > ls.Served.Size {
			ls.BehindRecords = ls.Newest.Size - ls.Served.Size
			ls.BehindSeconds = max(0, ls.Newest.FirstSeen.Sub(ls.Served.FirstSeen).Seconds())
		}
		st.Logs = append(st.Logs, ls)
	}
	// Newest first, at most maxEvidenceShown.
	sortEvidence(st.Evidence)
	if len(st.Evidence) > maxEvidenceShown {
		st.Evidence = st.Evidence[:maxEvidenceShown]
	}
	st.Upstreams = s.upstreamStatus()
	return st
}

func sortEvidence(evs []EvidenceStatus) {
	last := func(e EvidenceStatus) time.Time {
		if e.LastSeen.After(e.FirstSeen) {
			return e.LastSeen
		}
		return e.FirstSeen
	}
	// Insertion sort: the list is short, and this keeps equal times in
	// the store's order.
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && last(evs[j]).After(last(evs[j-1])); j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
}

func headStatus(h store.Head) *HeadStatus {
	return &HeadStatus{Size: h.Size, Hash: base64.StdEncoding.EncodeToString(h.Hash[:]), FirstSeen: h.FirstSeen.UTC()}
}

func evidenceStatus(log string, e store.Evidence) EvidenceStatus {
	return EvidenceStatus{Log: log, Kind: shownText(e.Kind, 100), Source: shownText(redact.URL(e.Source), 300),
		Object: shownText(e.Object, 300), Message: shownText(e.Message, 500), Count: max(e.Count, 1),
		FirstSeen: e.CreatedAt.UTC(), LastSeen: e.LastSeen.UTC()}
}

func (s *Server) upstreamStatus() []UpstreamStatus {
	if s.upstreams == nil {
		out := make([]UpstreamStatus, 0, len(s.upstreamURLs))
		for _, u := range s.upstreamURLs {
			out = append(out, UpstreamStatus{URL: shownText(redact.URL(u), 300), State: "not measured", History: []SampleStatus{}})
		}
		return out
	}
	hs := s.upstreams.Health()
	out := make([]UpstreamStatus, 0, len(hs))
	for _, h := range hs {
		u := UpstreamStatus{URL: shownText(redact.URL(h.URL), 300), Measured: true, State: shownText(string(h.State), 40),
			LatencySeconds: h.Latency.Seconds(), P50Seconds: h.P50.Seconds(), P99Seconds: h.P99.Seconds(),
			Requests: h.Requests, Errors: h.Errors, Hedges: h.Hedges, Lies: h.Lies,
			LastError: shownText(h.LastError, 300), History: make([]SampleStatus, 0, len(h.History))}
		if !h.LastErrorAt.IsZero() {
			t := h.LastErrorAt.UTC()
			u.LastErrorAt = &t
		}
		if !h.Until.IsZero() {
			t := h.Until.UTC()
			u.Until = &t
		}
		for _, p := range h.History {
			u.History = append(u.History, SampleStatus{At: p.At.UTC(), P50Seconds: p.P50.Seconds(), Requests: p.Requests, Errors: p.Errors})
		}
		out = append(out, u)
	}
	return out
}

// shownText makes text from a store, an upstream or an error fit to show:
// valid UTF-8 without control characters (replaced by U+FFFD), at most max
// bytes. Escaping for HTML or JSON is left to the encoders.
func shownText(s string, max int) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if !clean {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return utf8.RuneError
			}
			return r
		}, strings.ToValidUTF8(s, string(utf8.RuneError)))
	}
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// requestStatus is the status data with the fields built from the request.
func (s *Server) requestStatus(c *gin.Context) Status {
	st := *s.statusData(c.Request.Context())
	st.URL = s.baseURL(c.Request)
	st.Key = s.key
	if s.key != "" && st.URL != "" {
		st.GOSUMDB = s.key + " " + st.URL
		st.GOSUMDBCommand = `go env -w GOSUMDB="` + st.GOSUMDB + `"`
	}
	if st.URL != "" && s.log != "" {
		if s.log != defaultSumDB && s.key != "" {
			st.ProxyCommands = append(st.ProxyCommands, "go env -w GOSUMDB="+s.key)
		}
		st.ProxyCommands = append(st.ProxyCommands, `go env -w GOPROXY="`+st.URL+`,<your proxy>"`)
	}
	if st.Logs == nil {
		st.Logs = []LogStatus{}
	}
	if st.Upstreams == nil {
		st.Upstreams = []UpstreamStatus{}
	}
	if st.Evidence == nil {
		st.Evidence = []EvidenceStatus{}
	}
	if st.ProxyCommands == nil {
		st.ProxyCommands = []string{}
	}
	return st
}

// defaultSumDB is the go command's default GOSUMDB: with the proxy form it
// needs no GOSUMDB setting.
const defaultSumDB = "sum.golang.org"

// baseURL is the URL clients reach this server at. Nothing of the request
// is trusted: X-Forwarded-* headers are ignored (Config.PublicURL says what
// a proxy in front publishes), and a Host header that is not a valid
// host[:port] is replaced by the address the request came in on.
func (s *Server) baseURL(r *http.Request) string {
	if s.publicURL != "" {
		return s.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if !validHostPort(host) {
		addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !ok || !validHostPort(addr.String()) {
			return ""
		}
		host = addr.String()
	}
	return scheme + "://" + host
}

// validHostPort reports whether hp is a host name, an IPv4 address or a
// bracketed IPv6 address, optionally with a port: nothing that could break
// out of a shell word, an HTML attribute or a URL's authority.
func validHostPort(hp string) bool {
	if hp == "" || len(hp) > 261 {
		return false
	}
	host, port := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(hp[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		rest := hp[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if !validPort(port) {
				return false
			}
		}
		return true
	}
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		host, port = hp[:i], hp[i+1:]
		if !validPort(port) {
			return false
		}
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535 && p[0] != '+'
}

// ErrPublicURL reports a --public-url that is not an http or https URL
// with a valid host, and nothing but a plain path after it.
var ErrPublicURL = errors.New("not a public URL: want http(s)://host[:port][/path], without user info, query or fragment")

// CheckPublicURL checks the URL clients reach a server at (behind a proxy
// that terminates TLS, say) and returns it without a trailing slash. The
// go command appends /lookup/..., /tile/... and /sumdb/<name>/... to it.
func CheckPublicURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, ErrPublicURL)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.Opaque != "" || !validHostPort(u.Host) {
		return "", fmt.Errorf("%q: %w", redact.URL(s), ErrPublicURL)
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	for i := 0; i < len(p); i++ {
		b := p[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-._~/", b) >= 0) {
			return "", fmt.Errorf("%q: %w", s, ErrPublicURL)
		}
	}
	if first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/"); slices.Contains(rootSegments, first) {
		return "", fmt.Errorf("%q: %w: its path may not start with /%s, a path the server answers itself", s, ErrPublicURL, first)
	}
	return u.Scheme + "://" + u.Host + p, nil
}

// rootSegments are the first segments of the paths the server answers at
// its root (see newEngine): a public URL's path may not start with one,
// since the server also answers under that path (see Server.Handler).
var rootSegments = []string{"latest", "lookup", "tile", "sumdb", "healthz", "readyz", "livez", "version", "status.json", "metrics"}

//go:embed status.html
var statusHTML string

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"when":      when,
	"ago":       ago,
	"secs":      secs,
	"sparkline": sparkline,
	"count":     func(n int64) string { return groupDigits(n) },
}).Parse(statusHTML))

// statusPageView is the template's data: the status and the time it is
// shown at.
type statusPageView struct {
	Status
	Now time.Time
}

// Content-Security-Policy of the status page: no script of any kind, styles
// and images inline only, never framed.
var hdrStatusCSP = []string{"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}

// statusPage serves the status page at /: plain HTML, no JavaScript.
func (s *Server) statusPage(c *gin.Context) {
	st := s.requestStatus(c)
	var b bytes.Buffer
	if err := statusTemplate.Execute(&b, statusPageView{Status: st, Now: time.Now().UTC()}); err != nil {
		s.logger.ErrorContext(c.Request.Context(), "status page: rendering", "err", err)
		s.fail(c, http.StatusInternalServerError, "internal error")
		return
	}
	h := c.Writer.Header()
	h["Content-Security-Policy"] = hdrStatusCSP
	h["X-Content-Type-Options"] = hdrNoSniff
	h["X-Frame-Options"] = []string{"DENY"}
	s.writeStatus(c, st, []string{"text/html; charset=utf-8"}, b.Bytes())
}

// statusJSON serves /status.json: the page's content for scripts.
func (s *Server) statusJSON(c *gin.Context) {
	st := s.requestStatus(c)
	body, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		s.logger.ErrorContext(c.Request.Context(), "status.json: encoding", "err", err)
		s.fail(c, http.StatusInternalServerError, "internal error")
		return
	}
	c.Writer.Header()["X-Content-Type-Options"] = hdrNoSniff
	s.writeStatus(c, st, hdrJSON, append(body, '\n'))
}

// writeStatus sends a status answer, uncacheable (it is built from the
// request's Host), with 503 when the store does not answer.
func (s *Server) writeStatus(c *gin.Context, st Status, contentType []string, body []byte) {
	h := c.Writer.Header()
	h["Content-Type"] = contentType
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	code := http.StatusOK
	if !st.StoreOK {
		code = http.StatusServiceUnavailable
		h["Retry-After"] = s.retryAfter
	}
	c.Writer.WriteHeader(code)
	c.Writer.Write(body)
}

// Template helpers.

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return humanDuration(now.Sub(t).Seconds()) + " ago"
}

func secs(s float64) string { return humanDuration(s) }

func humanDuration(s float64) string {
	switch {
	case s < 0:
		return "0s"
	case s < 1:
		return strconv.FormatFloat(s*1000, 'f', 0, 64) + "ms"
	case s < 120:
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	case s < 2*3600:
		return strconv.FormatFloat(s/60, 'f', 0, 64) + "m"
	case s < 2*86400:
		return strconv.FormatFloat(s/3600, 'f', 1, 64) + "h"
	}
	return strconv.FormatFloat(s/86400, 'f', 1, 64) + "d"
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Sparkline is an inline SVG chart of an upstream's median latency over
// its history.
type Sparkline struct {
	Width, Height int
	Points        string // the polyline's points, "x,y x,y ..."
	Max           string // the largest latency shown, for the label
	Errors        []SparkMark
}

// A SparkMark marks a minute with errors.
type SparkMark struct{ X, Y, H string }

func sparkline(h []SampleStatus) *Sparkline {
	const w, ht, slots = 180, 32, 60
	if len(h) == 0 {
		return nil
	}
	top := 0.0
	for _, p := range h {
		top = math.Max(top, p.P50Seconds)
	}
	sl := &Sparkline{Width: w, Height: ht, Max: humanDuration(top)}
	if top == 0 {
		top = 1
	}
	step := float64(w) / float64(slots-1)
	off := slots - len(h) // the newest sample at the right edge
	if off < 0 {
		h, off = h[len(h)-slots:], 0
	}
	var pts strings.Builder
	for i, p := range h {
		x := float64(off+i) * step
		if p.Errors > 0 {
			sl.Errors = append(sl.Errors, SparkMark{X: fmt.Sprintf("%.1f", x-1), Y: "0", H: strconv.Itoa(ht)})
		}
		if p.Requests == 0 || p.Requests <= p.Errors {
			continue
		}
		y := float64(ht-2) - p.P50Seconds/top*float64(ht-4)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	sl.Points = strings.TrimSpace(pts.String())
	return sl
}
