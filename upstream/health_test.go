package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// noteInForm is a signed note in form, its signature no key's: what the
// client passes on from /latest (checking it is the caller's).
const noteInForm = "go.sum database tree\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u2014 sumdb.test AAAAAAA=\n"

func TestObserver(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/latest":
			w.Write([]byte(noteInForm))
		case "/tile/8/data/000":
			http.Error(w, "Go module path not permitted", http.StatusForbidden)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var mu sync.Mutex
	var seen []Observation
	c := NewClient(srv.URL, nil, WithObserver(func(o Observation) {
		mu.Lock()
		seen = append(seen, o)
		mu.Unlock()
	}))
	ctx := context.Background()
	if _, err := c.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "example.com/m", "v1.0.0"); err == nil {
		t.Fatal("lookup of a missing module succeeded")
	}
	if _, err := c.Tile(ctx, tlog.Tile{H: 8, L: -1, N: 0, W: 256}); err == nil {
		t.Fatal("refused data tile succeeded")
	}
	want := []struct {
		kind, errKind string
		status        int
	}{
		{KindLatest, "", 200},
		{KindLookup, "not_found", 404},
		{KindDataTile, "refused", 403},
	}
	if len(seen) != len(want) {
		t.Fatalf("observed %d requests, want %d: %+v", len(seen), len(want), seen)
	}
	for i, w := range want {
		o := seen[i]
		if o.Kind != w.kind || o.ErrorKind() != w.errKind || o.Status != w.status || o.Upstream != c.URL() {
			t.Errorf("observation %d = %+v (error kind %q), want kind %s, error kind %q, status %d", i, o, o.ErrorKind(), w.kind, w.errKind, w.status)
		}
	}
}

// TestUntrustedCertificate: an upstream whose TLS certificate no trusted
// CA signed (as behind a proxy that intercepts TLS) fails at once, not
// after retries, with an error that says what to do, through a pool too.
func TestUntrustedCertificate(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Write([]byte(noteInForm))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, get := range []func() error{
		func() error { _, err := NewClient(srv.URL, nil).Latest(ctx); return err },
		func() error { _, err := NewPool([]Candidate{{URL: srv.URL}}, PoolConfig{}).Latest(ctx); return err },
	} {
		err := get()
		if !errors.As(err, new(*tls.CertificateVerificationError)) || !strings.Contains(fmt.Sprint(err), "SSL_CERT_FILE") {
			t.Errorf("an untrusted certificate: %v, want a certificate error naming SSL_CERT_FILE", err)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server past the handshake", n)
	}
}
