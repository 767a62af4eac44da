//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sqlite

import (
	"errors"
	"os"
	"syscall"

	"github.com/sumkeep/sumkeep/store"
)

// flock takes an exclusive flock(2) on f without waiting: store.ErrLocked if
// another open file holds one.
func flock(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lockErr error
	err = sc.Control(func(fd uintptr) {
		for {
			lockErr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if lockErr != syscall.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if errors.Is(lockErr, syscall.EWOULDBLOCK) {
		return store.ErrLocked
	}
	return lockErr
}
