//go:build !unix

package filelock

import (
	"context"
	"os"
)

// Lock does nothing where flock(2) is missing: parallel builds then race,
// and the rename that publishes the binaries decides.
func Lock(context.Context, *os.File) error { return nil }
