package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/upstream"
)

// getWithHost requests path from h with the Host header host.
func getWithHost(h http.Handler, path, host string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Host = host
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// jsonPath walks a decoded JSON value by object keys and array indexes, so
// that the test reads /status.json by its documented field names, not
// through the Go struct that writes it.
func jsonPath(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("status.json: %v: not an object at %q", path, k)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("status.json: %v: no field %q", path, k)
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("status.json: %v: no element %d", path, k)
			}
			v = a[k]
		}
	}
	return v
}

// TestStatusJSON: after an honest sync and then an upstream caught lying
// (heads whose signature does not verify), /status.json shows the served
// and newest heads and the lag between them, the in-process sync's last
// failure, the upstream (its credentials masked), the GOSUMDB and GOPROXY
// lines for the request's host, and the evidence, counted; the HTML page
// shows the same, the evidence above everything else, with no script.
func TestStatusJSON(t *testing.T) {
	ctx := context.Background()
	u, err := sumdbtest.NewSynthetic("sum.example.test", 1000)
	if err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	t.Cleanup(u.Close)
	st, err := postgres.Open(ctx, pgtest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	syncer, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(), Mode: mirror.ModeFull})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := syncer.Once(ctx); err != nil || res.Served.Size != 1000 {
		t.Fatalf("honest sync: %+v, %v", res, err)
	}
	sl := NewSyncLog("@every 5m")
	run := func() error {
		sl.Started(u.Name())
		start := time.Now()
		res, err := syncer.Once(ctx)
		sl.Finished(u.Name(), start, time.Now(), res.Served.Size, res.Records, err)
		return err
	}

	// The log grows; the newer head is verified and stored but not served
	// yet (as a sync stopped half-way leaves it).
	if err := u.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	tree := u.Tree()
	if err := st.AddHead(ctx, u.Name(), store.Head{Size: tree.N, Hash: tree.Hash, Note: u.SignedHead()}); err != nil {
		t.Fatal(err)
	}
	// Then the upstream lies, twice.
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature})
	for range 2 {
		if err := run(); err == nil {
			t.Fatal("a sync from an upstream with bad signatures succeeded")
		}
	}

	srv := New(Config{Store: st, Log: u.Name(), Key: u.VerifierKey(), Syncs: sl,
		UpstreamURLs: []string{"https://builder:s3cret@upstream.example/sumdb/" + u.Name()}})
	h := srv.Handler()

	w := getWithHost(h, "/status.json", "mirror.example:8080")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/status.json: %d %q\n%s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if strings.Contains(w.Body.String(), "s3cret") {
		t.Errorf("/status.json shows the upstream's password:\n%s", w.Body)
	}
	var doc any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	base := "http://mirror.example:8080"
	want := map[string]any{
		"store_ok":        true,
		"log":             u.Name(),
		"url":             base,
		"key":             u.VerifierKey(),
		"gosumdb":         u.VerifierKey() + " " + base,
		"gosumdb_command": `go env -w GOSUMDB="` + u.VerifierKey() + " " + base + `"`,
		"evidence_total":  1.0,
	}
	for k, v := range want {
		if got := jsonPath(t, doc, k); got != v {
			t.Errorf("status.json %s = %v, want %v", k, got, v)
		}
	}
	if got := jsonPath(t, doc, "proxy_commands"); len(got.([]any)) != 2 ||
		got.([]any)[0] != "go env -w GOSUMDB="+u.VerifierKey() || got.([]any)[1] != `go env -w GOPROXY="`+base+`,<your proxy>"` {
		t.Errorf("proxy_commands = %q", got)
	}
	log := jsonPath(t, doc, "logs", 0)
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"name"}, u.Name()},
		{[]any{"root"}, true},
		{[]any{"served", "size"}, 1000.0},
		{[]any{"newest", "size"}, 1300.0},
		{[]any{"newest", "hash"}, tree.Hash.String()},
		{[]any{"behind_records"}, 300.0},
		{[]any{"sync", "in_process"}, true},
		{[]any{"sync", "schedule"}, "@every 5m"},
		{[]any{"sync", "running"}, false},
		{[]any{"sync", "last", "outcome"}, "failure"},
		{[]any{"sync", "last_success"}, nil},
	} {
		if got := jsonPath(t, log, c.path...); got != c.want {
			t.Errorf("status.json logs[0] %v = %v, want %v", c.path, got, c.want)
		}
	}
	if msg, _ := jsonPath(t, log, "sync", "last", "error").(string); !strings.Contains(msg, "does not verify") {
		t.Errorf("last sync error %q does not say what failed", msg)
	}
	if _, err := time.Parse(time.RFC3339, jsonPath(t, log, "served", "first_seen").(string)); err != nil {
		t.Errorf("served.first_seen: %v", err)
	}
	ev := jsonPath(t, doc, "evidence", 0)
	for k, v := range map[string]any{"log": u.Name(), "kind": store.EvidenceBadSig, "source": url, "count": 2.0} {
		if got := jsonPath(t, ev, k); got != v {
			t.Errorf("status.json evidence[0].%s = %v, want %v", k, got, v)
		}
	}
	for _, k := range []string{"object", "message", "first_seen", "last_seen"} {
		jsonPath(t, ev, k)
	}
	up := jsonPath(t, doc, "upstreams", 0)
	if got := jsonPath(t, up, "url"); got != "https://builder:xxxxx@upstream.example/sumdb/"+u.Name() {
		t.Errorf("upstream url = %v", got)
	}
	if got := jsonPath(t, up, "state"); got != "not measured" || jsonPath(t, up, "measured") != false {
		t.Errorf("upstream state = %v, measured %v", got, jsonPath(t, up, "measured"))
	}

	// The page: the evidence first, then the lines to use; no script.
	w = getWithHost(h, "/", "mirror.example:8080")
	page := w.Body.String()
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}
	evAt, lineAt := strings.Index(page, `id="evidence"`), strings.Index(page, `id="gosumdb"`)
	if evAt < 0 || lineAt < 0 || evAt > lineAt {
		t.Errorf("the page does not show the evidence (at %d) above the GOSUMDB line (at %d)", evAt, lineAt)
	}
	text := html.UnescapeString(page)
	for _, s := range []string{store.EvidenceBadSig, url, "2×", "1,000 records", "1,300 records", "300 records", "failed", "not measured",
		`<pre class="cmd" id="gosumdb">go env -w GOSUMDB="` + u.VerifierKey() + " " + base + `"</pre>`} {
		if !strings.Contains(text, s) {
			t.Errorf("the page does not show %q", s)
		}
	}
	if strings.Contains(strings.ToLower(page), "<script") || strings.Contains(page, "s3cret") {
		t.Errorf("the page holds a script or the upstream's password")
	}

	// A successful run (the upstream honest again) is shown as the last
	// success, and the evidence stays.
	u.SetFault(sumdbtest.Fault{})
	if err := run(); err != nil {
		t.Fatal(err)
	}
	w = getWithHost(New(Config{Store: st, Log: u.Name(), Key: u.VerifierKey(), Syncs: sl}).Handler(), "/status.json", "mirror.example")
	doc = nil
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if got := jsonPath(t, doc, "logs", 0, "sync", "last_success", "served"); got != 1300.0 {
		t.Errorf("last success served %v, want 1300", got)
	}
	if got := jsonPath(t, doc, "logs", 0, "behind_records"); got != 0.0 {
		t.Errorf("behind_records %v after catching up", got)
	}
	if got := jsonPath(t, doc, "evidence_total"); got != 1.0 {
		t.Errorf("evidence_total %v after an honest run, want 1", got)
	}
}

