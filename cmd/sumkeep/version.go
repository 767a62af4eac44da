package main

import (
	"context"
	"fmt"

	"github.com/sumkeep/sumkeep/internal/buildinfo"
)

func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := e.flags("version")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"version takes no arguments"}
	}
	fmt.Fprintln(e.stdout, buildinfo.Read())
	return nil
}
