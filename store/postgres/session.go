package postgres

import (
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// sessionParams are set in every session sumkeep opens, unless the
// connection string sets them itself.
//
// Every query sumkeep sends is a point or range read through an index
// (the hash index of lookup keys, the BRIN index of record ids, primary
// keys). The planner can only see that the BRIN index fits an id range
// from the statistics ANALYZE gathers (the ids' correlation with the
// table's order); a records table that has not been analyzed yet (after a
// first sync, when autovacuum is off or has not come round) gets a
// parallel sequential scan of the whole table for every id range read: on
// a 300,010-record log, 0.6 s for each level-0 tile a verify or a go
// command asks for, instead of 40 buffers. Without sequential scans the
// same query reads only the BRIN ranges that hold the ids, whatever the
// statistics say. Tables with no index for a query are still scanned.
// No sumkeep query gains from parallel workers, which cost a process
// start each, nor from JIT compilation, which the planner turns on for a
// lookup of many keys at once (its estimate grows with the array's
// length): compiling took 0.6 s of a query that runs in 20 ms.
var sessionParams = map[string]string{
	"enable_seqscan":                  "off",
	"max_parallel_workers_per_gather": "0",
	"jit":                             "off",
}

// setSessionParams adds sessionParams to cfg's startup parameters where
// the connection string leaves them unset.
func setSessionParams(cfg *pgconn.Config) {
	for k, v := range sessionParams {
		if _, ok := cfg.RuntimeParams[k]; !ok {
			cfg.RuntimeParams[k] = v
		}
	}
}

// tlsKeys are the connection string keys (and their environment variables)
// that choose or configure TLS, or may (a service file).
var (
	tlsKeys    = []string{"sslmode", "ssl", "sslnegotiation", "sslrootcert", "sslcert", "sslkey", "service", "servicefile"}
	tlsEnv     = []string{"PGSSLMODE", "PGSSLNEGOTIATION", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSERVICE", "PGSERVICEFILE"}
	tlsKeyword = regexp.MustCompile(`(?i)(^|\s)(` + strings.Join(tlsKeys, "|") + `)\s*=`)
)

// plainOnLoopback makes a connection to a server on this machine try
// without TLS first, when nothing asked for TLS: no sslmode (nor any other
// TLS key, nor a service that could set one) in dsn or the environment, and
// every host a loopback address or a Unix socket.
//
// pgx, like libpq, defaults to sslmode=prefer: try TLS, without checking the
// server's certificate, then without TLS. Against a server with ssl=on
// every connection then pays a TLS handshake: a few milliseconds of CPU on
// both ends, the bulk of a small verify's time against a local database.
// Unverified TLS protects only against someone who can read the traffic
// but not change it, and loopback traffic never leaves the kernel: only a
// user who could read this process's memory anyway can read it. So on
// loopback prefer is made allow: plain first, TLS if the server requires it
// (a hostssl line in pg_hba.conf). A connection string or environment that
// names any sslmode is followed exactly; so is any remote host.
func plainOnLoopback(dsn string, cfg *pgconn.Config) {
	if namesTLS(dsn) {
		return
	}
	for _, k := range tlsEnv {
		if v, ok := os.LookupEnv(k); ok && v != "" {
			return
		}
	}
	all := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	for _, f := range all {
		if !localHost(f.Host) {
			return
		}
	}
	// prefer gives each host a TLS try followed by a plain one: swap them.
	for i := 0; i+1 < len(all); i++ {
		a, b := all[i], all[i+1]
		if a.Host == b.Host && a.Port == b.Port && a.TLSConfig != nil && b.TLSConfig == nil {
			all[i], all[i+1] = b, a
			i++
		}
	}
	cfg.Host, cfg.Port, cfg.TLSConfig, cfg.Fallbacks = all[0].Host, all[0].Port, all[0].TLSConfig, all[1:]
}

// namesTLS reports whether dsn (URL or keyword/value form) names any of
// tlsKeys. A keyword form is matched loosely: a quoted value that looks
// like such a key (a password, say) only means TLS is left as pgx sets it.
func namesTLS(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return true
		}
		q := u.Query()
		for _, k := range tlsKeys {
			if q.Has(k) {
				return true
			}
		}
		return false
	}
	return tlsKeyword.MatchString(dsn)
}
