package sqlite

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/sumkeep/sumkeep/store"
)

// LockSync implements store.Store with an exclusive flock(2) on the file
// <db>.sync-<log>.lock beside the database. The lock belongs to the open
// file, so it excludes another open of the same file in this process as
// well as other processes, and the kernel drops it when the holder exits,
// killed or not. The file is never removed (removing it would let a second
// syncer lock a new file while the first still holds the old one); it holds
// the holder's process id, for people.
//
// SQLite's own locks are on the database file, never on this one: closing
// it cannot drop them.
func (s *Store) LockSync(ctx context.Context, log string) (func(), error) {
	if err := s.check(true); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := s.path + ".sync-" + url.PathEscape(log) + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sqlite: taking sync lock for %s: %w", log, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("sync lock for %s (%s%s): %w", log, name, holder(name), err)
		}
		return nil, fmt.Errorf("sqlite: taking sync lock for %s: %w", log, err)
	}
	// Who holds it, for people; the lock does not depend on it.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s.mu.Lock()
	if s.locks == nil { // closed meanwhile
		s.mu.Unlock()
		f.Close()
		return nil, errClosed
	}
	s.locks[f] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			held := s.locks != nil
			if held {
				delete(s.locks, f)
			}
			s.mu.Unlock()
			if held { // else Close released it
				f.Close()
			}
		})
	}, nil
}

// holder describes the holder of the lock file name, if it says.
func holder(name string) string {
	b, err := os.ReadFile(name)
	pid := strings.TrimSpace(string(b))
	if err != nil || pid == "" {
		return ""
	}
	return ", held by process " + pid
}
