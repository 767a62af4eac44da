package upstream

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/sumkeep/sumkeep/internal/redact"
)

// Discover finds the upstream for the checksum database named name the way
// the go command does: each proxy in goproxy (a GOPROXY value) is asked for
// <proxy>/sumdb/<name>/supported; 200 means use it, 404 or 410 mean try the
// next, anything else is an error. With no proxy left, the database is
// reached directly at https://<name>.
//
// The URL returned keeps any credentials the proxy's URL holds (they are
// needed to reach it); print it with redact.URL.
func Discover(ctx context.Context, name, goproxy string, hc *http.Client) (string, error) {
	for _, p := range strings.FieldsFunc(goproxy, func(r rune) bool { return r == ',' || r == '|' }) {
		if p == "direct" || p == "off" {
			break
		}
		if !strings.HasPrefix(p, "http://") && !strings.HasPrefix(p, "https://") {
			continue // file:// proxies do not serve /sumdb/
		}
		base := strings.TrimSuffix(p, "/") + "/sumdb/" + name
		ok, err := NewClient(base, hc).Supported(ctx)
		if err != nil {
			return "", fmt.Errorf("asking proxy %s whether it serves %s: %w", redact.URL(p), name, err)
		}
		if ok {
			return base, nil
		}
	}
	return "https://" + name, nil
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
