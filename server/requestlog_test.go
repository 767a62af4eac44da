package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/sumkeep/sumkeep/store"
)

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// lines returns the JSON log lines written so far, decoded, and fails the
// test on a line that is not one JSON object.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not one JSON object: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// fetchStub is a Fetcher for lazy mode that stores the record asked for
// from a test log, as the mirror's does after verifying it.
type fetchStub struct {
	t  *testing.T
	l  *testLog
	st store.Store
}

func (f fetchStub) Fetch(ctx context.Context, path, version string) error {
	for id, m := range f.l.mods {
		if m.Path == path && m.Version == version {
			b := f.l.batch(f.t, int64(id), int64(id)+1)
			b.Synced, b.Serve = -1, f.l.size()
			return f.st.Commit(ctx, f.l.name, b)
		}
	}
	return store.ErrNotFound
}

// TestRequestLog: one line per request with method, path, status, bytes,
// duration and whether it was fetched through; none when turned off;
// fewer when sampled; hostile paths stay one escaped field, with what
// looks like credentials masked.
func TestRequestLog(t *testing.T) {
	st, _ := openStore(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 600)
	l.sync(t, st, 0, 512, 256, true)
	// Records 512.. are in the log but not stored: lazy mode fetches them.
	if err := st.AddHead(context.Background(), l.name, l.head(t, 600)); err != nil {
		t.Fatal(err)
	}

	newServer := func(cfg Config) (http.Handler, *lockedBuffer) {
		t.Helper()
		var buf lockedBuffer
		cfg.Store, cfg.Log = st, l.name
		cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
		s := New(cfg)
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s.Handler(), &buf
	}
	requests := func(h http.Handler) {
		for i := range 20 {
			if w := do(h, http.MethodGet, lookupPath(t, l.mods[i])); w.Code != http.StatusOK {
				t.Fatalf("lookup %d: %d", i, w.Code)
			}
		}
	}

	// On: every request, with its fields.
	h, buf := newServer(Config{RequestLog: true})
	lookup := lookupPath(t, l.mods[3])
	w := do(h, http.MethodGet, lookup)
	do(h, http.MethodHead, "/latest")
	do(h, http.MethodGet, "/tile/8/0/999")
	lines := buf.lines(t)
	if len(lines) != 3 {
		t.Fatalf("%d log lines for 3 requests:\n%v", len(lines), lines)
	}
	first := lines[0]
	for k, v := range map[string]any{"level": "INFO", "msg": "request", "method": "GET", "path": lookup,
		"status": 200.0, "bytes": float64(w.Body.Len()), "fetched": false} {
		if first[k] != v {
			t.Errorf("log line %v: %s = %v, want %v", first, k, first[k], v)
		}
	}
	if d, ok := first["duration"].(float64); !ok || d <= 0 {
		t.Errorf("log line %v: duration %v", first, first["duration"])
	}
	if lines[1]["method"] != "HEAD" || lines[2]["status"] != 404.0 {
		t.Errorf("log lines %v", lines[1:])
	}

	// Fetched through (lazy mode): said so.
	h, buf = newServer(Config{RequestLog: true, Fetch: map[string]Fetcher{l.name: fetchStub{t, l, st}}})
	if w := do(h, http.MethodGet, lookupPath(t, l.mods[550])); w.Code != http.StatusOK {
		t.Fatalf("lookup fetched through: %d %s", w.Code, w.Body)
	}
	do(h, http.MethodGet, lookupPath(t, l.mods[5]))
	if lines := buf.lines(t); len(lines) != 2 || lines[0]["fetched"] != true || lines[1]["fetched"] != false {
		t.Errorf("lazy lookups logged as %v; want the first fetched, the second not", lines)
	}

	// Off: nothing.
	h, buf = newServer(Config{})
	requests(h)
	if lines := buf.lines(t); len(lines) != 0 {
		t.Errorf("request log off: %d lines", len(lines))
	}

	// Sampled: a quarter of them.
	h, buf = newServer(Config{RequestLog: true, RequestLogSample: 0.25})
	requests(h)
	if n := len(buf.lines(t)); n != 5 {
		t.Errorf("request log sampled at 0.25: %d lines for 20 requests, want 5", n)
	}

	// Hostile paths: one line each, escaped, credentials masked. The text
	// handler is what sumkeep serve uses.
	var text lockedBuffer
	s := New(Config{Store: st, Log: l.name, RequestLog: true, Logger: slog.New(slog.NewTextHandler(&text, nil))})
	h = s.Handler()
	for _, p := range []string{
		"/lookup/evil%0Aforged=line%1B[31m@v1.0.0",
		"/x%22%20status=200%20y",
		"//builder:s3cret@proxy.example/sumdb/x/latest",
		"/sumdb/x/lookup/https:%2F%2Fuser:s3cret@host/m@v1.0.0",
		"/lookup/x?token=s3cret",
		"/tile/password=s3cret/token=s3cret",
	} {
		do(h, http.MethodGet, p)
	}
	out := text.b.String()
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != 6 {
		t.Fatalf("%d lines for 6 hostile requests:\n%s", len(got), out)
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "\x1b") {
		t.Errorf("the request log shows a secret or a raw control character:\n%s", out)
	}
	// Each line is exactly the fields, the path one quoted string or one
	// word.
	for _, line := range got {
		if !logLine.MatchString(line) {
			t.Errorf("log line %q is not one field per attribute", line)
		}
	}
	if !strings.Contains(out, `path="/lookup/evil\nforged=line\x1b[31m@v1.0.0"`) {
		t.Errorf("the control characters of a path are not escaped:\n%s", out)
	}
}

