package server

import (
	"log/slog"
	"net/http"
	"time"
)

// HTTPLimits bounds what one client can hold of a server: how long it may
// take to send a request, to read an answer, and to keep an idle
// connection, and how large its headers may be. Zero fields take the
// defaults below.
//
// The protocol's requests are GETs without a body and its answers are small
// (a tile is at most 8 KiB of hashes or 256 records), so a client that
// sends a request slowly or does not read its answer is holding a
// connection and a goroutine for nothing.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, headers and body (default
	// 20s).
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of a request's headers to
	// the end of its answer: the handler's store calls (each bounded by
	// StoreTimeout), a fetch from the upstream in lazy mode, and writing
	// (default 6·StoreTimeout+10s, plus a minute when lookups are fetched
	// through).
	WriteTimeout time.Duration
	// IdleTimeout bounds keeping an idle connection open (default 1m).
	IdleTimeout time.Duration
	// MaxHeaderBytes caps a request's headers (default 16 KiB; the go
	// command sends a few hundred bytes).
	MaxHeaderBytes int
}

// fetchAllowance is the time the upstream gets to answer a lookup fetched
// through (the syncer's own bound on a fetch).
const fetchAllowance = time.Minute

// HTTPServer returns an http.Server serving Handler within limits l. Its
// own errors (malformed requests, handler aborts) go to the server's logger,
// rate-limited.
func (s *Server) HTTPServer(l HTTPLimits) *http.Server {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = 20 * time.Second
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = 6*s.storeTimeout + 10*time.Second
		if len(s.fetch) > 0 {
			l.WriteTimeout += fetchAllowance
		}
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = time.Minute
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 16 << 10
	}
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
}
