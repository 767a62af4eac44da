package upstream_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/upstream"
)

// three returns three started copies of one log of n records.
func three(t *testing.T, n int) []*sumdbtest.Upstream {
	t.Helper()
	u, err := sumdbtest.NewSynthetic("sumdb.test", n)
	if err != nil {
		t.Fatal(err)
	}
	us := []*sumdbtest.Upstream{u}
	for range 2 {
		c, err := u.Fork(u.Size())
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, c)
	}
	for _, u := range us {
		u.Start()
		t.Cleanup(u.Close)
	}
	return us
}

func pool(cfg upstream.PoolConfig, us ...*sumdbtest.Upstream) *upstream.Pool {
	var cands []upstream.Candidate
	for _, u := range us {
		cands = append(cands, upstream.Candidate{URL: u.URL()})
	}
	return upstream.NewPool(cands, cfg)
}

func healthOf(t *testing.T, p *upstream.Pool, url string) upstream.Health {
	t.Helper()
	for _, h := range p.Health() {
		if h.URL == url {
			return h
		}
	}
	t.Fatalf("no health for %s", url)
	return upstream.Health{}
}

// hang makes u answer nothing until its client leaves.
func hang(u *sumdbtest.Upstream, prefix string) {
	u.OnRequest(func(r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) {
			<-r.Context().Done()
		}
	})
}

// failsOver sets fault on the first of three copies of a log, looks up a
// record through a pool of the three (hedging off), and checks that the
// second answered. It returns the upstreams, the pool, the answers' record
// and the record's module@version.
func failsOver(t *testing.T, fault sumdbtest.Fault) (us []*sumdbtest.Upstream, p *upstream.Pool, a *upstream.Answers, path, version string) {
	t.Helper()
	us = three(t, 300)
	us[0].SetFault(fault)
	p = pool(upstream.PoolConfig{HedgeMax: -1}, us...)
	a = upstream.NewAnswers()
	path, version, _ = us[0].Module(7)
	if _, err := p.Lookup(upstream.WithAnswers(context.Background(), a), path, version); err != nil {
		t.Fatal(err)
	}
	if got := a.From(upstream.LookupKey(path, version)); got != us[1].URL() {
		t.Errorf("answered by %q, want the second upstream %q", got, us[1].URL())
	}
	return us, p, a, path, version
}

