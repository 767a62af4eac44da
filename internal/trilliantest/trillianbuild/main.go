// Command trillianbuild builds Trillian's log server and signer at the
// version go.mod pins into the cache the replica tests use (see package
// trilliantest), unless they are there, and says what it cost. .ci/run runs
// it before the tests.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sumkeep/sumkeep/internal/trilliantest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	b, err := trilliantest.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trillianbuild:", err)
		os.Exit(1)
	}
	if b.Took > 0 {
		fmt.Printf("built Trillian %s binaries into %s in %s\n", b.Version, b.Dir, b.Took.Round(time.Second))
	} else {
		fmt.Printf("Trillian %s binaries cached in %s\n", b.Version, b.Dir)
	}
}
