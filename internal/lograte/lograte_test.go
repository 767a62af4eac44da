package lograte

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// clock is a test's clock, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTest(opts Options) (*slog.Logger, *Handler, *bytes.Buffer, *clock) {
	var buf bytes.Buffer
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	opts.Now = c.now
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}), opts)
	return slog.New(h), h, &buf, c
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimRight(buf.String(), "\n")
	buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func wantLines(t *testing.T, buf *bytes.Buffer, want ...string) {
	t.Helper()
	got := lines(buf)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLimits: a flood of one error is one line per interval with the count
// of the dropped ones; other kinds and levels below the limit are not
// affected; a flood that ends is summarized once its interval is over.
func TestLimits(t *testing.T) {
	log, h, buf, c := newTest(Options{})
	for i := range 1000 {
		log.Error("store: lookup", "module", "m", "i", i)
		log.Info("request", "i", i)
		if i%100 == 0 {
			log.Warn("health check failed")
		}
	}
	got := lines(buf)
	if len(got) != 1002 { // 1000 infos, one error, one warning
		t.Fatalf("%d lines, want 1002", len(got))
	}
	if got[0] != `level=ERROR msg="store: lookup" module=m i=0` {
		t.Errorf("first line %q", got[0])
	}

	c.advance(time.Second)
	log.Error("store: lookup", "module", "m", "i", 1000)
	wantLines(t, buf,
		`level=WARN msg="health check failed" suppressed=9`,
		`level=ERROR msg="store: lookup" module=m i=1000 suppressed=999`)

	// The flood stops; the next record of another kind after the interval
	// reports what was dropped since.
	log.Error("store: lookup", "i", 1001)
	log.Error("store: lookup", "i", 1002)
	wantLines(t, buf)
	c.advance(999 * time.Millisecond)
	log.Warn("other")
	wantLines(t, buf, `level=WARN msg=other`)
	c.advance(time.Millisecond)
	log.Warn("other")
	wantLines(t, buf, `level=ERROR msg="store: lookup" suppressed=2`)

	// Flush reports what is pending; after it nothing is.
	log.Warn("other")
	h.Flush(context.Background())
	wantLines(t, buf, `level=WARN msg=other suppressed=2`)
	h.Flush(context.Background())
	wantLines(t, buf)
}

// TestShared: derived loggers share the limits and keep their attributes;
// Burst lets that many through per interval.
func TestShared(t *testing.T) {
	log, _, buf, c := newTest(Options{Burst: 2, Every: time.Minute})
	a, b := log.With("log", "a"), log.With("log", "b").WithGroup("g")
	for range 3 {
		a.Error("sync failed")
		b.Error("sync failed", "x", 1)
	}
	wantLines(t, buf, `level=ERROR msg="sync failed" log=a`, `level=ERROR msg="sync failed" log=b g.x=1`)
	c.advance(time.Minute)
	a.Error("sync failed")
	wantLines(t, buf, `level=ERROR msg="sync failed" log=a suppressed=4`)
}

// TestLevel: Options.Level moves the limit.
func TestLevel(t *testing.T) {
	log, _, buf, _ := newTest(Options{Level: slog.LevelError})
	for range 3 {
		log.Warn("w")
		log.Error("e")
	}
	if n := len(lines(buf)); n != 4 {
		t.Fatalf("%d lines, want 4 (3 warnings, 1 error)", n)
	}
}

// TestManyKinds: past maxKinds distinct messages, the rest are limited as
// one kind, so memory and output stay bounded.
func TestManyKinds(t *testing.T) {
	log, _, buf, _ := newTest(Options{})
	for i := range 3 * maxKinds {
		log.Error("failed " + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := len(lines(buf)); n != maxKinds+1 {
		t.Fatalf("%d lines, want %d", n, maxKinds+1)
	}
}
