package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestProbeUsesKeyIndex: the duplicate probe reaches records through the
// hash index of key even on a table nothing has analyzed, as during a first
// sync. Left to guesses, the planner scanned the whole table for each probe,
// or started parallel workers for it.
func TestProbeUsesKeyIndex(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var logID int16
	if err := s.pool.QueryRow(ctx, `INSERT INTO logs (name) VALUES ('log') RETURNING id`).Scan(&logID); err != nil {
		t.Fatal(err)
	}
	// Without statistics the planner guesses the rows from the pages: 60,000
	// rows of 2 kB make it guess as many as a log of millions holds.
	if _, err := s.pool.Exec(ctx, `INSERT INTO records (id, key, log_id, path, version, raw)
		SELECT g, hashtextextended(g::text, 0), $1, 'example.com/m' || g, 'v1.0.0', convert_to(repeat('x', 1800), 'UTF8')
		FROM generate_series(0, 59999) AS g`, logID); err != nil {
		t.Fatal(err)
	}
	keys := make([]int64, 40)
	for i := range keys {
		keys[i] = int64(i) * 7919
	}
	rows, err := s.pool.Query(ctx, "EXPLAIN "+probeSQL, logID, keys)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// Nor parallel workers: starting them costs more than the probe.
	if p := strings.Join(lines, "\n"); strings.Contains(p, "Seq Scan on records") || strings.Contains(p, "Gather") || !strings.Contains(p, "records_key") {
		t.Errorf("the probe is not one key index lookup per key:\n%s", p)
	}
}
