// Package lograte keeps repeated log records from flooding a log: a
// slog.Handler wrapper that passes the first records of each kind (level and
// message) in every interval and counts the rest, reporting the count with
// the next record of that kind, or in a summary record once the interval is
// over.
//
// During an outage every request fails the same way; without a limit a busy
// server writes one line per request (hundreds of thousands a minute) and
// the one line that says what happened is lost among them.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options configures a Handler. The zero value is usable.
type Options struct {
	// Every is the interval (default one second).
	Every time.Duration
	// Burst is how many records of one kind pass in an interval (default 1).
	Burst int
	// Level is the lowest level limited (nil: slog.LevelWarn): records
	// below it, such as a request log, all pass.
	Level slog.Leveler
	// Now is the clock (default time.Now); tests set their own.
	Now func() time.Time
}

// SuppressedKey is the attribute that counts the records of a kind that
// were dropped in the interval before.
const SuppressedKey = "suppressed"

// maxKinds bounds how many kinds are tracked; records of further kinds are
// limited together, as one kind.
const maxKinds = 1024

// Handler is a rate-limiting slog.Handler. Handlers derived from it (by
// WithAttrs, WithGroup) share its limits.
type Handler struct {
	next slog.Handler
	st   *state
}

type state struct {
	opts  Options
	mu    sync.Mutex
	kinds map[kindKey]*kind
}

type kindKey struct {
	level slog.Level
	msg   string
}

type kind struct {
	start      time.Time    // when the current interval started
	passed     int          // records passed in it
	suppressed int          // records dropped in it
	h          slog.Handler // the handler of the last dropped record, for its summary
	pc         uintptr
}

// New returns a Handler that passes records to next within the limits of
// opts.
func New(next slog.Handler, opts Options) *Handler {
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.Burst <= 0 {
		opts.Burst = 1
	}
	if opts.Level == nil {
		opts.Level = slog.LevelWarn
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{next: next, st: &state{opts: opts, kinds: make(map[kindKey]*kind)}}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), st: h.st}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), st: h.st}
}

// summary is a record to write for the dropped records of a past interval.
type summary struct {
	h   slog.Handler
	rec slog.Record
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	st := h.st
	if r.Level < st.opts.Level.Level() {
		return h.next.Handle(ctx, r)
	}
	now := st.opts.Now()
	st.mu.Lock()
	key := kindKey{r.Level, r.Message}
	sums := st.sweep(now, key)
	k := st.kinds[key]
	if k == nil && len(st.kinds) >= maxKinds {
		key.msg = ""
		k = st.kinds[key]
	}
	pass := true
	prev := 0
	switch {
	case k == nil:
		st.kinds[key] = &kind{start: now, passed: 1}
	case now.Sub(k.start) >= st.opts.Every:
		prev = k.suppressed
		*k = kind{start: now, passed: 1}
	case k.passed < st.opts.Burst:
		k.passed++
	default:
		k.suppressed++
		k.h, k.pc = h.next, r.PC
		pass = false
	}
	st.mu.Unlock()

	for _, s := range sums {
		s.h.Handle(ctx, s.rec)
	}
	if !pass {
		return nil
	}
	if prev > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(SuppressedKey, prev))
	}
	return h.next.Handle(ctx, r)
}

// sweep ends the intervals that are over, except that of skip (the kind
// being logged, which reports its own count), and returns summaries of
// those that dropped records. It forgets kinds with nothing to report.
func (st *state) sweep(now time.Time, skip kindKey) []summary {
	var sums []summary
	for key, k := range st.kinds {
		if key == skip || now.Sub(k.start) < st.opts.Every {
			continue
		}
		if k.suppressed > 0 {
			sums = append(sums, st.summary(now, key, k))
		}
		delete(st.kinds, key)
	}
	return sums
}

func (st *state) summary(now time.Time, key kindKey, k *kind) summary {
	msg := key.msg
	if msg == "" {
		msg = "(records of many kinds)"
	}
	rec := slog.NewRecord(now, key.level, msg, k.pc)
	rec.AddAttrs(slog.Int(SuppressedKey, k.suppressed))
	return summary{h: k.h, rec: rec}
}

// Flush writes the summaries of every kind that dropped records, as at the
// end of their intervals. Call it before exiting.
func (h *Handler) Flush(ctx context.Context) {
	st := h.st
	now := st.opts.Now()
	st.mu.Lock()
	var sums []summary
	for key, k := range st.kinds {
		if k.suppressed > 0 {
			sums = append(sums, st.summary(now, key, k))
		}
		delete(st.kinds, key)
	}
	st.mu.Unlock()
	for _, s := range sums {
		s.h.Handle(ctx, s.rec)
	}
}
