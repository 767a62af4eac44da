//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sqlite

import (
	"os"
	"sync"

	"github.com/sumkeep/sumkeep/store"
)

// On systems without flock(2), the sync lock excludes the syncers of this
// process only.
var (
	heldMu sync.Mutex
	held   = map[string]*os.File{}
)

func flock(f *os.File) error {
	heldMu.Lock()
	defer heldMu.Unlock()
	if g, ok := held[f.Name()]; ok {
		if _, err := g.Stat(); err == nil {
			return store.ErrLocked
		}
	}
	held[f.Name()] = f
	return nil
}
