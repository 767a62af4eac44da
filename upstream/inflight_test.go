package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMaxInFlight: a client with WithMaxInFlight(3) has at most 3 requests
// at the upstream at once; the others wait for a slot, and one whose
// context ends while waiting gives up without reaching the upstream.
func TestMaxInFlight(t *testing.T) {
	gate := make(chan struct{})
	var in, most, total atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		n := in.Add(1)
		defer in.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-gate
		w.Write([]byte(noteInForm))
	}))
	defer srv.Close()
	c := NewClient(srv.URL, nil, WithMaxInFlight(3))

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = c.Latest(context.Background()) }()
	}
	waitUntil(t, func() bool { return in.Load() == 3 }, "3 requests at the upstream")
	// Two more, given up while waiting for a slot.
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 2)
	for range 2 {
		go func() { _, err := c.Latest(ctx); gaveUp <- err }()
	}
	cancel()
	for range 2 {
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Errorf("a request given up while waiting for a slot: %v", err)
		}
	}
	close(gate)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m != 3 {
		t.Errorf("%d requests at the upstream at once, want 3", m)
	}
	if n := total.Load(); n != 8 {
		t.Errorf("the upstream saw %d requests, want the 8 not given up", n)
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
