//go:build !unix

package trilliantest

import (
	"context"
	"os"
)

// flock does nothing where flock(2) is missing: parallel builds then race,
// and the rename that publishes the binaries decides.
func flock(context.Context, *os.File) error { return nil }
