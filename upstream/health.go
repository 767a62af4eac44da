package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Request kinds, as Observation.Kind and metric labels name them.
const (
	KindLatest    = "latest"
	KindLookup    = "lookup"
	KindTile      = "tile"      // hash tile
	KindDataTile  = "data_tile" // data tile (level -1)
	KindSupported = "supported"
)

// An Observation is one finished HTTP request to an upstream: each attempt
// of a retried request is observed on its own. It is what metrics and the
// per-upstream health measure are built from.
type Observation struct {
	Upstream string // the upstream's base URL, credentials masked
	Kind     string // KindLatest, KindLookup, ...
	Duration time.Duration
	Status   int   // the HTTP status; 0 if no answer came
	Err      error // nil for a 200 answer read whole
}

// ErrorKind names what went wrong in an observed request, for metric labels
// and status: "" for success, else "canceled", "timeout", "network",
// "not_found" (404, 410), "refused" (403), "status_4xx", "status_5xx",
// "html" (an HTML page in the answer's place: see PageError) or "other" (a
// malformed or oversized answer).
func (o Observation) ErrorKind() string {
	switch {
	case o.Err == nil:
		return ""
	case errors.Is(o.Err, context.Canceled):
		return "canceled"
	case errors.Is(o.Err, context.DeadlineExceeded):
		return "timeout"
	case o.Status == http.StatusNotFound || o.Status == http.StatusGone:
		return "not_found"
	case o.Status == http.StatusForbidden:
		return "refused"
	case o.Status >= 500:
		return "status_5xx"
	case o.Status >= 400:
		return "status_4xx"
	}
	if _, ok := errors.AsType[*PageError](o.Err); ok {
		return "html"
	}
	var ne net.Error
	if errors.As(o.Err, &ne) {
		if ne.Timeout() {
			return "timeout"
		}
		return "network"
	}
	var oe *net.OpError
	if errors.As(o.Err, &oe) {
		return "network"
	}
	return "other"
}

// A ClientOption configures a Client.
type ClientOption func(*Client)

// WithObserver makes the client call observe after every request it makes
// (every attempt of a retried one). observe must be quick and safe for
// concurrent use.
func WithObserver(observe func(Observation)) ClientOption {
	return func(c *Client) { c.observe = observe }
}

// State is an upstream's state as measured from real requests.
type State string

const (
	StateHealthy     State = "healthy"     // answering, at its usual latency
	StateSlow        State = "slow"        // answering, well above the best upstream's latency
	StateDown        State = "down"        // its last requests failed (network, 5xx, timeout)
	StateQuarantined State = "quarantined" // it lied (see evidence); not asked until Until
)

// Health is one upstream as measured from real requests: what `sumkeep
// status`, the status page and the metrics show of it.
type Health struct {
	URL     string // credentials masked
	State   State
	Latency time.Duration // moving estimate of a successful request's latency; 0 if none yet
	P50     time.Duration // over recent requests
	P99     time.Duration
	// Counters since the process started.
	Requests int64
	Errors   int64
	Hedges   int64 // requests sent to it as a hedge (another upstream was slow)
	Lies     int64 // lies caught from it
	// LastError is the last failure, safe to print; LastErrorAt when.
	LastError   string
	LastErrorAt time.Time
	// Until is when a quarantine (or a down state's next probe) ends.
	Until time.Time
	// History is its latency over the last hour, one point a minute, oldest
	// first (empty where nothing was measured).
	History []Sample
}

// A Sample is an upstream's median latency and error count over one minute.
type Sample struct {
	At       time.Time
	P50      time.Duration
	Requests int64
	Errors   int64
}

// A HealthReporter tells the health of the upstreams it reads from, in
// order of preference (best first).
type HealthReporter interface {
	Health() []Health
}
