package mirror_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/upstream"
)

// modeChoices counts the log's "mode auto" messages (those with a mode
// attribute).
type modeChoices struct{ n atomic.Int64 }

func (m *modeChoices) Enabled(context.Context, slog.Level) bool { return true }
func (m *modeChoices) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "mode" {
			m.n.Add(1)
		}
		return true
	})
	return nil
}
func (m *modeChoices) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *modeChoices) WithGroup(string) slog.Handler      { return m }

// In auto mode, a sync and a fetch that both find no mode chosen yet ask
// the upstream together; both get the mode the first answer chose, and the
// choice is logged once (serve's first sync and its first lookups logged it
// twice).
func TestAutoModeChosenOnce(t *testing.T) {
	ctx := context.Background()
	u := newLog(t, 1000)
	u.SetFault(sumdbtest.Fault{Kind: sumdbtest.FaultRefuseDataTiles})
	// The first data tile is answered only once two requests for it have
	// come (or after a while, so that the test ends either way): the two
	// choices overlap.
	var asked atomic.Int64
	both := make(chan struct{})
	h := u.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/tile/8/data/") {
			if asked.Add(1) == 2 {
				close(both)
			}
			select {
			case <-both:
			case <-time.After(5 * time.Second):
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	logs := &modeChoices{}
	s, err := mirror.New(mirror.Config{Store: newStore(t), Upstream: upstream.NewClient(srv.URL, nil), Key: u.VerifierKey(),
		Concurrency: 8, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	path, version, _ := u.Module(500)
	var wg sync.WaitGroup
	var syncErr, fetchErr error
	var res mirror.Result
	wg.Go(func() { res, syncErr = s.Once(ctx) })
	wg.Go(func() { fetchErr = s.Fetch(ctx, path, version) })
	wg.Wait()
	if syncErr != nil || fetchErr != nil {
		t.Fatalf("sync: %v; fetch: %v", syncErr, fetchErr)
	}
	if res.Mode != mirror.ModeLazy {
		t.Errorf("sync ran in mode %q, want lazy", res.Mode)
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("the first data tile was asked for %d times, want 2 (the choices did not overlap)", n)
	}
	if n := logs.n.Load(); n != 1 {
		t.Errorf("the mode choice was logged %d times, want once", n)
	}
}
