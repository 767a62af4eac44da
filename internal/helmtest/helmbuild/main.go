// Command helmbuild builds helm at the version package helmtest pins into
// the cache the chart tests use, unless it is there, and says what it
// cost. .ci/run runs it before the tests.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sumkeep/sumkeep/internal/helmtest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	path, took, err := helmtest.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helmbuild:", err)
		os.Exit(1)
	}
	if took > 0 {
		fmt.Printf("built helm %s into %s in %s\n", helmtest.Version, path, took.Round(time.Second))
	} else {
		fmt.Printf("helm %s cached in %s\n", helmtest.Version, path)
	}
}
