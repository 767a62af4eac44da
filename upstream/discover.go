package upstream

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/sumkeep/sumkeep/internal/redact"
)

// Discover finds the upstreams for the checksum database named name the way
// the go command finds its one: each proxy in goproxy (a GOPROXY value,
// entries separated by ',' or '|') is asked for
// <proxy>/sumdb/<name>/supported. 200 means the proxy serves the database;
// 404 or 410 mean it does not. The go command stops at the first proxy
// answering 200; sumkeep, which trusts none of its sources, keeps every one
// that does, then the database itself at https://<name>. As for the go
// command, the list ends at "direct" or "off", and file:// proxies, which do
// not serve /sumdb/, are skipped.
//
// A proxy that cannot be asked (no answer, a 5xx) is kept with the reason
// (Candidate.Err): a pool starts it as down and probes it again later. So
// discovery never fails; the proxies are asked at once, each within ctx.
//
// The URLs returned keep any credentials the proxies' URLs hold (they are
// needed to reach them); print them with redact.URL.
func Discover(ctx context.Context, name, goproxy string, hc *http.Client) []Candidate {
	var proxies []string
	for _, p := range strings.FieldsFunc(goproxy, func(r rune) bool { return r == ',' || r == '|' }) {
		p = strings.TrimSpace(p)
		if p == "direct" || p == "off" {
			break
		}
		if !strings.HasPrefix(p, "http://") && !strings.HasPrefix(p, "https://") {
			continue // file:// proxies do not serve /sumdb/
		}
		proxies = append(proxies, p)
	}
	found := make([]*Candidate, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		wg.Go(func() {
			base := strings.TrimSuffix(p, "/") + "/sumdb/" + name
			ok, err := NewClient(base, hc).Supported(ctx)
			switch {
			case err != nil:
				found[i] = &Candidate{URL: base, Err: fmt.Errorf("asking proxy %s whether it serves %s: %w", redact.URL(p), name, err)}
			case ok:
				found[i] = &Candidate{URL: base}
			}
		})
	}
	wg.Wait()
	var out []Candidate
	seen := make(map[string]bool)
	for _, c := range found {
		if c != nil && !seen[c.URL] {
			seen[c.URL] = true
			out = append(out, *c)
		}
	}
	return append(out, Candidate{URL: "https://" + name})
}

// ParseList splits an --upstream value, a comma-separated list of base
// URLs, dropping empty entries and repeats.
func ParseList(s string) []string {
	var out []string
	seen := make(map[string]bool)
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSuffix(strings.TrimSpace(u), "/")
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// GoProxy returns the GOPROXY the go command would use: the environment's
// (getenv), or else what `go env GOPROXY` reports (its default, or one set
// with go env -w). Without a go command it returns "direct" and the reason.
func GoProxy(ctx context.Context, getenv func(string) (string, bool)) (string, error) {
	if v, ok := getenv("GOPROXY"); ok && v != "" {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
	if err != nil {
		return "direct", fmt.Errorf("go env GOPROXY: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
