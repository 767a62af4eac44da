package mirror

import (
	"context"
	"sync"
	"time"
)

// flightGroup runs one call per key at a time on behalf of every caller
// asking for that key meanwhile (on-demand fetches of a module@version,
// tile requests), and counts its waiters: when every caller has gone (its
// context ended), the call's context is cancelled, so that abandoned work
// stops holding upstream connections and memory. A call that must finish
// once started (a commit) detaches its own context for that step.
type flightGroup[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done    chan struct{}
	val     V
	err     error
	waiters int // guarded by the group's mu
	cancel  context.CancelFunc
}

// do returns fn's result for key, calling it unless a call for key is
// under way, in which case it waits for that one. fn runs with a context
// that keeps ctx's values, ends after timeout, and is cancelled once every
// caller waiting for it has gone. A caller whose ctx ends first gets ctx's
// error.
func (g *flightGroup[K, V]) do(ctx context.Context, key K, timeout time.Duration, fn func(context.Context) (V, error)) (V, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[K]*flightCall[V])
	}
	c, ok := g.calls[key]
	if !ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		c = &flightCall[V]{done: make(chan struct{}), cancel: cancel}
		g.calls[key] = c
		go func() {
			defer cancel()
			c.val, c.err = fn(fctx)
			g.mu.Lock()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
			close(c.done)
		}()
	}
	c.waiters++
	g.mu.Unlock()
	select {
	case <-c.done:
		g.mu.Lock()
		c.waiters--
		g.mu.Unlock()
		return c.val, c.err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			// Abandoned: stop it, and let the next caller start afresh
			// rather than join a cancelled call.
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
		}
		g.mu.Unlock()
		var zero V
		return zero, ctx.Err()
	}
}
