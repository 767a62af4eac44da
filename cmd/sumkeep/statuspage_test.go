package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/sumkeep/sumkeep/internal/modproxy"
	"github.com/sumkeep/sumkeep/internal/sumdbtest"
)

// chromiumPath returns Debian's chromium, skipping the test where it is
// not installed (failing it in CI, whose .ci/run installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// browser is a headless Chromium with JavaScript disabled, for one test.
type browser struct {
	ctx context.Context
}

// newBrowser starts headless Chromium with a fresh profile and everything
// that would reach for the network turned off (the test machines have
// none: with those features on, Chromium stalls).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		// JavaScript off for every page, from the start.
		chromedp.Flag("blink-settings", "scriptEnabled=false"),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser: give it a bounded time.
	start := make(chan error, 1)
	go func() {
		start <- chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}))
	}()
	select {
	case err := <-start:
		if err != nil {
			t.Fatalf("starting chromium: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("chromium did not start within 2 minutes")
	}
	return &browser{ctx: ctx}
}

// text loads url and returns the visible text of the element matching sel.
func (b *browser) text(t *testing.T, url, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("%s: reading %s: %v", url, sel, err)
	}
	return s
}

// screenshot saves a PNG of the whole page shown now as a test artifact:
// into $SUMKEEP_TEST_ARTIFACTS if set, else <repo>/artifacts.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("SUMKEEP_TEST_ARTIFACTS")
	if dir == "" {
		if dir, err = filepath.Abs(filepath.Join("..", "..", "artifacts")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page: %s (%d bytes)", p, len(png))
}

// TestStatusPageBrowser: the status page, loaded in headless Chromium with
// JavaScript off, shows the GOSUMDB line that makes the real go command
// verify through this mirror: the go command given exactly that line
// downloads a module and records the mirror's signed head, and given the
// line with another key or another URL it fails. The proxy-form lines
// work too. A screenshot of the page is kept as a test artifact.
func TestStatusPageBrowser(t *testing.T) {
	b := newBrowser(t)

	// JavaScript is off: a page whose script would change its text shows
	// it unchanged.
	js := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!DOCTYPE html><p id="x">script off</p><script>document.getElementById("x").textContent = "script on"</script>`)
	}))
	defer js.Close()
	if got := b.text(t, js.URL, "#x"); got != "script off" {
		t.Fatalf("JavaScript is not off in the browser: the page says %q", got)
	}

	w := newGoWorld(t, "example.com/alpha", "example.org/beta")
	u, err := sumdbtest.NewSynthetic("sumdb.test", 700)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range w.sums {
		if err := u.AddModule(s.Path, s.Version, s.ZipHash, s.ModHash); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.AddSynthetic(300); err != nil {
		t.Fatal(err)
	}
	u.Start()
	t.Cleanup(u.Close)
	key, log := u.VerifierKey(), u.Name()
	db := newDB(t, "sqlite")
	mustSync(t, db, u.URL(), key, "--mode", "full")
	srv, mirror := startServe(t, db, key, "--upstream", u.URL(), "--mode", "full")

	line := b.text(t, mirror+"/", "#gosumdb")
	b.screenshot(t, "status-page.png")
	t.Logf("the status page shows: %s", line)
	value, okPrefix := strings.CutPrefix(line, `go env -w GOSUMDB="`)
	value, okSuffix := strings.CutSuffix(value, `"`)
	if !okPrefix || !okSuffix || strings.Count(value, " ") != 1 {
		t.Fatalf("the status page's GOSUMDB line is %q, want go env -w GOSUMDB=\"<key> <url>\"", line)
	}
	shownKey, shownURL, _ := strings.Cut(value, " ")

	// The go command, given exactly what the page shows, verifies through
	// the mirror (and never asks the upstream).
	u.ResetRequests()
	lines, out, code, gopath := w.tidyEnv(t, "", modproxy.GOPROXY(w.proxyDir), value, 0)
	if code != 0 || !slices.Equal(lines, w.want(0)) {
		t.Fatalf("go mod tidy with GOSUMDB=%q: exit %d, go.sum\n%s\noutput:\n%s\nmirror stderr:\n%s", value, code, strings.Join(lines, "\n"), out, srv.stderr)
	}
	if got := cachedHead(t, gopath, log); got != u.Size() {
		t.Errorf("the go command cached head %d, want the mirror's %d", got, u.Size())
	}
	if n := u.Requests(""); n != 0 {
		t.Errorf("the go command reached the upstream %d times; it must go through the mirror", n)
	}

	// A wrong line fails: another key for the same log name, or a URL that
	// is not the mirror's.
	for _, wrong := range []string{newVerifierKey(t, log) + " " + shownURL, shownKey + " " + shownURL + "/elsewhere"} {
		_, out, code, _ := w.tidyEnv(t, "", modproxy.GOPROXY(w.proxyDir), wrong, 0)
		if code == 0 {
			t.Errorf("go mod tidy with the wrong GOSUMDB=%q succeeded\n%s", wrong, out)
		}
	}

	// The proxy form: GOSUMDB=<key> (sumdb.test is not the go command's
	// default) and the mirror in front of the module proxy.
	proxyLines := strings.Split(strings.TrimSpace(b.text(t, mirror+"/", "#goproxy")), "\n")
	if len(proxyLines) != 2 || proxyLines[0] != "go env -w GOSUMDB="+key {
		t.Fatalf("the status page's proxy-form lines are %q", proxyLines)
	}
	goproxy, okPrefix := strings.CutPrefix(proxyLines[1], `go env -w GOPROXY="`)
	goproxy, okSuffix = strings.CutSuffix(goproxy, `,<your proxy>"`)
	if !okPrefix || !okSuffix {
		t.Fatalf("the status page's GOPROXY line is %q", proxyLines[1])
	}
	u.ResetRequests()
	lines, out, code, gopath = w.tidyEnv(t, "", goproxy+","+modproxy.GOPROXY(w.proxyDir), key, 1)
	if code != 0 || !slices.Equal(lines, w.want(1)) {
		t.Fatalf("go mod tidy with GOPROXY=%s,<proxy> GOSUMDB=%s: exit %d, go.sum\n%s\noutput:\n%s", goproxy, key, code, strings.Join(lines, "\n"), out)
	}
	if got := cachedHead(t, gopath, log); got != u.Size() {
		t.Errorf("proxy form: the go command cached head %d, want the mirror's %d", got, u.Size())
	}
	if n := u.Requests(""); n != 0 {
		t.Errorf("proxy form: the go command reached the upstream %d times", n)
	}

	// /status.json says the same, and the request log saw the page.
	resp, err := http.Get(mirror + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		GOSUMDB string `json:"gosumdb"`
		Logs    []struct {
			Served struct {
				Size int64 `json:"size"`
			} `json:"served"`
		} `json:"logs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.GOSUMDB != value || len(st.Logs) != 1 || st.Logs[0].Served.Size != u.Size() {
		t.Errorf("/status.json: %+v, %v; want GOSUMDB %q and the served head %d", st, err, value, u.Size())
	}
	if !strings.Contains(srv.stderr.String(), `msg=request method=GET path=/ status=200`) {
		t.Errorf("the request log has no line for the status page:\n%s", srv.stderr)
	}
}

// TestServeStatusFlags: serve's --public-url is what the status page shows
// whatever the request's Host; with --sync-schedule the page shows the
// in-process runs; --request-log=false logs no request, and SUMKEEP_
// variables set them too; bad values are usage errors.
func TestServeStatusFlags(t *testing.T) {
	none := map[string]string{}
	for _, args := range [][]string{
		{"--request-log-sample", "0"},
		{"--request-log-sample", "1.5"},
		{"--request-log-sample", "NaN"},
		{"--public-url", "ftp://sum.corp.example"},
		{"--public-url", "https://user:pw@sum.corp.example"},
		{"--public-url", `https://sum.corp.example/"x`},
	} {
		code, _, stderr := runIn(t, none, append([]string{"serve", "--db", filepath.Join(t.TempDir(), "s.db")}, args...)...)
		if code != 2 || !strings.Contains(stderr, args[0]) || strings.Contains(stderr, "pw@") {
			t.Errorf("serve %q: exit %d\n%s\nwant a usage error naming the flag", args, code, stderr)
		}
	}

	u := newUpstream(t, 600)
	key := u.VerifierKey()
	db := newDB(t, "sqlite")
	srv, mirror := startServeEnv(t, []string{"SUMKEEP_REQUEST_LOG=false"}, "serve", "--db", db, "--key", key, "--listen", "127.0.0.1:0",
		"--upstream", u.URL(), "--mode", "full", "--sync-schedule", "@every 1h", "--public-url", "https://sum.corp.example/mirror/")
	type status struct {
		GOSUMDB string `json:"gosumdb"`
		Logs    []struct {
			Sync struct {
				InProcess bool   `json:"in_process"`
				Schedule  string `json:"schedule"`
				Last      *struct {
					Outcome string `json:"outcome"`
					Served  int64  `json:"served"`
				} `json:"last"`
			} `json:"sync"`
		} `json:"logs"`
	}
	var st status
	waitFor(t, time.Minute, func() string {
		return fmt.Sprintf("the scheduled sync to show on /status.json: %+v\n%s", st, srv.stderr)
	}, func() bool {
		resp, err := http.Get(mirror + "/status.json")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = status{}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && len(st.Logs) == 1 && st.Logs[0].Sync.Last != nil
	})
	if want := key + " https://sum.corp.example/mirror"; st.GOSUMDB != want {
		t.Errorf("with --public-url: GOSUMDB %q, want %q", st.GOSUMDB, want)
	}
	if s := st.Logs[0].Sync; !s.InProcess || s.Schedule != "@every 1h" || s.Last.Outcome != "success" || s.Last.Served != 600 {
		t.Errorf("the in-process sync shows as %+v, want a success serving 600", s)
	}
	if strings.Contains(srv.stderr.String(), "msg=request") {
		t.Errorf("SUMKEEP_REQUEST_LOG=false, yet requests are logged:\n%s", srv.stderr)
	}
}