var logLine = regexp.MustCompile(`^time=\S+ level=INFO msg=request method=GET path=("(?:[^"\\]|\\.)*"|[^\s"]+) status=\d+ bytes=\d+ duration=\S+ fetched=(?:true|false)$`)

func TestSampler(t *testing.T) {
	for _, rate := range []float64{1, 0.5, 0.1, 0.01, 1.0 / 3} {
		s := sampler{rate: rate}
		n := 0
		for range 3000 {
			if s.take() {
				n++
			}
		}
		if want := int(3000 * rate); n != want {
			t.Errorf("rate %v: %d of 3000 taken, want %d", rate, n, want)
		}
	}
}

func TestLoggedPath(t *testing.T) {
	for in, want := range map[string]string{
		"/lookup/golang.org/x/mod@v0.1.0": "/lookup/golang.org/x/mod@v0.1.0",
		"//u:p@host/x":                    "//xxxxx@host/x",
		"/a/https://tok@host/b@v1":        "/a/https://xxxxx@host/b@v1",
		"/a/password=pw/b":                "/a/password=xxxxx",
		"/tile/8/0/001":                   "/tile/8/0/001",
		"/x//y@z":                         "/x//xxxxx@z",
		"///":                             "///",
		"/sumdb/sum.golang.org/supported": "/sumdb/sum.golang.org/supported",
	} {
		if got := loggedPath(in); got != want {
			t.Errorf("loggedPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkRequestLog measures what the request log adds to a request
// that asks nothing of the store (/livez): off, and on writing slog text
// lines to a file as serve writes them to its standard error.
func BenchmarkRequestLog(b *testing.B) {
	f, err := os.CreateTemp(b.TempDir(), "requests-*.log")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"off", Config{}},
		{"on", Config{RequestLog: true, Logger: slog.New(slog.NewTextHandler(f, nil))}},
		{"sampled-0.1", Config{RequestLog: true, RequestLogSample: 0.1, Logger: slog.New(slog.NewTextHandler(f, nil))}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := New(c.cfg).Handler()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if w := do(h, http.MethodGet, "/livez"); w.Code != http.StatusOK {
						b.Fatalf("/livez: %d", w.Code)
					}
				}
			})
		})
	}
}
