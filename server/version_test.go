package server

import (
	"encoding/json"
	"net/http"
	"runtime"
	"testing"
)

// TestLivezAndVersion: /livez answers while the process runs, even before
// anything was read from the store (whose outage is /readyz's business);
// /version names the build and the Go version that made it.
func TestLivezAndVersion(t *testing.T) {
	st := openSQLite(t)
	h := New(Config{Store: st, Log: "sum.example.test"}).Handler()
	if w := do(h, "GET", "/readyz"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz of an empty store: %d", w.Code)
	}
	if w := do(h, "GET", "/livez"); w.Code != http.StatusOK {
		t.Errorf("/livez: %d %q", w.Code, w.Body.String())
	}
	w := do(h, "GET", "/version")
	var v struct{ Version, Go string }
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/version: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || v.Go != runtime.Version() || v.Version == "" {
		t.Errorf("/version = %q (%v), want the Go version %s and a version", w.Body.String(), err, runtime.Version())
	}
}
