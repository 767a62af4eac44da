package mirror_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sumkeep/sumkeep/mirror"
	"github.com/sumkeep/sumkeep/upstream"
)

// messages is a slog.Handler that counts the messages logged.
type messages struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = make(map[string]int)
	}
	m.n[r.Message]++
	return nil
}
func (m *messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *messages) WithGroup(string) slog.Handler      { return m }
func (m *messages) count(msg string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[msg]
}

func TestCheckSchedule(t *testing.T) {
	for _, good := range []string{"@every 10m", "*/10 * * * *", "@hourly"} {
		if err := mirror.CheckSchedule(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"", "every 10m", "* * *", "@every ten"} {
		if err := mirror.CheckSchedule(bad); !errors.Is(err, mirror.ErrSchedule) {
			t.Errorf("%q: %v, want ErrSchedule", bad, err)
		}
	}
}

// TestRunScheduled: a scheduled syncer runs at once (not only on the first
// tick), skips runs while the store is not ready, and stops when its
// context ends.
func TestRunScheduled(t *testing.T) {
	u, url := newUpstream(t, 1000)
	st := newStore(t)
	logs := &messages{}
	s, err := mirror.New(mirror.Config{Store: st, Upstream: upstream.NewClient(url, nil), Key: u.VerifierKey(),
		Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var ready atomic.Bool
	go func() {
		done <- s.RunScheduled(ctx, mirror.Schedule{Spec: "@every 1s", StoreTimeout: time.Minute, Ready: ready.Load})
	}()
	// Not ready: runs are skipped (the first at once, then on ticks), and
	// the upstream is not asked.
	for deadline := time.Now().Add(2 * time.Minute); logs.count("waiting for the database; skipping this sync") < 2; {
		if time.Now().After(deadline) {
			t.Fatal("no run was skipped while the store was not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := u.Requests("/latest"); n != 0 {
		t.Fatalf("%d requests for /latest while the store was not ready", n)
	}
	ready.Store(true)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if h, err := st.ServedHead(context.Background(), logName); err == nil && h.Size == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the scheduled sync never served the upstream's head")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("RunScheduled did not return after its context ended")
	}
	if err := s.RunScheduled(context.Background(), mirror.Schedule{Spec: "nonsense"}); !errors.Is(err, mirror.ErrSchedule) {
		t.Errorf("a bad spec: %v", err)
	}
}
