package metrics_test

import (
	"context"
	"errors"

	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sumkeep/sumkeep/internal/pgtest"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/metrics"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/server"
	"github.com/sumkeep/sumkeep/store"
	"github.com/sumkeep/sumkeep/store/postgres"
	"github.com/sumkeep/sumkeep/store/sqlite"
	"github.com/sumkeep/sumkeep/upstream"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

const (
	fullLog = "full.test"
	lazyLog = "lazy.test"
)

func newUpstream(t *testing.T, name string, n int) (*sumdbtest.Upstream, string) {
	return newUpstreamB(t, name, n)
}

func newUpstreamB(t testing.TB, name string, n int) (*sumdbtest.Upstream, string) {
	t.Helper()
	u, err := sumdbtest.NewSynthetic(name, n)
	if err != nil {
		t.Fatal(err)
	}
	url := u.Start()
	t.Cleanup(u.Close)
	return u, url
}

func newSyncer(t *testing.T, st store.Store, u *sumdbtest.Upstream, url, mode string, pm *metrics.Process) *mirror.Syncer {
	t.Helper()
	s, err := mirror.New(mirror.Config{
		Store:       st,
		Upstream:    upstream.NewClient(url, nil, upstream.WithObserver(pm.ObserveUpstream)),
		Key:         u.VerifierKey(),
		Mode:        mode,
		BatchTiles:  2,
		Concurrency: 4,
		Observer:    pm,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scrape GETs url and parses the exposition text; it returns the text too.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("GET %s: parsing the exposition: %v\n%s", url, err, body)
	}
	return fams, string(body)
}

// value returns the value of the series of family name with exactly the
// labels given as name, value pairs (a histogram's sample count), and
// whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			i := slices.Index(labels, l.GetName())
			if i < 0 || i%2 != 0 || labels[i+1] != l.GetValue() {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// want checks one series' value.
func want(t *testing.T, fams map[string]*dto.MetricFamily, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	switch {
	case !ok:
		t.Errorf("%s%v: no such series", name, labels)
	case got != v:
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}

// wantAtLeast checks that a series is there with a value of at least v.
func wantAtLeast(t *testing.T, fams map[string]*dto.MetricFamily, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	switch {
	case !ok:
		t.Errorf("%s%v: no such series", name, labels)
	case got < v:
		t.Errorf("%s%v = %v, want at least %v", name, labels, got, v)
	}
}

// labelValues returns every value label takes in family name.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	var vs []string
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && !slices.Contains(vs, l.GetValue()) {
				vs = append(vs, l.GetValue())
			}
		}
	}
	slices.Sort(vs)
	return vs
}

// promtoolCheck runs `promtool check metrics` (Debian's prometheus
// package) on an exposition. Outside CI it skips the check when promtool
// is missing; in CI it fails.
func promtoolCheck(t *testing.T, exposition string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is required in CI (apt-get install prometheus): %v", err)
		}
		t.Log("promtool not found: not checking the exposition with it")
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestScrape runs a real server on a real store, with a full log synced
// from one hermetic upstream and a lazy log fetched through from another,
// and checks that what /metrics shows moves with requests, lookups and
// syncs.
func TestScrape(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sumkeep.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		testScrape(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		st, err := postgres.Open(context.Background(), pgtest.NewDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		testScrape(t, st)
	})
}

func testScrape(t *testing.T, st store.Store) {
	ctx := context.Background()
	full, fullURL := newUpstream(t, fullLog, 1000)
	lazy, lazyURL := newUpstream(t, lazyLog, 600)

	reg := metrics.NewRegistry()
	// Read the store at every scrape, so that each shows what was just done.
	pm, err := metrics.New(reg, metrics.Config{Store: st, CacheFor: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	hm, err := metrics.NewHTTP(reg)
	if err != nil {
		t.Fatal(err)
	}
	fullSync := newSyncer(t, st, full, fullURL, mirror.ModeFull, pm)
	lazySync := newSyncer(t, st, lazy, lazyURL, mirror.ModeLazy, pm)
	srv := server.New(server.Config{Store: st, Log: fullLog, Fetch: map[string]server.Fetcher{lazyLog: lazySync},
		Observer: hm, Metrics: metrics.Handler(reg)})
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	get := func(path string, code int) {
		t.Helper()
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}

	// Before anything happened: the lookup outcomes are there at 0, and
	// nothing is served.
	fams, _ := scrape(t, hs.URL+"/metrics")
	for _, o := range server.LookupOutcomes() {
		want(t, fams, 0, "sumkeep_lookups_total", "outcome", o.String())
	}
	if _, ok := fams["sumkeep_log_served_tree_size"]; ok {
		t.Errorf("sumkeep_log_served_tree_size before any log is stored")
	}

	res, err := fullSync.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tiles == 0 {
		t.Errorf("a full sync of 1000 records reports %d tiles written", res.Tiles)
	}
	if err := srv.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	path, vers, _ := full.Module(17)
	lazyPath, lazyVers, _ := lazy.Module(345)
	failPath, failVers, _ := lazy.Module(346)
	get("/lookup/"+path+"@"+vers, 200)                           // store_hit
	get("/lookup/"+path+"@"+vers, 200)                           // cache_hit
	get("/lookup/example.com/nowhere@v1.0.0", 404)               // not_found
	get("/lookup/example.com/nowhere@vv", 400)                   // not a lookup
	get("/sumdb/"+lazyLog+"/lookup/"+lazyPath+"@"+lazyVers, 200) // fetched
	lazy.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError})
	get("/sumdb/"+lazyLog+"/lookup/"+failPath+"@"+failVers, 404) // failed: the upstream could not be asked
	lazy.SetFault(sumdbtest.Fault{})
	get("/tile/8/0/000", 200)
	get("/tile/8/data/001", 200)
	get("/sumdb/"+fullLog+"/supported", 200)
	get("/no/such/path/a1b2c3", 404)

	fams, text := scrape(t, hs.URL+"/metrics")
	for _, o := range []string{"store_hit", "cache_hit", "fetched", "not_found", "failed"} {
		want(t, fams, 1, "sumkeep_lookups_total", "outcome", o)
	}
	want(t, fams, 2, "sumkeep_http_requests_total", "route", "/lookup/*mv", "code", "200")
	want(t, fams, 1, "sumkeep_http_requests_total", "route", "/lookup/*mv", "code", "404")
	want(t, fams, 1, "sumkeep_http_requests_total", "route", "/lookup/*mv", "code", "400")
	want(t, fams, 1, "sumkeep_http_requests_total", "route", "/sumdb/:name/lookup/*mv", "code", "200")
	want(t, fams, 1, "sumkeep_http_requests_total", "route", "/sumdb/:name/supported", "code", "200")
	want(t, fams, 2, "sumkeep_http_requests_total", "route", "/tile/*tile", "code", "200")
	want(t, fams, 1, "sumkeep_http_requests_total", "route", server.RouteUnmatched, "code", "404")
	want(t, fams, 4, "sumkeep_http_request_duration_seconds", "route", "/lookup/*mv")
	// Routes are patterns: no path a client sent is a label.
	for _, r := range labelValues(fams, "sumkeep_http_requests_total", "route") {
		if strings.Contains(r, "example.com") || strings.Contains(r, "a1b2c3") || strings.Contains(r, lazyLog) || strings.Contains(r, "000") {
			t.Errorf("route label %q holds a raw path", r)
		}
	}

	// Upstream requests: the full sync's, and the lazy fetches'.
	wantAtLeast(t, fams, 1, "sumkeep_upstream_request_duration_seconds", "upstream", fullURL, "kind", "latest")
	wantAtLeast(t, fams, 4, "sumkeep_upstream_request_duration_seconds", "upstream", fullURL, "kind", "data_tile")
	wantAtLeast(t, fams, 1, "sumkeep_upstream_request_duration_seconds", "upstream", lazyURL, "kind", "lookup")
	wantAtLeast(t, fams, 1, "sumkeep_upstream_errors_total", "upstream", lazyURL, "kind", "lookup", "error", "status_5xx")
	if _, ok := value(fams, "sumkeep_upstream_errors_total", "upstream", fullURL, "kind", "data_tile", "error", "status_5xx"); ok {
		t.Errorf("errors counted for an upstream that answered every request")
	}
	want(t, fams, 0, "sumkeep_upstream_lies_total", "upstream", fullURL)

	// The sync run.
	want(t, fams, 1, "sumkeep_sync_runs_total", "log", fullLog, "outcome", "success")
	want(t, fams, 0, "sumkeep_sync_runs_total", "log", fullLog, "outcome", "failure")
	want(t, fams, 1, "sumkeep_sync_duration_seconds", "log", fullLog)
	want(t, fams, 1000, "sumkeep_sync_records_written_total", "log", fullLog)
	want(t, fams, float64(res.Tiles), "sumkeep_sync_tiles_written_total", "log", fullLog)
	if v, _ := value(fams, "sumkeep_sync_last_success_timestamp_seconds", "log", fullLog); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("sumkeep_sync_last_success_timestamp_seconds = %v, want the time of the run", v)
	}

	// The logs, as the store holds them.
	want(t, fams, 1000, "sumkeep_log_served_tree_size", "log", fullLog)
	want(t, fams, 1000, "sumkeep_log_newest_tree_size", "log", fullLog)
	want(t, fams, 0, "sumkeep_log_lag_records", "log", fullLog)
	want(t, fams, 1000, "sumkeep_log_records_stored", "log", fullLog)
	want(t, fams, 600, "sumkeep_log_served_tree_size", "log", lazyLog)
	want(t, fams, 1, "sumkeep_log_records_stored", "log", lazyLog)
	if v, ok := value(fams, "sumkeep_log_served_head_age_seconds", "log", fullLog); !ok || v < 0 {
		t.Errorf("sumkeep_log_served_head_age_seconds = %v, %v", v, ok)
	}
	for _, k := range []string{store.EvidenceFork, store.EvidenceBadSig, store.EvidenceBadTile} {
		want(t, fams, 0, "sumkeep_evidence", "log", fullLog, "kind", k)
	}
	size, ok := value(fams, "sumkeep_store_size_bytes")
	if !ok || size <= 0 {
		t.Errorf("sumkeep_store_size_bytes = %v, %v", size, ok)
	}
	promtoolCheck(t, text)

	// The upstream grows, a new head is known but not yet synced: lag.
	if err := full.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A lookup the lazy log lacks makes it learn (and serve) the newest
	// head of its own upstream; for the full log, a failed run that
	// stored the new head shows the lag.
	full.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultServerError, Prefix: "/tile/8/data/"})
	if _, err := fullSync.Once(lctx); err == nil {
		t.Fatal("a sync whose upstream answers no tile succeeded")
	}
	fams, _ = scrape(t, hs.URL+"/metrics")
	want(t, fams, 1, "sumkeep_sync_runs_total", "log", fullLog, "outcome", "failure")
	want(t, fams, 1300, "sumkeep_log_newest_tree_size", "log", fullLog)
	want(t, fams, 1000, "sumkeep_log_served_tree_size", "log", fullLog)
	want(t, fams, 300, "sumkeep_log_lag_records", "log", fullLog)
	wantAtLeast(t, fams, 1, "sumkeep_upstream_errors_total", "upstream", fullURL, "kind", "data_tile", "error", "status_5xx")

	full.SetFault(sumdbtest.Fault{})
	if _, err := fullSync.Once(lctx); err != nil {
		t.Fatal(err)
	}
	fams, _ = scrape(t, hs.URL+"/metrics")
	want(t, fams, 2, "sumkeep_sync_runs_total", "log", fullLog, "outcome", "success")
	want(t, fams, 1300, "sumkeep_sync_records_written_total", "log", fullLog)
	want(t, fams, 1300, "sumkeep_log_served_tree_size", "log", fullLog)
	want(t, fams, 0, "sumkeep_log_lag_records", "log", fullLog)
	want(t, fams, 1300, "sumkeep_log_records_stored", "log", fullLog)
	if v, _ := value(fams, "sumkeep_store_size_bytes"); v <= size {
		t.Errorf("sumkeep_store_size_bytes = %v after storing 300 more records, %v before", v, size)
	}

	// A lie: evidence kept, counted against the upstream that told it.
	if err := full.AddSynthetic(10); err != nil {
		t.Fatal(err)
	}
	full.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature})
	_, err = fullSync.Once(lctx)
	if _, ok := errors.AsType[*mirror.MisbehaviourError](err); !ok {
		t.Fatalf("sync from an upstream with a bad signature: %v, want a MisbehaviourError", err)
	}
	full.SetFault(sumdbtest.Fault{})
	fams, text = scrape(t, hs.URL+"/metrics")
	want(t, fams, 1, "sumkeep_evidence", "log", fullLog, "kind", store.EvidenceBadSig)
	want(t, fams, 1, "sumkeep_upstream_lies_total", "upstream", fullURL)
	want(t, fams, 0, "sumkeep_upstream_lies_total", "upstream", lazyURL)
	want(t, fams, 2, "sumkeep_sync_runs_total", "log", fullLog, "outcome", "failure")
	promtoolCheck(t, text)
}