// TestPoolFailover: a 5xx moves the request to the next upstream at once,
// the failing upstream is down, and the answer is noted as the next one's.
func TestPoolFailover(t *testing.T) {
	us, p, a, _, _ := failsOver(t, sumdbtest.Fault{Kind: sumdbtest.FaultServerError})
	ctx := upstream.WithAnswers(context.Background(), a)
	h := healthOf(t, p, us[0].URL())
	if h.State != upstream.StateDown || h.Errors != 1 || !strings.Contains(h.LastError, "503") || h.Until.IsZero() {
		t.Errorf("failing upstream: %+v, want down after one 503", h)
	}
	// Down, it is not asked again before its probe.
	us[0].ResetRequests()
	for id := int64(0); id < 5; id++ {
		path, version, _ := us[0].Module(id)
		if _, err := p.Lookup(ctx, path, version); err != nil {
			t.Fatal(err)
		}
	}
	if n := us[0].Requests("/lookup/"); n != 0 {
		t.Errorf("the down upstream was asked %d lookups", n)
	}
	// Healthy again, it is probed after its backoff and comes back.
	us[0].SetFault(sumdbtest.Fault{})
	deadline := time.Now().Add(30 * time.Second)
	for healthOf(t, p, us[0].URL()).State == upstream.StateDown {
		if time.Now().After(deadline) {
			t.Fatal("the upstream was never probed back up")
		}
		p.Latest(context.Background()) // a request lets a due probe start
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPoolHTMLPage: an upstream whose address answers 200 with an HTML
// page (a captive portal) fails the request with a PageError, as a 5xx
// does: the next upstream answers, the first is down with that error, and
// alone it yields the PageError, never the page as an answer.
func TestPoolHTMLPage(t *testing.T) {
	us, p, _, path, version := failsOver(t, sumdbtest.Fault{Kind: sumdbtest.FaultHTMLPage})
	h := healthOf(t, p, us[0].URL())
	if h.State != upstream.StateDown || h.Errors != 1 || h.Lies != 0 || !strings.Contains(h.LastError, "HTML page") {
		t.Errorf("upstream answering a page: %+v, want down after one HTML answer, no lie", h)
	}

	one := pool(upstream.PoolConfig{}, us[0])
	for _, get := range []func() error{
		func() error { _, err := one.Latest(context.Background()); return err },
		func() error { _, err := one.Lookup(context.Background(), path, version); return err },
		func() error {
			_, err := one.Tile(context.Background(), tlog.Tile{H: 8, L: 0, N: 0, W: 256})
			return err
		},
	} {
		err := get()
		if _, ok := errors.AsType[*upstream.PageError](err); !ok {
			t.Errorf("a pool of the page-answering upstream alone: %v, want a PageError", err)
		}
	}
	o := upstream.Observation{Status: 200, Err: &upstream.PageError{URL: us[0].URL(), ContentType: "text/html"}}
	if k := o.ErrorKind(); k != "html" {
		t.Errorf("ErrorKind of a PageError = %q, want html", k)
	}
}

// TestPoolMalformedLookup: a lookup or /latest answered 200 with something
// that is not such an answer (a broken proxy's JSON error) is that
// upstream's failure: the next one answers; alone, the error is a
// MalformedError.
func TestPoolMalformedLookup(t *testing.T) {
	us, p, a, path, version := failsOver(t, sumdbtest.Fault{Kind: sumdbtest.FaultMalformed, Prefix: "/lookup/"})
	ctx := upstream.WithAnswers(context.Background(), a)
	_, err := pool(upstream.PoolConfig{}, us[0]).Lookup(context.Background(), path, version)
	if _, ok := errors.AsType[*upstream.MalformedError](err); !ok {
		t.Errorf("the broken upstream alone: %v, want a MalformedError", err)
	}

	// The same for /latest: not a note at all, against one in form whose
	// signature is not the log's (the caller's to refuse, as a lie).
	us[0].SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultMalformed, Prefix: "/latest"})
	if _, err := p.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a.From(upstream.LatestKey); got == us[0].URL() {
		t.Errorf("/latest answered by the broken upstream")
	}
	_, err = pool(upstream.PoolConfig{}, us[0]).Latest(context.Background())
	if _, ok := errors.AsType[*upstream.MalformedError](err); !ok {
		t.Errorf("the broken upstream's /latest alone: %v, want a MalformedError", err)
	}
	us[0].SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultBadSignature})
	if _, err := pool(upstream.PoolConfig{}, us[0]).Latest(context.Background()); err != nil {
		t.Errorf("a /latest in form with a bad signature: %v, want it passed on", err)
	}
}

// TestPoolNotFoundNotFinal: a 404 from one upstream moves to the next; when
// every upstream says 404, the error says what each one said and is
// ErrNotServed.
func TestPoolNotFoundNotFinal(t *testing.T) {
	us := three(t, 300)
	behind, err := us[0].Fork(100) // holds only the first 100 records
	if err != nil {
		t.Fatal(err)
	}
	behind.Start()
	t.Cleanup(behind.Close)
	p := pool(upstream.PoolConfig{HedgeMax: -1}, behind, us[1])
	a := upstream.NewAnswers()
	ctx := upstream.WithAnswers(context.Background(), a)
	path, version, _ := us[0].Module(250)
	if _, err := p.Lookup(ctx, path, version); err != nil {
		t.Fatalf("a record one upstream lacks: %v", err)
	}
	if got := a.From(upstream.LookupKey(path, version)); got != us[1].URL() {
		t.Errorf("answered by %q, want %q", got, us[1].URL())
	}
	_, err = p.Lookup(ctx, "example.com/nowhere", "v1.0.0")
	var pe *upstream.PoolError
	if !errors.Is(err, upstream.ErrNotServed) || !errors.As(err, &pe) || len(pe.Errs) != 2 ||
		!strings.Contains(err.Error(), behind.URL()) || !strings.Contains(err.Error(), us[1].URL()) {
		t.Fatalf("a record no upstream has: %v, want not served by each, named", err)
	}
	if h := healthOf(t, p, behind.URL()); h.State == upstream.StateDown || h.State == upstream.StateQuarantined || h.Errors != 0 {
		t.Errorf("an upstream answering 404 is not failing: %+v", h)
	}
}

