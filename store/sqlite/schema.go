package sqlite

import "embed"

// schema holds this store's migrations (see store.Migrations).
//
//go:embed schema/*.sql
var schema embed.FS
