package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// An Observer is told what a server answers, for metrics (package metrics
// implements it; this package knows nothing of Prometheus). Its methods run
// on every request's goroutine after the answer is written, so they must be
// quick and safe for concurrent use. A nil Config.Observer costs nothing.
type Observer interface {
	// Request is called once for every request answered: the route it
	// matched (a pattern such as "/lookup/*mv" or "/sumdb/:name/tile/*tile",
	// never the raw path, so that the set of routes stays small; "unmatched"
	// for a path no route serves), the status sent and how long the answer
	// took.
	Request(route string, code int, d time.Duration)
	// Lookup is called once for every lookup answered, with its outcome;
	// malformed lookups (400) are not lookups.
	Lookup(outcome LookupOutcome)
}

// LookupOutcome is how a lookup was answered.
type LookupOutcome uint8

// Lookup outcomes.
const (
	LookupStoreHit LookupOutcome = iota // found in the store
	LookupCacheHit                      // found in the server's record cache
	LookupFetched                       // fetched through from the upstream (lazy mode), then found
	LookupNotFound                      // answered 404: neither the store nor the upstream has it
	LookupFailed                        // the store or the upstream failed (5xx, or a 404 for an upstream that could not be asked)
	numLookupOutcomes
)

var lookupOutcomeNames = [numLookupOutcomes]string{"store_hit", "cache_hit", "fetched", "not_found", "failed"}

// String returns the outcome's metric label: store_hit, cache_hit,
// fetched, not_found or failed.
func (o LookupOutcome) String() string {
	if o < numLookupOutcomes {
		return lookupOutcomeNames[o]
	}
	return "unknown"
}

// LookupOutcomes returns every outcome, in order.
func LookupOutcomes() []LookupOutcome {
	os := make([]LookupOutcome, numLookupOutcomes)
	for i := range os {
		os[i] = LookupOutcome(i)
	}
	return os
}

// lookupSource is where answerLookup found (or looked for) a record.
type lookupSource uint8

const (
	fromStore       lookupSource = iota
	fromCache                    // the record cache
	fromUpstream                 // fetched through
	upstreamFailure              // fetching through failed other than with not-found
)

// RouteUnmatched is the route an Observer is given for a path no route
// serves.
const RouteUnmatched = "unmatched"

// observeRequest is the middleware that tells the observer of every
// request; it is installed only when there is an observer.
func (s *Server) observeRequest(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.observer.Request(route(c), c.Writer.Status(), time.Since(start))
}

// route names the route c matched: gin's pattern, refined for the proxy
// form (one pattern, /sumdb/:name/*rest, serves every endpoint of it).
func route(c *gin.Context) string {
	p := c.FullPath()
	switch p {
	case "":
		return RouteUnmatched
	case proxyPattern:
		rest := c.Param("rest")
		switch {
		case rest == "/supported":
			return "/sumdb/:name/supported"
		case rest == "/latest":
			return "/sumdb/:name/latest"
		case strings.HasPrefix(rest, "/lookup/"):
			return "/sumdb/:name/lookup/*mv"
		case strings.HasPrefix(rest, "/tile/"):
			return "/sumdb/:name/tile/*tile"
		}
	}
	return p
}

// lookup answers a lookup and tells the observer how.
func (s *Server) lookup(c *gin.Context, log, mod string) {
	from := s.answerLookup(c, log, mod)
	if s.observer == nil {
		return
	}
	var o LookupOutcome
	switch code := c.Writer.Status(); {
	case code == http.StatusOK && from == fromCache:
		o = LookupCacheHit
	case code == http.StatusOK && from == fromUpstream:
		o = LookupFetched
	case code == http.StatusOK:
		o = LookupStoreHit
	case code == http.StatusBadRequest:
		return
	case code == http.StatusNotFound && from != upstreamFailure:
		o = LookupNotFound
	default:
		o = LookupFailed
	}
	s.observer.Lookup(o)
}

// mountMetrics serves h at GET /metrics.
func mountMetrics(e *gin.Engine, h http.Handler) {
	e.GET("/metrics", gin.WrapH(h))
}