// TestPoolHedge: an upstream that does not answer within the hedge delay is
// hedged to the next; the first answer wins and the hedge is counted. With
// hedges forbidden, the request still fails over once the first has
// stalled.
func TestPoolHedge(t *testing.T) {
	us := three(t, 300)
	hang(us[0], "/lookup/")
	p := pool(upstream.PoolConfig{HedgeDelay: 50 * time.Millisecond}, us[0], us[1])
	a := upstream.NewAnswers()
	ctx := upstream.WithAnswers(context.Background(), a)
	path, version, _ := us[0].Module(3)
	if _, err := p.Lookup(ctx, path, version); err != nil {
		t.Fatal(err)
	}
	if got := a.From(upstream.LookupKey(path, version)); got != us[1].URL() {
		t.Errorf("answered by %q, want the hedge %q", got, us[1].URL())
	}
	if h := healthOf(t, p, us[1].URL()); h.Hedges != 1 {
		t.Errorf("hedged-to upstream: %+v, want 1 hedge", h)
	}

	q := pool(upstream.PoolConfig{HedgeMax: -1}, us[0], us[2])
	a = upstream.NewAnswers()
	ctx = upstream.WithAnswers(context.Background(), a)
	if _, err := q.Lookup(ctx, path, version); err != nil {
		t.Fatal(err)
	}
	if got := a.From(upstream.LookupKey(path, version)); got != us[2].URL() {
		t.Errorf("with no hedges: answered by %q, want %q after the stall", got, us[2].URL())
	}
}

// TestPoolHedgeBudget: hedges stay within HedgeMax of all requests (plus
// the burst saved at start), however slow the best upstream is.
func TestPoolHedgeBudget(t *testing.T) {
	us := three(t, 300)
	for _, u := range us[:2] {
		var n atomic.Int64
		u.OnRequest(func(r *http.Request) {
			// Every other request is slow: hedging all would add half
			// the load.
			if n.Add(1)%2 == 0 {
				select {
				case <-time.After(60 * time.Millisecond):
				case <-r.Context().Done():
				}
			}
		})
	}
	p := pool(upstream.PoolConfig{HedgeDelay: 5 * time.Millisecond, HedgeMax: 0.1}, us[0], us[1])
	const requests = 100
	for i := range requests {
		path, version, _ := us[0].Module(int64(i % 300))
		if _, err := p.Lookup(context.Background(), path, version); err != nil {
			t.Fatal(err)
		}
	}
	var hedges int64
	for _, h := range p.Health() {
		hedges += h.Hedges
	}
	// A tenth of all requests, hedges included, is a ninth of the
	// others; the budget starts with 10 saved.
	if max := int64(requests/9 + 10); hedges > max || hedges == 0 {
		t.Errorf("%d hedges in %d requests, want some and at most %d", hedges, requests, max)
	}
}

// TestPoolBlame: an upstream blamed for a lie is quarantined, counted, and
// not asked while another can answer; LatestAll asks every other one.
func TestPoolBlame(t *testing.T) {
	us := three(t, 300)
	p := pool(upstream.PoolConfig{}, us...)
	if !p.Blame(us[0].URL(), errors.New("a tile that does not hash to the signed root")) {
		t.Fatal("Blame did not know the upstream")
	}
	if p.Blame("http://elsewhere.example", errors.New("x")) {
		t.Error("Blame knew an upstream not in the pool")
	}
	h := healthOf(t, p, us[0].URL())
	if h.State != upstream.StateQuarantined || h.Lies != 1 || !strings.Contains(h.LastError, "signed root") {
		t.Errorf("blamed upstream: %+v", h)
	}
	if got := p.Health(); got[len(got)-1].URL != us[0].URL() {
		t.Errorf("the quarantined upstream is not last in preference: %+v", got)
	}
	us[0].ResetRequests()
	for range 5 {
		if _, err := p.Latest(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	answers := p.LatestAll(context.Background())
	if n := us[0].Requests(""); n != 0 || len(answers) != 2 {
		t.Errorf("the quarantined upstream was asked %d requests; LatestAll answered %d", n, len(answers))
	}
	for _, a := range answers {
		if a.Err != nil || a.Source == us[0].URL() {
			t.Errorf("LatestAll answer %+v", a)
		}
	}
	// Alone, a quarantined upstream is still asked: the caller verifies.
	one := pool(upstream.PoolConfig{}, us[0])
	one.Blame(us[0].URL(), errors.New("lie"))
	if _, err := one.Latest(context.Background()); err != nil {
		t.Errorf("a pool of one quarantined upstream: %v", err)
	}
	if hs := p.Health(); len(hs[0].History) != 60 || hs[0].History[59].Requests == 0 {
		t.Errorf("history of the best upstream: %d points, last %+v", len(hs[0].History), hs[0].History[len(hs[0].History)-1])
	}
}

// TestDiscoverAll: every GOPROXY entry that serves the database is kept,
// one that cannot be asked is kept as down, one that does not serve it is
// dropped, the list ends at direct, and the database itself comes last.
func TestDiscoverAll(t *testing.T) {
	serves := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sumdb/sum.golang.org/supported" {
			return
		}
		http.NotFound(w, r)
	}))
	defer serves.Close()
	refuses := httptest.NewServer(http.NotFoundHandler())
	defer refuses.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer failing.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	goproxy := refuses.URL + "," + serves.URL + "|" + failing.URL + ",file:///tmp/mods," + closed + ",direct," + "http://after.direct.example"
	got := upstream.Discover(context.Background(), "sum.golang.org", goproxy, nil)
	want := []struct {
		url  string
		down bool
	}{
		{serves.URL + "/sumdb/sum.golang.org", false},
		{failing.URL + "/sumdb/sum.golang.org", true},
		{closed + "/sumdb/sum.golang.org", true},
		{"https://sum.golang.org", false},
	}
	if len(got) != len(want) {
		t.Fatalf("Discover = %+v, want %+v", got, want)
	}
	for i, w := range want {
		if got[i].URL != w.url || (got[i].Err != nil) != w.down {
			t.Errorf("candidate %d = %+v, want %s (down %v)", i, got[i], w.url, w.down)
		}
	}
	if got := upstream.Discover(context.Background(), "sum.golang.org", "off", nil); len(got) != 1 || got[0].URL != "https://sum.golang.org" {
		t.Errorf("GOPROXY=off: %+v", got)
	}
	if got := upstream.ParseList(" http://a/ ,http://b,,http://a"); len(got) != 2 || got[0] != "http://a" || got[1] != "http://b" {
		t.Errorf("ParseList = %q", got)
	}
}

