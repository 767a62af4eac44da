package server

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequests sends whatever request target a client may send to a server
// of a synced log, and the same request to the reference
// (golang.org/x/mod/sumdb.Server over the same tree). Whatever the target,
// sumkeep never fails with a 5xx, and it answers 200 to a path of the
// protocol (at the root or in the proxy form) only with the very bytes and
// content type the reference answers with. Its own pages (the status page,
// the probes, /version, /sumdb/<name>/supported) are left out of the
// comparison; where the reference answers and sumkeep refuses (a tile
// height it does not keep, a path the reference fails on with a 500), the
// stricter answer is sumkeep's to give.
func FuzzRequests(f *testing.F) {
	st, _ := openStore(f)
	l := newTestLog(f, "sum.example.test")
	const n = 2*256 + 88
	l.grow(f, n)
	l.sync(f, st, 0, n, n, true)
	ours := newServer(f, st, l.name).Handler()
	proxy := "/sumdb/" + l.name
	for _, p := range []string{
		"/latest",
		lookupPath(f, l.mods[7]),
		"/tile/8/0/001",
		"/tile/8/0/002.p/88",
		"/tile/8/data/002.p/88",
		"/tile/8/1/000.p/2",
		"/tile/8/0/002",
		"/lookup/example.com/m@v1.0.0",
		proxy + "/latest",
		proxy + lookupPath(f, l.mods[300]),
		proxy + "/tile/8/data/001",
		proxy + "/supported",
		"/sumdb/other.example.test/latest",
		"http://mirror.test/tile/8/0/000",
		"/lookup/%65xample.com/mod7@v1.0.0",
	} {
		f.Add(p)
	}
	own := map[string]bool{"/": true, "/status.json": true, "/healthz": true, "/readyz": true,
		"/livez": true, "/version": true, proxy + "/supported": true}
	request := func(target string) (*http.Request, error) {
		return http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: mirror.test\r\n\r\n")))
	}
	f.Fuzz(func(t *testing.T, target string) {
		req, err := request(target)
		if err != nil {
			return // net/http refuses it before any handler sees it
		}
		o := httptest.NewRecorder()
		ours.ServeHTTP(o, req)
		if o.Code >= 500 {
			t.Fatalf("GET %q: %d %q", target, o.Code, clip(o.Body.Bytes()))
		}
		if o.Code != http.StatusOK || own[req.URL.Path] {
			return
		}
		refReq, _ := request(target)
		if p, ok := strings.CutPrefix(req.URL.Path, proxy+"/"); ok {
			refReq.URL.Path, refReq.URL.RawPath = "/"+p, ""
		}
		r := httptest.NewRecorder()
		l.reference(t, n).ServeHTTP(r, refReq)
		if r.Code != http.StatusOK {
			t.Fatalf("GET %q: sumkeep answered 200 (%s), the reference %d (%q)", target, clip(o.Body.Bytes()), r.Code, clip(r.Body.Bytes()))
		}
		sameBody(t, target, o, r)
	})
}