// reporter is an upstream pool's health report, as upstream.HealthReporter
// gives it.
type reporter []upstream.Health

func (r reporter) Health() []upstream.Health { return r }

// TestHealthReporter checks the metrics an upstream pool's health gives:
// state, hedged requests and lies (the larger of its count and the
// store's evidence).
func TestHealthReporter(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sumkeep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const a, b = "https://a.example", "https://b.example/sumdb/sum.golang.org"
	for range 3 {
		if err := st.AddEvidence(ctx, fullLog, store.Evidence{Kind: store.EvidenceBadTile, Message: "flipped", Source: b, Object: "tile/8/0/001"}); err != nil {
			t.Fatal(err)
		}
	}
	r := reporter{
		{URL: a, State: upstream.StateHealthy, Hedges: 4},
		{URL: b, State: upstream.StateQuarantined, Lies: 1, Hedges: 0},
	}
	reg := metrics.NewRegistry()
	if _, err := metrics.New(reg, metrics.Config{Store: st, Health: r}); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(metrics.Handler(reg))
	defer hs.Close()
	fams, text := scrape(t, hs.URL)
	for _, s := range []upstream.State{upstream.StateHealthy, upstream.StateSlow, upstream.StateDown, upstream.StateQuarantined} {
		wa, wb := 0.0, 0.0
		if s == upstream.StateHealthy {
			wa = 1
		}
		if s == upstream.StateQuarantined {
			wb = 1
		}
		want(t, fams, wa, "sumkeep_upstream_state", "upstream", a, "state", string(s))
		want(t, fams, wb, "sumkeep_upstream_state", "upstream", b, "state", string(s))
	}
	want(t, fams, 4, "sumkeep_upstream_hedged_requests_total", "upstream", a)
	want(t, fams, 0, "sumkeep_upstream_hedged_requests_total", "upstream", b)
	want(t, fams, 0, "sumkeep_upstream_lies_total", "upstream", a)
	want(t, fams, 3, "sumkeep_upstream_lies_total", "upstream", b) // evidence seen 3 times beats the pool's 1
	want(t, fams, 1, "sumkeep_evidence", "log", fullLog, "kind", store.EvidenceBadTile)
	promtoolCheck(t, text)
}

// TestStoreDown checks that a store that fails leaves the per-log metrics
// out and serves the rest.
func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sumkeep.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddEvidence(ctx, fullLog, store.Evidence{Kind: store.EvidenceBadTile, Message: "flipped", Source: "https://a.example", Object: "tile/8/0/001"}); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	pm, err := metrics.New(reg, metrics.Config{Store: st, CacheFor: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	pm.SyncRun(mirror.Result{Log: fullLog, Records: 5}, nil)
	hs := httptest.NewServer(metrics.Handler(reg))
	defer hs.Close()
	fams, _ := scrape(t, hs.URL)
	want(t, fams, 1, "sumkeep_evidence", "log", fullLog, "kind", store.EvidenceBadTile)
	want(t, fams, 0, "sumkeep_log_newest_tree_size", "log", fullLog)
	st.Close()
	fams, _ = scrape(t, hs.URL)
	if _, ok := fams["sumkeep_evidence"]; ok {
		t.Errorf("per-log metrics shown from a closed store")
	}
	want(t, fams, 5, "sumkeep_sync_records_written_total", "log", fullLog)
}
