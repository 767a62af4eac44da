package mirror

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sumkeep/sumkeep/internal/sumdbtest"
)

// countingVerifier counts the signatures it checks; the first check takes
// a while, as on a busy machine, so that the callers arriving meanwhile
// would each check the note too if nothing made them wait for it.
type countingVerifier struct {
	note.Verifier
	checks atomic.Int64
}

func (v *countingVerifier) Verify(msg, sig []byte) bool {
	if v.checks.Add(1) == 1 {
		time.Sleep(200 * time.Millisecond)
	}
	return v.Verifier.Verify(msg, sig)
}

// TestOpenHeadShared: answers arriving together with the same signed note
// (a seed's first round) have its signature checked once, and each gets
// the head it signs.
func TestOpenHeadShared(t *testing.T) {
	u, err := sumdbtest.NewSynthetic("sumdb.test", 1000)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(u.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cv := &countingVerifier{Verifier: v}
	s := &Syncer{verifier: cv}
	msg := u.SignedHead()
	const callers = 64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			h, err := s.openHeadCached(context.Background(), msg, "upstream", "lookup")
			if err == nil && h.Size != u.Size() {
				t.Errorf("head of size %d, want %d", h.Size, u.Size())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := cv.checks.Load(); n != 1 {
		t.Errorf("%d callers with one note checked its signature %d times; want once", callers, n)
	}
}