// spikeOnce makes u hold its next request whose path starts with prefix
// until its client leaves (a spike that request alone meets), and answer
// the others at once. It returns how many requests were held.
func spikeOnce(u *sumdbtest.Upstream, prefix string) *atomic.Int64 {
	var held atomic.Int64
	u.OnRequest(func(r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) && held.CompareAndSwap(0, 1) {
			<-r.Context().Done()
		}
	})
	return &held
}

// measured returns a pool over us whose upstreams have each answered a
// few /latest requests, and whose hedge budget has saved up a few hedges.
func measured(t *testing.T, cfg upstream.PoolConfig, us ...*sumdbtest.Upstream) *upstream.Pool {
	t.Helper()
	p := pool(cfg, us...)
	for range 10 {
		for _, a := range p.LatestAll(context.Background()) {
			if a.Err != nil {
				t.Fatal(a.Err)
			}
		}
		if _, err := p.Latest(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestPoolHedgeSameUpstream: a request that meets a spike of the fastest
// upstream, which answers its other requests, is hedged to that same
// upstream, not to a far slower one; and so is the failover from a stall
// when hedges are not allowed.
func TestPoolHedgeSameUpstream(t *testing.T) {
	us := three(t, 300)
	us[1].SetLatency(100 * time.Millisecond)
	for _, cfg := range []upstream.PoolConfig{
		{HedgeDelay: 20 * time.Millisecond},
		{HedgeMax: -1}, // no hedges: the failover after the stall
	} {
		p := measured(t, cfg, us[0], us[1])
		us[0].ResetRequests()
		us[1].ResetRequests()
		held := spikeOnce(us[0], "/lookup/")
		a := upstream.NewAnswers()
		ctx := upstream.WithAnswers(context.Background(), a)
		path, version, _ := us[0].Module(5)
		if _, err := p.Lookup(ctx, path, version); err != nil {
			t.Fatal(err)
		}
		if held.Load() != 1 {
			t.Fatal("the spike was never met")
		}
		if got := a.From(upstream.LookupKey(path, version)); got != us[0].URL() {
			t.Errorf("%+v: answered by %q, want the fast upstream %q asked again", cfg, got, us[0].URL())
		}
		// The slow upstream may be asked only once the fast one holds
		// three copies: on a busy machine the second copy's answer can
		// outlast the stall delay, and a third goes to the fast one.
		if n0, n1 := us[0].Requests("/lookup/"), us[1].Requests("/lookup/"); n0 < 2 || n1 != 0 && n0 < 3 {
			t.Errorf("%+v: lookups asked of the fast upstream %d, of the slow one %d; want 2 (3 if the slow one) and 0", cfg, n0, n1)
		}
		if h := healthOf(t, p, us[0].URL()); h.Hedges < 1 {
			t.Errorf("%+v: fast upstream %d hedges, want 1 or more", cfg, h.Hedges)
		}
		us[0].OnRequest(nil)
	}
}

// TestPoolOneSlowAnswer: an upstream whose first answer was slow (a spike,
// or the connection's setup) is still asked first once it has answered
// at its usual speed, though the mean of its answers is slower than
// another upstream's.
func TestPoolOneSlowAnswer(t *testing.T) {
	us := three(t, 300)
	us[1].SetLatency(150 * time.Millisecond) // far from us[0]'s usual speed, even on a busy machine
	var first atomic.Bool
	us[0].OnRequest(func(r *http.Request) {
		if first.CompareAndSwap(false, true) {
			time.Sleep(500 * time.Millisecond)
		}
	})
	p := pool(upstream.PoolConfig{HedgeMax: -1}, us[0], us[1])
	for range 2 {
		for _, a := range p.LatestAll(context.Background()) {
			if a.Err != nil {
				t.Fatal(a.Err)
			}
		}
	}
	a := upstream.NewAnswers()
	ctx := upstream.WithAnswers(context.Background(), a)
	path, version, _ := us[0].Module(9)
	if _, err := p.Lookup(ctx, path, version); err != nil {
		t.Fatal(err)
	}
	if got := a.From(upstream.LookupKey(path, version)); got != us[0].URL() {
		t.Errorf("answered by %q, want the usually faster %q", got, us[0].URL())
	}
}

// TestPoolNoHedgeForOrdinaryVariation: a request whose upstream's recent
// answers that took as long all ended soon after is not hedged (a new
// copy would most likely answer later); one later than any answer seen
// is.
func TestPoolNoHedgeForOrdinaryVariation(t *testing.T) {
	us := three(t, 300)
	// Answers have taken 250 ms; at the hedge delay of 20 ms, those past
	// it ended 230 ms later, while a new copy would take 250. (The
	// lookups below take 30 ms, far from the next look at 270 ms, even
	// on a busy machine.)
	p := pool(upstream.PoolConfig{HedgeDelay: 20 * time.Millisecond}, us[0])
	for range 10 { // fast answers, which save up a hedge of the budget
		if _, err := p.Latest(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	us[0].SetLatency(250 * time.Millisecond)
	for range 20 { // LatestAll is never hedged
		if a := p.LatestAll(context.Background()); a[0].Err != nil {
			t.Fatal(a[0].Err)
		}
	}
	us[0].SetLatency(30 * time.Millisecond)
	before := healthOf(t, p, us[0].URL()).Hedges
	for i := range 5 {
		path, version, _ := us[0].Module(int64(i))
		if _, err := p.Lookup(context.Background(), path, version); err != nil {
			t.Fatal(err)
		}
	}
	if h := healthOf(t, p, us[0].URL()).Hedges - before; h != 0 {
		t.Errorf("%d hedges of requests answered at the upstream's usual latency, want none", h)
	}
	// A request later than any seen: hedged (to the same upstream, the
	// only one).
	held := spikeOnce(us[0], "/lookup/")
	path, version, _ := us[0].Module(7)
	if _, err := p.Lookup(context.Background(), path, version); err != nil {
		t.Fatal(err)
	}
	if held.Load() != 1 {
		t.Fatal("the spike was never met")
	}
	if h := healthOf(t, p, us[0].URL()).Hedges - before; h != 1 {
		t.Errorf("%d hedges of a request later than any seen, want 1", h)
	}
}

// TestPoolThirdCopySameUpstream: a request whose first two copies both
// meet a spike of the fastest upstream, which goes on answering other
// requests, is sent to it a third time, not to an upstream far slower.
func TestPoolThirdCopySameUpstream(t *testing.T) {
	us := three(t, 300)
	us[1].SetLatency(300 * time.Millisecond)
	p := measured(t, upstream.PoolConfig{HedgeDelay: 20 * time.Millisecond, HedgeMax: 0.5}, us[0], us[1])
	us[0].ResetRequests()
	us[1].ResetRequests()
	var held atomic.Int64
	us[0].OnRequest(func(r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/lookup/") && held.Add(1) <= 2 {
			<-r.Context().Done()
		}
	})
	defer us[0].OnRequest(nil)
	// Meanwhile the upstream answers other requests.
	ctx, cancel := context.WithCancel(context.Background())
	others := make(chan struct{})
	go func() {
		defer close(others)
		for ctx.Err() == nil {
			p.Latest(ctx)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	a := upstream.NewAnswers()
	path, version, _ := us[0].Module(5)
	_, err := p.Lookup(upstream.WithAnswers(context.Background(), a), path, version)
	cancel()
	<-others
	if err != nil {
		t.Fatal(err)
	}
	if held.Load() < 3 {
		t.Fatalf("%d lookups reached the fast upstream, want the two spikes and a third", held.Load())
	}
	if got := a.From(upstream.LookupKey(path, version)); got != us[0].URL() {
		t.Errorf("answered by %q, want the fast upstream %q asked a third time", got, us[0].URL())
	}
}