// TestStatusURLFromRequest: the URL shown comes from the request's Host
// when it is a valid host[:port], from the address the request came in on
// when it is not, from --public-url when given, and never from
// X-Forwarded-* headers.
func TestStatusURLFromRequest(t *testing.T) {
	st, _ := openStore(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 300)
	l.sync(t, st, 0, 300, 300, true)
	const key = "sum.example.test+01234567+AAAA"
	hs := httptest.NewServer(New(Config{Store: st, Log: l.name, Key: key}).Handler())
	defer hs.Close()
	gosumdb := func(host string, hdr map[string]string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, hs.URL+"/status.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s Status
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("Host %q: %d %v", host, resp.StatusCode, err)
		}
		return s.GOSUMDB
	}
	self := key + " " + hs.URL
	for _, c := range []struct {
		host string
		hdr  map[string]string
		want string
	}{
		{"", nil, self},
		{"sumkeep.internal", nil, key + " http://sumkeep.internal"},
		{"sumkeep.internal:8443", nil, key + " http://sumkeep.internal:8443"},
		{"[::1]:8080", nil, key + " http://[::1]:8080"},
		{"10.1.2.3", nil, key + " http://10.1.2.3"},
		// Hosts Go's server accepts that are not host names: the shown URL
		// falls back to the address the request came in on.
		{"evil'host", nil, self},
		{"a&b=c", nil, self},
		{"host:99999", nil, self},
		{"host:80:80", nil, self},
		{"-x.example", nil, self},
		{"sumkeep.internal", map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example;proto=https"},
			key + " http://sumkeep.internal"},
	} {
		if got := gosumdb(c.host, c.hdr); got != c.want {
			t.Errorf("Host %q %v: GOSUMDB %q, want %q", c.host, c.hdr, got, c.want)
		}
	}

	// With a public URL, that is shown whatever the request says.
	pub, err := CheckPublicURL("https://sum.corp.example/mirror/")
	if err != nil {
		t.Fatal(err)
	}
	w := getWithHost(New(Config{Store: st, Log: l.name, Key: key, PublicURL: pub}).Handler(), "/status.json", "evil.example")
	var s Status
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if want := key + " https://sum.corp.example/mirror"; s.GOSUMDB != want {
		t.Errorf("with a public URL: GOSUMDB %q, want %q", s.GOSUMDB, want)
	}
}

func TestCheckPublicURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://sum.corp.example":        "https://sum.corp.example",
		"http://sum.corp.example:8080/":   "http://sum.corp.example:8080",
		"https://sum.corp.example/a/b-c/": "https://sum.corp.example/a/b-c",
		"https://[2001:db8::1]:443":       "https://[2001:db8::1]:443",
	} {
		if got, err := CheckPublicURL(in); err != nil || got != want {
			t.Errorf("CheckPublicURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "sum.corp.example", "ftp://sum.corp.example", "https://u:p@sum.corp.example",
		"https://sum.corp.example/?x=1", "https://sum.corp.example/#f", "https://sum corp", `https://sum.corp.example/"x`,
		"https://sum.corp.example/a%20b", "https://:80", "https://x.example:0",
		"https://sum.corp.example/sumdb", "https://sum.corp.example/lookup/x", "https://sum.corp.example/metrics/"} {
		if got, err := CheckPublicURL(in); !errors.Is(err, ErrPublicURL) {
			t.Errorf("CheckPublicURL(%q) = %q, %v; want ErrPublicURL", in, got, err)
		}
	}
}

// TestPublicURLPath: with a public URL that has a path, the server
// answers the same under that path as at its root, so a reverse proxy that
// passes the path on unchanged works as well as one that strips it; a path
// that only starts with the same letters is not the public one.
func TestPublicURLPath(t *testing.T) {
	st, _ := openStore(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 300)
	l.sync(t, st, 0, 300, 300, true)
	pub, err := CheckPublicURL("https://sum.corp.example/mirror/")
	if err != nil {
		t.Fatal(err)
	}
	logs := new(lockedBuffer)
	s := New(Config{Store: st, Log: l.name, Key: "sum.example.test+01234567+AAAA", PublicURL: pub,
		RequestLog: true, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	m := l.mods[7]
	for _, path := range []string{"/latest", "/lookup/" + m.Path + "@" + m.Version, "/tile/8/0/000", "/sumdb/" + l.name + "/supported", "/status.json"} {
		root, under := do(h, "GET", path), do(h, "GET", "/mirror"+path)
		if root.Code != http.StatusOK || under.Code != root.Code || !bytes.Equal(under.Body.Bytes(), root.Body.Bytes()) {
			t.Errorf("%s: %d at the root, %d under /mirror, bodies equal %v", path, root.Code, under.Code, bytes.Equal(under.Body.Bytes(), root.Body.Bytes()))
		}
	}
	if w := do(h, "GET", "/mirror"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "<html") {
		t.Errorf("/mirror: %d, want the status page", w.Code)
	} else if want := `href="https://sum.corp.example/mirror/status.json"`; !strings.Contains(w.Body.String(), want) {
		// A relative link from /mirror would leave the path.
		t.Errorf("the status page under /mirror does not link %s", want)
	}
	if w := do(h, "GET", "/mirrored/latest"); w.Code != http.StatusNotFound {
		t.Errorf("/mirrored/latest: %d, want 404", w.Code)
	}
	// The request log has each path as the client asked for it.
	logged := make(map[any]bool)
	for _, line := range logs.lines(t) {
		logged[line["path"]] = true
	}
	for _, want := range []string{"/mirror/latest", "/latest", "/mirrored/latest"} {
		if !logged[want] {
			t.Errorf("the request log lacks path %s: %v", want, logged)
		}
	}
}

// TestStatusStoreDown: a store that stops answering gives a status page
// and /status.json that say so with 503, within the store timeout, not a
// hang; when it answers again, so does the page.
func TestStatusStoreDown(t *testing.T) {
	c := pgtest.NewCluster(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 300)
	l.sync(t, st, 0, 300, 300, true)
	srv := New(Config{Store: st, Log: l.name, Key: "k", StoreTimeout: time.Second, StatusCache: time.Millisecond})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	// Generous: a request may take the store timeout; a hang is minutes.
	hc := &http.Client{Timeout: time.Minute}
	get := func(p string) (int, string) {
		t.Helper()
		resp, err := hc.Get(hs.URL + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/"); code != http.StatusOK || strings.Contains(body, "does not answer") {
		t.Fatalf("/ with the store up: %d", code)
	}

	c.Pause()
	code, body := get("/")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "The store does not answer") || !strings.Contains(body, "300 records") {
		t.Errorf("/ with the store paused: %d\n%s", code, body)
	}
	code, body = get("/status.json")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"store_ok": false`) {
		t.Errorf("/status.json with the store paused: %d\n%s", code, body)
	}
	c.Resume()
	deadline := time.Now().Add(time.Minute)
	for {
		code, _ := get("/status.json")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/status.json still %d a minute after the store resumed", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthList is an upstream.HealthReporter reporting fixed measures, as
// the upstream pool does.
type healthList []upstream.Health

func (h healthList) Health() []upstream.Health { return h }

// TestStatusUpstreams: the upstreams a HealthReporter measures are shown
// with their state, latency, counts and last error, credentials masked,
// with a chart of the last hour drawn as inline SVG (no script, no image
// fetched); hostile text from an upstream is escaped.
func TestStatusUpstreams(t *testing.T) {
	st, _ := openStore(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 300)
	l.sync(t, st, 0, 300, 300, true)
	now := time.Now()
	var hist []upstream.Sample
	for i := range 60 {
		s := upstream.Sample{At: now.Add(time.Duration(i-60) * time.Minute), P50: time.Duration(50+i) * time.Millisecond, Requests: 10}
		if i == 30 {
			s.Errors = 3
		}
		hist = append(hist, s)
	}
	hr := healthList{
		{URL: "https://tok:s3cret@fast.example", State: upstream.StateHealthy, Latency: 80 * time.Millisecond,
			P50: 75 * time.Millisecond, P99: 300 * time.Millisecond, Requests: 600, Errors: 3, History: hist},
		{URL: "https://liar.example", State: upstream.StateQuarantined, Lies: 2, Until: now.Add(time.Hour),
			LastError: `<script>alert("x")</script>` + "\x1b[31m", LastErrorAt: now},
	}
	h := New(Config{Store: st, Log: l.name, Upstreams: hr, UpstreamURLs: []string{"https://ignored.example"}}).Handler()

	w := getWithHost(h, "/status.json", "m.example")
	var s Status
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Upstreams) != 2 {
		t.Fatalf("upstreams %+v, want the 2 measured", s.Upstreams)
	}
	a, b := s.Upstreams[0], s.Upstreams[1]
	if !a.Measured || a.State != "healthy" || a.URL != "https://tok:xxxxx@fast.example" || a.P99Seconds != 0.3 || a.Requests != 600 || len(a.History) != 60 {
		t.Errorf("first upstream %+v", a)
	}
	if b.State != "quarantined" || b.Lies != 2 || b.Until == nil || strings.ContainsRune(b.LastError, '\x1b') {
		t.Errorf("second upstream %+v", b)
	}

	page := getWithHost(h, "/", "m.example").Body.String()
	if strings.Count(page, "<svg") != 1 || !strings.Contains(page, "<polyline") || !strings.Contains(page, "<rect") {
		t.Errorf("the page has no latency chart for the measured upstream")
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "s3cret") || strings.Contains(page, "ignored.example") {
		t.Errorf("the page shows a script, a secret, or the unmeasured URL list:\n%s", page)
	}
	if !strings.Contains(page, "&lt;script&gt;") || !strings.Contains(page, `class="state-quarantined"`) {
		t.Errorf("the quarantined upstream's last error is not shown escaped")
	}
}
