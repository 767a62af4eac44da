package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricsURL is where a command's log says it serves metrics.
var metricsURL = regexp.MustCompile(`msg="serving metrics" url=(http://\S+/metrics)`)

// waitMetricsURL waits for p to log where it serves metrics.
func waitMetricsURL(t *testing.T, p *proc) string {
	t.Helper()
	var u string
	waitFor(t, 30*time.Second, func() string { return "no metrics URL logged\nstderr:\n" + p.stderr.String() }, func() bool {
		select {
		case <-p.done:
			t.Fatalf("sumkeep exited: %v\nstderr:\n%s", p.err, p.stderr)
		default:
		}
		if m := metricsURL.FindStringSubmatch(p.stderr.String()); m != nil {
			u = m[1]
		}
		return u != ""
	})
	return u
}

// httpGet GETs u and returns the status and body.
func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, string(b)
}

// sample returns the value of the series written exactly as series (name
// and labels in the exposition's order) in an exposition, and whether it
// is there.
func sample(exposition, series string) (float64, bool) {
	for line := range strings.SplitSeq(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// promtoolCheck runs `promtool check metrics` on an exposition (skipped
// outside CI when Debian's prometheus package is missing).
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

// TestSyncScheduleMetrics runs "sumkeep sync --schedule --metrics-listen"
// and scrapes it: the sync runs, the upstream's requests and the log show,
// and /livez answers.
func TestSyncScheduleMetrics(t *testing.T) {
	u := newUpstream(t, 700)
	db := filepath.Join(t.TempDir(), "sumkeep.db")
	p := startSumkeep(t, "sync", "--schedule", "@every 1s", "--metrics-listen", "127.0.0.1:0",
		"--db", db, "--upstream", u.URL(), "--key", u.VerifierKey())
	mu := waitMetricsURL(t, p)

	var text string
	// The store is read at most every 10s: wait for a scrape after the
	// first run that reads it.
	runs := fmt.Sprintf(`sumkeep_sync_runs_total{log=%q,outcome="success"}`, u.Name())
	served := fmt.Sprintf(`sumkeep_log_served_tree_size{log=%q}`, u.Name())
	// The store's figures are read together, but a read may come between
	// the sync's commit and the head it serves: wait for both.
	stored := fmt.Sprintf(`sumkeep_log_records_stored{log=%q}`, u.Name())
	waitFor(t, 90*time.Second, func() string { return "no successful sync run shown\n" + text + "\nstderr:\n" + p.stderr.String() }, func() bool {
		_, text = httpGet(t, mu)
		v, _ := sample(text, runs)
		size, _ := sample(text, served)
		n, _ := sample(text, stored)
		return v >= 1 && size == 700 && n == 700
	})
	for series, want := range map[string]float64{
		fmt.Sprintf(`sumkeep_sync_records_written_total{log=%q}`, u.Name()): 700,
		fmt.Sprintf(`sumkeep_log_records_stored{log=%q}`, u.Name()):         700,
		fmt.Sprintf(`sumkeep_upstream_lies_total{upstream=%q}`, u.URL()):    0,
	} {
		if got, ok := sample(text, series); !ok || got != want {
			t.Errorf("%s = %v (shown: %v), want %v", series, got, ok, want)
		}
	}
	if v, ok := sample(text, fmt.Sprintf(`sumkeep_upstream_request_duration_seconds_count{kind="latest",upstream=%q}`, u.URL())); !ok || v < 1 {
		t.Errorf("no /latest request to the upstream counted (%v, %v)\n%s", v, ok, text)
	}
	if _, ok := sample(text, "sumkeep_store_size_bytes"); !ok {
		t.Errorf("sumkeep_store_size_bytes not shown for a SQLite store")
	}
	promtoolCheck(t, text)
	if code, body := httpGet(t, strings.TrimSuffix(mu, "/metrics")+"/livez"); code != http.StatusOK {
		t.Errorf("/livez on the metrics listener: %d %s", code, body)
	}
	p.stop(t, 15*time.Second)

	// --metrics-listen means nothing to a single run.
	code, _, stderr := runSumkeep(t, 30*time.Second, "sync", "--once", "--metrics-listen", "127.0.0.1:0", "--db", db, "--upstream", u.URL(), "--key", u.VerifierKey())
	if code != 2 || !strings.Contains(stderr, "--metrics-listen needs --schedule") {
		t.Errorf("sync --once --metrics-listen: exit %d, %s; want a usage error", code, stderr)
	}
}

// TestServeMetrics checks /metrics on serve's own port, and that
// --metrics-listen moves it to a listener of its own.
func TestServeMetrics(t *testing.T) {
	u := newUpstream(t, 300)
	db := filepath.Join(t.TempDir(), "sumkeep.db")
	mustSync(t, db, u.URL(), u.VerifierKey())
	_, base := startServe(t, db, u.VerifierKey())
	path, vers, _ := u.Module(5)
	for range 3 {
		if code, body := httpGet(t, base+"/lookup/"+path+"@"+vers); code != http.StatusOK {
			t.Fatalf("lookup: %d %s", code, body)
		}
	}
	code, text := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, text)
	}
	for series, want := range map[string]float64{
		`sumkeep_http_requests_total{code="200",route="/lookup/*mv"}`: 3,
		`sumkeep_lookups_total{outcome="store_hit"}`:                  1,
		`sumkeep_lookups_total{outcome="cache_hit"}`:                  2,
		fmt.Sprintf(`sumkeep_log_served_tree_size{log=%q}`, u.Name()): 300,
		fmt.Sprintf(`sumkeep_evidence{kind="fork",log=%q}`, u.Name()): 0,
	} {
		if got, ok := sample(text, series); !ok || got != want {
			t.Errorf("%s = %v (shown: %v), want %v", series, got, ok, want)
		}
	}
	promtoolCheck(t, text)

	p, base := startServe(t, db, u.VerifierKey(), "--metrics-listen", "127.0.0.1:0")
	mu := waitMetricsURL(t, p)
	if code, _ := httpGet(t, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on --listen with --metrics-listen given: %d, want 404", code)
	}
	httpGet(t, base+"/latest")
	code, text = httpGet(t, mu)
	if v, ok := sample(text, `sumkeep_http_requests_total{code="200",route="/latest"}`); code != http.StatusOK || !ok || v != 1 {
		t.Errorf("/metrics on --metrics-listen: %d, /latest requests %v (%v)\n%s", code, v, ok, text)
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPrometheus starts a Prometheus server with config, storing under
// dir, and returns once it answers /-/ready: its address, its output and a
// channel closed when it exits. Prometheus cannot listen on port 0 and
// tell which port it got, so it gets a port that was free a moment ago;
// if another process took that port in between, Prometheus exits at once
// and is started again on another (five tries, then the test fails with
// its output).
func startPrometheus(t *testing.T, bin, config, dir string) (addr string, out *syncBuffer, exited chan struct{}) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	for try := 1; ; try++ {
		addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		out = new(syncBuffer)
		prom := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", try)),
			"--web.listen-address="+addr, "--log.level=warn")
		prom.Stdout, prom.Stderr = out, out
		if err := prom.Start(); err != nil {
			t.Fatalf("starting prometheus: %v", err)
		}
		done := make(chan struct{})
		go func() {
			prom.Wait()
			close(done)
		}()
		t.Cleanup(func() {
			prom.Process.Kill()
			<-done
		})
		ready, gone := false, false
		waitFor(t, 120*time.Second, func() string {
			return fmt.Sprintf("prometheus on %s not ready within 120s\n%s", addr, out)
		}, func() bool {
			select {
			case <-done:
				gone = true
				return true
			default:
			}
			resp, err := hc.Get("http://" + addr + "/-/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
			return ready
		})
		if ready {
			return addr, out, done
		}
		if gone && try == 5 {
			t.Fatalf("prometheus exited five times (is something taking its ports?); last on %s:\n%s", addr, out)
		}
		t.Logf("prometheus on %s exited (port taken?), starting it on another:\n%s", addr, out)
	}
}

// TestPrometheusScrapesServe runs a real Prometheus server (Debian's
// prometheus package; loopback only, its own configuration and storage)
// scraping "sumkeep serve --sync-schedule", and waits until it answers a
// query for the upstream latency histogram with data.
func TestPrometheusScrapesServe(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prometheus is required in CI (apt-get install prometheus): %v", err)
		}
		t.Skip("prometheus not found (apt-get install prometheus)")
	}
	u := newUpstream(t, 500)
	db := filepath.Join(t.TempDir(), "sumkeep.db")
	_, base := startServe(t, db, u.VerifierKey(), "--upstream", u.URL(), "--sync-schedule", "@every 2s")
	target := strings.TrimPrefix(base, "http://")

	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sumkeep
    static_configs:
      - targets: [%q]
`, target)), 0o666); err != nil {
		t.Fatal(err)
	}
	addr, out, exited := startPrometheus(t, bin, config, dir)
	query := "http://" + addr + "/api/v1/query?query=" + url.QueryEscape("sumkeep_upstream_request_duration_seconds_bucket")
	type result struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	var last result
	var lastErr error
	hc := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, 120*time.Second, func() string {
		return fmt.Sprintf("prometheus did not answer the query with data: last %+v, %v\nprometheus:\n%s", last, lastErr, out)
	}, func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited\n%s", out)
		default:
		}
		resp, err := hc.Get(query)
		if lastErr = err; err != nil {
			return false
		}
		defer resp.Body.Close()
		last = result{}
		if lastErr = json.NewDecoder(resp.Body).Decode(&last); lastErr != nil {
			return false
		}
		return last.Status == "success" && len(last.Data.Result) > 0
	})
	m := last.Data.Result[0].Metric
	if m["upstream"] != u.URL() || m["kind"] == "" || m["le"] == "" || m["job"] != "sumkeep" {
		t.Errorf("prometheus answered %v, want a bucket of upstream %s", m, u.URL())
	}
}
