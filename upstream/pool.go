package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// A Pool reads one checksum database from several upstreams, none of them
// trusted: every answer is verified by the caller against the database's
// key, so any source will do, and the pool only chooses whom to ask.
//
// Per upstream it measures, from the requests it really makes, a moving
// estimate of latency, a window of recent latencies (p50, p95, p99), errors
// and lies. Each request goes to the best upstream: healthy, and of least
// typical latency (the median of its recent answers, which a spike now
// and then does not move; one not measured yet is tried first, so that
// each gets measured, and one with fewer than eight answers is probed
// with /latest, one at a time, until it has eight, so that one unlucky
// answer does not decide where requests go).
//
// Hedging: if no answer comes within a hedge delay derived from that
// upstream's recent latency (the p99 of its answers no hedge beat, at
// most three times its median),
// the same request is sent again, as long as the hedge budget allows (at
// most HedgeMax of all requests); the first answer wins and the others
// are cancelled. The hedge goes to the upstream expected to answer first,
// which is often the same one: a spike that one request of a fast
// upstream meets (a lost packet, a slow disk, a busy backend behind a
// load balancer) is rarely met by the next, which then answers at the
// usual speed, while a hedge to an upstream fifteen times slower could
// only hide it that much later. An upstream is sent a second copy only
// while it answers other requests (one that answers nothing may have
// stopped altogether) and, since its slowness may not be the request's
// alone, only if it is at least twice as fast as the best other one (a
// third copy: three times; it is never sent a fourth). The copies a hedge
// beat are noted as late (their
// age, a lower bound of their latency) in their upstream's window, so the
// hedge delay is derived from what the upstream really does, spikes
// included, not only from the answers no hedge beat; a spiky upstream
// then gets its hedge delay at three times its median. And when the
// delay is up, the hedge is sent only if it is more likely than not to
// answer first (see worthHedging): if most of the upstream's recent
// requests that got as late ended soon after, it is not, and the pool
// looks again once a new copy would have answered. So the budget goes on
// spikes, not on the ordinary variation of an upstream's answers, whose
// hedges would have lost anyway. A hedge the budget refuses is looked at
// again as often (each request made adds to the budget). A request still
// unanswered after four hedge delays (at least 100 ms) is sent again to
// the same choice whatever the budget, spending a hedge of it if one is
// saved.
//
// What bounds hiding spikes: the budget starts full (hedgeBurst) and
// fills by HedgeMax of the requests made. An upstream that spikes on as
// large a share of its requests as HedgeMax leaves nothing to spare, and
// the spikes that meet an empty budget are hidden only at the stall
// delay. And a request whose copies each meet a spike in turn waits a
// hedge delay for each.
//
// A network error, a 5xx or a timeout moves to the best upstream not
// asked yet at once, and so does a 404: the request fails only
// when every upstream has answered, and its error (a *PoolError) then says
// what each one said. An upstream that fails is down: it is asked again
// only after a backoff, by a probe of /latest, or when no other is left. An
// upstream the caller caught lying (Blame) is quarantined: not asked for
// Quarantine, unless no other upstream is left.
//
// A Pool records which upstream answered each request in the context's
// Answers (WithAnswers), for the caller's evidence and Blame.
type Pool struct {
	cfg     PoolConfig
	members []*member
	logger  *slog.Logger

	mu     sync.Mutex
	tokens float64 // hedge budget: hedges saved up
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	// HedgeDelay is how long a request waits for an upstream's answer
	// before it goes to the next one too; 0 derives it from the
	// upstream's recent latency (auto).
	HedgeDelay time.Duration
	// HedgeMax is the largest share of all requests that may be hedges
	// (default 0.1; negative: never hedge). Failing over from an upstream
	// that failed, or that has not answered within StallAfter, is not
	// bounded by it.
	HedgeMax float64
	// Quarantine is how long an upstream caught lying is not asked
	// (default 10 minutes).
	Quarantine time.Duration
	// HTTP is the client for every upstream; nil gives each its own
	// (see NewClient).
	HTTP *http.Client
	// ClientOptions are applied to each upstream's Client (its observer
	// is the pool's: use Observe to see the observations too).
	ClientOptions []ClientOption
	// Observe, if not nil, is called with every observation.
	Observe func(Observation)
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
}

// Defaults of a PoolConfig.
const (
	DefaultHedgeMax   = 0.1
	DefaultQuarantine = 10 * time.Minute
)

const (
	// hedgeFloor is the shortest automatic hedge delay.
	hedgeFloor = 10 * time.Millisecond
	// hedgeUnmeasured is the hedge delay for an upstream with too few
	// recent answers to derive one from.
	hedgeUnmeasured = 300 * time.Millisecond
	// minSamples is how many recent answers a derived delay needs.
	minSamples = 8
	// stallFloor is the shortest wait for an answer before failing over
	// to the next upstream regardless of the hedge budget.
	stallFloor = 100 * time.Millisecond
	// stallsDown is how many requests in a row an upstream must leave
	// unanswered past the stall delay, answering nothing meanwhile for
	// a second or more, to be taken as down.
	stallsDown = 3
	// hedgeBurst is the most hedges the budget saves up.
	hedgeBurst = 10
	// window is how many recent answers the latency distribution holds.
	window = 128
	// probeTimeout bounds a probe of an upstream.
	probeTimeout = 10 * time.Second
	// remeasure is how old an upstream's last answer may get before a
	// probe measures it again: one not chosen for a while (slower once,
	// or hidden behind a faster one) is measured anew, so that it can
	// win again when it has become the faster.
	remeasure = 30 * time.Second
	// maxBackoff is the longest wait before a down upstream is probed.
	maxBackoff = time.Minute
	// rounds is how many times a request is tried over all upstreams
	// when every one failed transiently.
	rounds = 3
	// historyLen is how many minutes Health's history covers.
	historyLen = 60
	// minuteSamples is how many latencies a minute of history keeps.
	minuteSamples = 64
)

// A Candidate is an upstream to read from: its URL (credentials kept) and,
// if it could not be reached when it was found (Discover), why. Such an
// upstream starts down and is probed again later.
type Candidate struct {
	URL string
	Err error
}

// NewPool returns a pool over the upstreams, in order of preference until
// they are measured.
func NewPool(cands []Candidate, cfg PoolConfig) *Pool {
	if cfg.HedgeMax == 0 {
		cfg.HedgeMax = DefaultHedgeMax
	}
	if cfg.HedgeMax >= 1 {
		cfg.HedgeMax = 0.99
	}
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = DefaultQuarantine
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{cfg: cfg, logger: logger}
	if cfg.HedgeMax > 0 {
		// The budget starts full, as a token bucket does: a process's
		// first spikes are hidden too, and over time hedges stay
		// within HedgeMax all the same.
		p.tokens = hedgeBurst
	}
	now := time.Now()
	for i, cand := range cands {
		m := &member{index: i}
		opts := append(slices.Clip(cfg.ClientOptions), WithObserver(func(o Observation) {
			m.observe(p, o)
			if cfg.Observe != nil {
				cfg.Observe(o)
			}
		}))
		m.c = NewClient(cand.URL, cfg.HTTP, opts...)
		m.c.tries = 1 // the pool moves to the next upstream instead
		m.url = m.c.URL()
		if cand.Err != nil {
			m.fails = 1
			m.down = true
			m.downUntil = now.Add(backoff(1))
			m.lastErr, m.lastErrAt = cand.Err.Error(), now
		}
		p.members = append(p.members, m)
	}
	return p
}

// member is one upstream of a Pool and its measures.
type member struct {
	index int
	c     *Client
	url   string

	mu         sync.Mutex
	ewma       time.Duration // 0: no answer yet
	recent     [window]time.Duration
	censored   [window]bool // recent[i] is a lower bound: a copy a hedge beat (late)
	nrecent    int          // answers recorded (recent holds min(nrecent, window))
	requests   int64
	errors     int64
	hedges     int64
	lies       int64
	lastErr    string
	lastErrAt  time.Time
	lastAnswer time.Time
	fails      int  // transport failures since the last answer
	stalls     int  // requests left unanswered past the stall delay since the last answer
	down       bool // failing: asked only after downUntil, by a probe
	downUntil  time.Time
	probing    bool
	quarUntil  time.Time
	history    [historyLen]minute
}

// minute is one minute of an upstream's history.
type minute struct {
	at       time.Time // the minute's start; zero: unused
	requests int64
	errors   int64
	lat      []time.Duration // up to minuteSamples answers' latencies
}

// backoff is the wait before probing an upstream that failed fails times
// in a row.
func backoff(fails int) time.Duration {
	d := time.Second << min(max(fails-1, 0), 6)
	return min(d, maxBackoff)
}

// transient reports whether an observed failure says the upstream is not
// answering (as opposed to answering "no").
func transient(o Observation) bool {
	switch o.ErrorKind() {
	case "network", "timeout", "status_5xx", "html":
		return true
	}
	return o.Status == http.StatusTooManyRequests
}

// observe updates m's measures with one request it answered or failed.
func (m *member) observe(p *Pool, o Observation) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	h := m.minuteAt(now)
	h.requests++
	if o.ErrorKind() == "canceled" {
		return // a hedge that lost, or a client that left: no measure
	}
	if o.Err != nil && (transient(o) || o.Status == 0) {
		m.errors++
		h.errors++
		m.lastErr, m.lastErrAt = o.Err.Error(), now
		if !transient(o) {
			return // a malformed answer: an error, but the upstream answers
		}
		m.fails++
		m.downUntil = now.Add(backoff(m.fails))
		if !m.down {
			m.down = true
			p.logger.Warn("upstream down", "upstream", m.url, "err", o.Err, "probe in", backoff(m.fails))
		}
		return
	}
	// An answer (200, or a 4xx that is the upstream's word): it is up.
	if m.down {
		p.logger.Info("upstream answers again", "upstream", m.url)
	}
	m.down, m.fails, m.stalls = false, 0, 0
	m.lastAnswer = now
	d := o.Duration
	if m.ewma == 0 {
		m.ewma = d
	} else {
		m.ewma += (d - m.ewma) / 8
	}
	m.recent[m.nrecent%window] = d
	m.censored[m.nrecent%window] = false
	m.nrecent++
	if len(h.lat) < minuteSamples {
		h.lat = append(h.lat, d)
	} else {
		h.lat[h.requests%minuteSamples] = d
	}
}

// minuteAt returns the history entry of the minute holding t. m.mu is held.
func (m *member) minuteAt(t time.Time) *minute {
	start := t.Truncate(time.Minute)
	h := &m.history[start.Unix()/60%historyLen]
	if !h.at.Equal(start) {
		*h = minute{at: start}
	}
	return h
}

// stalled notes that a request to m has not been answered in time.
func (m *member) stalled(p *Pool, after time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stalls++
	// A moment's hiccup stalls every request in flight at once; an
	// upstream that stopped answering also has answered nothing for a
	// while.
	silent := time.Since(m.lastAnswer) > max(2*after, time.Second)
	if m.stalls >= stallsDown && silent && !m.down {
		m.down = true
		m.fails++
		m.downUntil = time.Now().Add(backoff(m.fails))
		m.lastErr, m.lastErrAt = fmt.Sprintf("no answer within %v, %d requests in a row", after.Round(time.Millisecond), m.stalls), time.Now()
		p.logger.Warn("upstream down", "upstream", m.url, "err", m.lastErr)
	}
}

// percentiles returns the p50, p95 and p99 of m's recent answers and how
// many there are. m.mu is held.
func (m *member) percentiles() (p50, p95, p99 time.Duration, n int) {
	n = min(m.nrecent, window)
	if n == 0 {
		return 0, 0, 0, 0
	}
	s := make([]time.Duration, n)
	copy(s, m.recent[:n])
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(int(q*float64(n)), n-1)] }
	return at(0.5), at(0.95), at(0.99), n
}

// answeredP99 is the p99 of m's recent answers that no hedge beat, or
// of them all if those are too few. m.mu is held.
func (m *member) answeredP99() time.Duration {
	n := min(m.nrecent, window)
	s := make([]time.Duration, 0, n)
	for i := range n {
		if !m.censored[i] {
			s = append(s, m.recent[i])
		}
	}
	if len(s) < minSamples {
		s = append(s[:0], m.recent[:n]...)
	}
	slices.Sort(s)
	return s[min(len(s)*99/100, len(s)-1)]
}

// hedgeDelay is how long a request waits for m before asking the next
// upstream too.
func (p *Pool) hedgeDelay(m *member) time.Duration {
	if p.cfg.HedgeDelay > 0 {
		return p.cfg.HedgeDelay
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p50, _, _, n := m.percentiles()
	switch {
	case n >= minSamples:
		// Past nearly every answer that came in its own time (the p99
		// of those no hedge beat), but no later than three times the
		// median: an upstream whose latency spikes now and then is
		// hedged on the spikes as soon as they stand out from its
		// ordinary answers. (The copies a hedge beat are left out:
		// each is a lower bound of a latency past the delay, and
		// counting them would set the delay from the spikes.)
		return max(hedgeFloor, min(m.answeredP99(), 3*p50))
	case n > 0:
		return max(hedgeFloor, 3*m.typical())
	}
	return hedgeUnmeasured
}

// typical is how long m usually takes to answer: the median of its recent
// answers (a spike now and then does not move it, as it would a mean);
// while it has too few for a median, the fastest of them (its first
// answer paid for the connection, and one unlucky answer must not bury
// an upstream that is usually the fastest); hedgeUnmeasured before its
// first.
func (p *Pool) typical(m *member) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.typical()
}

// typical is Pool.typical with m.mu held.
func (m *member) typical() time.Duration {
	p50, _, _, n := m.percentiles()
	switch {
	case n >= minSamples:
		return p50
	case n > 0:
		return slices.Min(m.recent[:n])
	}
	return hedgeUnmeasured
}

// answering reports whether m answered a request lately: within a second,
// or its stall delay if longer. A request of its that is late is then
// that request's bad luck, which another copy will likely not share; one
// that answers nothing may have stopped answering altogether.
func (p *Pool) answering(m *member) bool {
	window := max(time.Second, p.stallAfter(m))
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.lastAnswer.IsZero() && time.Since(m.lastAnswer) < window
}

// late notes that m left a request unanswered for at least d, when
// another copy of it was answered first: a lower bound of its latency,
// kept in its window of recent latencies (not in its moving estimate, nor
// its history).
func (m *member) late(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recent[m.nrecent%window] = d
	m.censored[m.nrecent%window] = true
	m.nrecent++
}

// worthHedging reports whether a copy of a request that m has left
// unanswered for age, sent now to an upstream that typically answers in
// d, is more likely than not to answer first: judged from m's recent
// requests that took longer than age, whether they took over d more (a
// late one, whose full latency is not known, counts as such). A request
// later than any seen lately is worth hedging. So the ordinary
// variation of an upstream's answers, most of which end soon after its
// hedge delay, costs no hedge, and its spikes do.
func (m *member) worthHedging(age, d time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	above, beyond := 0, 0
	for i := range min(m.nrecent, window) {
		if l := m.recent[i]; l > age {
			above++
			if m.censored[i] || l-age > d {
				beyond++
			}
		}
	}
	return above == 0 || 2*beyond >= above
}

// stallAfter is how long a request waits for m before asking the next
// upstream whatever the hedge budget.
func (p *Pool) stallAfter(m *member) time.Duration {
	return max(stallFloor, 4*p.hedgeDelay(m))
}

// URL names the pool's upstreams, credentials masked.
func (p *Pool) URL() string {
	urls := make([]string, len(p.members))
	for i, m := range p.members {
		urls[i] = m.url
	}
	return JoinURLs(urls)
}

// Len returns how many upstreams the pool has.
func (p *Pool) Len() int { return len(p.members) }

// order returns the upstreams to ask, best first: those up and not
// quarantined by measured latency (unmeasured first), then those down (a
// down one due for a probe is probed meanwhile), then, only if no other is
// left, the quarantined ones.
func (p *Pool) order(ctx context.Context) []*member {
	now := time.Now()
	type ranked struct {
		m     *member
		class int           // 0 up, 1 down, 2 quarantined
		lat   time.Duration // typical latency; 0: unmeasured
	}
	rs := make([]ranked, 0, len(p.members))
	pref := preferred(ctx)
	for _, m := range p.members {
		m.mu.Lock()
		r := ranked{m: m}
		if m.nrecent > 0 {
			r.lat = m.typical()
		}
		switch {
		case now.Before(m.quarUntil):
			r.class = 2
		case m.down:
			r.class = 1
			if !now.Before(m.downUntil) && !m.probing {
				m.probing = true
				go p.probe(m)
			}
		case !m.lastAnswer.IsZero() && now.Sub(m.lastAnswer) > remeasure && !m.probing:
			m.probing = true
			go p.probe(m)
		case len(p.members) > 1 && m.nrecent > 0 && m.nrecent < minSamples && !m.probing:
			// Measured by too few answers to be ranked fairly (one
			// may have been a spike, or paid for the connection):
			// probed, one at a time, until it has a median.
			m.probing = true
			go p.probe(m)
		}
		if m.url == pref && r.class < 2 {
			r.class, r.lat = -1, 0
		}
		m.mu.Unlock()
		rs = append(rs, r)
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.class, b.class), cmp.Compare(a.lat, b.lat))
	})
	out := make([]*member, 0, len(rs))
	for _, r := range rs {
		if r.class == 2 && len(out) > 0 {
			break
		}
		out = append(out, r.m)
	}
	return out
}

// probe asks an upstream for /latest: its observation brings a down one
// back or sets its next probe, and measures one not asked for a while.
func (p *Pool) probe(m *member) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	m.c.Latest(ctx)
	m.mu.Lock()
	m.probing = false
	m.mu.Unlock()
}

// chargeRequest adds one request's share to the hedge budget.
func (p *Pool) chargeRequest() {
	if p.cfg.HedgeMax < 0 {
		return
	}
	p.mu.Lock()
	// Hedges are at most HedgeMax of all requests, hedges included.
	p.tokens = min(hedgeBurst, p.tokens+p.cfg.HedgeMax/(1-p.cfg.HedgeMax))
	p.mu.Unlock()
}

// forceHedge spends one hedge of the budget, if one is saved: a
// failover from a stalled upstream, which does not wait for the budget.
// It runs up no debt: a request whose upstream has held it past the stall
// delay is sent again whatever the budget, so a debt would not spare the
// upstreams a single request, only turn the hedges that could have hidden
// the next spikes sooner into failovers after a stall.
func (p *Pool) forceHedge() {
	p.mu.Lock()
	p.tokens = max(p.tokens-1, 0)
	p.mu.Unlock()
}

// takeHedge spends one hedge of the budget, if there is one.
func (p *Pool) takeHedge() bool {
	if p.cfg.HedgeMax < 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// A PoolError is a request no upstream answered: what each upstream said,
// in the order they were asked.
type PoolError struct {
	Request string
	Errs    []error
}

func (e *PoolError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = err.Error()
	}
	return fmt.Sprintf("%s: no upstream answered: %s", e.Request, strings.Join(parts, "; "))
}

// Unwrap returns every upstream's error, the most telling first: a "not
// served" (404, 410), then a refusal (403, other 4xx), then failures. So
// errors.Is(err, ErrNotServed) holds when some upstream said the log does
// not hold it and none could show otherwise.
func (e *PoolError) Unwrap() []error {
	rank := func(err error) int {
		var se *StatusError
		switch {
		case errors.Is(err, ErrNotServed):
			return 0
		case errors.As(err, &se) && se.Code < 500 && se.Code != http.StatusTooManyRequests:
			return 1
		}
		return 2
	}
	out := slices.Clone(e.Errs)
	slices.SortStableFunc(out, func(a, b error) int { return cmp.Compare(rank(a), rank(b)) })
	return out
}

// errQuarantined is the error of an upstream skipped for its quarantine.
var errQuarantined = errors.New("quarantined: caught lying")

// result is the outcome of tries[i].
type result struct {
	i    int
	data []byte
	err  error
}

// do makes one request (key names it in Answers) over the upstreams.
func (p *Pool) do(ctx context.Context, key string, f func(context.Context, *Client) ([]byte, error)) ([]byte, error) {
	if len(p.members) == 0 {
		return nil, fmt.Errorf("%s: no upstream configured", key)
	}
	p.chargeRequest()
	var errs []error
	for round := 0; round < rounds; round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(round*round) * 200 * time.Millisecond):
			}
		}
		data, m, rerrs, final := p.round(ctx, f)
		if m != nil {
			AnswersFrom(ctx).note(key, m.url)
			return data, nil
		}
		errs = rerrs
		if final || ctx.Err() != nil {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, &PoolError{Request: key, Errs: errs}
}

// round asks the upstreams, hedging and failing over, until one answers.
// final reports that some upstream answered "no" (a 4xx), so asking again
// is pointless.
//
// The request goes first to the best upstream (see order). A failure
// moves it at once to the best upstream not asked yet. A hedge (the
// request outstanding past the hedge delay of the upstream last asked,
// within the budget) or a failover from a stall (past stallAfter, paid
// from the budget later) goes to the upstream expected to answer first:
// the one of least typical latency (see typical), counting twice the
// latency of one that holds a copy of this request already, and asking
// one again only while it answers other requests (see answering). So a
// request to a fast upstream that spikes now and then is hedged to that
// same upstream, whose next answer will likely come at its usual speed,
// and not to a far slower one; the slower one is asked when the fast one
// holds three copies, stopped answering, or is barely faster.
func (p *Pool) round(ctx context.Context, f func(context.Context, *Client) ([]byte, error)) (data []byte, winner *member, errs []error, final bool) {
	order := p.order(ctx)
	now := time.Now()
	for _, m := range p.members {
		m.mu.Lock()
		if now.Before(m.quarUntil) && !slices.Contains(order, m) {
			errs = append(errs, fmt.Errorf("%s: %w until %s", m.url, errQuarantined, m.quarUntil.Format(time.RFC3339)))
		}
		m.mu.Unlock()
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every copy sends one result and at most one admission, after this
	// round may have returned: room for them all.
	results := make(chan result, maxCopies*len(p.members))
	admitted := make(chan int, maxCopies*len(p.members))
	var tries []try // every copy sent, in order
	asked := make(map[*member]int, len(order))
	failed := make(map[*member]bool, len(order))
	inflight := 0
	hedgeT := time.NewTimer(time.Hour)
	stallT := time.NewTimer(time.Hour)
	defer hedgeT.Stop()
	defer stallT.Stop()
	var last *member // the upstream asked last: its delays set the timers
	launch := func(m *member, hedge bool) {
		inflight++
		asked[m]++
		if hedge {
			m.mu.Lock()
			m.hedges++
			m.mu.Unlock()
		}
		i := len(tries)
		tries = append(tries, try{m: m, start: time.Now(), hedge: hedge, pending: true})
		var once sync.Once
		cctx := withAdmitted(rctx, func() { once.Do(func() { admitted <- i }) })
		go func() {
			d, err := f(cctx, m.c)
			results <- result{i, d, err}
		}()
		last = m
		hedgeT.Reset(p.hedgeDelay(m))
		stallT.Reset(p.stallAfter(m))
	}
	// fresh is the best upstream not asked yet, or nil.
	fresh := func() *member {
		for _, m := range order {
			if asked[m] == 0 {
				return m
			}
		}
		return nil
	}
	// hedgeTarget is the upstream a hedge or a stall's failover goes to,
	// or nil if none is worth asking. A stall's failover may go to an
	// upstream that is down, when no other is left.
	hedgeTarget := func(stall bool) *member {
		var best *member
		var bestCost time.Duration
		for _, m := range order {
			if failed[m] || asked[m] >= maxCopies {
				continue
			}
			m.mu.Lock()
			down := m.down
			m.mu.Unlock()
			if down && (!stall || asked[m] > 0) || asked[m] > 0 && !p.answering(m) && len(order) > 1 {
				continue
			}
			cost := p.typical(m)
			if down {
				cost += time.Hour // only if nothing else is left
			}
			if asked[m] > 0 {
				// Its copies are late: this may be the upstream's
				// slowness, not the request's bad luck.
				cost *= time.Duration(1 + asked[m])
			}
			if best == nil || cost < bestCost {
				best, bestCost = m, cost
			}
		}
		return best
	}
	launch(order[0], false)
	for inflight > 0 {
		select {
		case r := <-results:
			inflight--
			t := tries[r.i]
			if r.err == nil {
				// The copies sent before the winner that are still out
				// took longer than it: their upstreams' latency
				// windows learn at least that much (otherwise only
				// the spikes no hedge hid would be seen, and the
				// hedge delay would be set from the answers below
				// the spikes).
				for _, o := range tries[:r.i] {
					if !o.done && !o.pending {
						o.m.late(time.Since(o.start))
					}
				}
				return r.data, t.m, nil, false
			}
			tries[r.i].done = true
			if ctx.Err() != nil {
				return nil, nil, append(errs, ctx.Err()), true
			}
			failed[t.m] = true
			var se *StatusError
			if errors.As(r.err, &se) && se.Code < 500 && se.Code != http.StatusTooManyRequests {
				final = true
			}
			errs = append(errs, r.err)
			if m := fresh(); m != nil {
				launch(m, false)
			}
		case i := <-admitted:
			// The copy is sent only now (it waited for a slot, or for
			// the first connection to its upstream): time it from now.
			if tries[i].done {
				break // its failure came in first
			}
			tries[i].start, tries[i].pending = time.Now(), false
			if i == len(tries)-1 {
				hedgeT.Reset(p.hedgeDelay(last))
				stallT.Reset(p.stallAfter(last))
			}
		case <-hedgeT.C:
			// The copy sent last set the timer; is a new one likely
			// to beat it? If not, look again once a new one would
			// have answered. One still waiting to be sent is not late.
			t := tries[len(tries)-1]
			if t.pending {
				hedgeT.Reset(p.hedgeDelay(t.m))
				break
			}
			m := hedgeTarget(false)
			if m == nil {
				break
			}
			d := p.typical(m)
			if !t.m.worthHedging(time.Since(t.start), d) {
				hedgeT.Reset(d)
				break
			}
			if p.takeHedge() {
				launch(m, true)
			} else {
				hedgeT.Reset(d)
			}
		case <-stallT.C:
			if tries[len(tries)-1].pending {
				// Still waiting to be sent: no fault of the upstream's,
				// but another may answer sooner.
				if m := hedgeTarget(true); m != nil && m != last {
					p.forceHedge()
					launch(m, true)
				} else {
					stallT.Reset(p.stallAfter(last))
				}
				break
			}
			last.stalled(p, p.stallAfter(last))
			if m := hedgeTarget(true); m != nil {
				p.forceHedge()
				launch(m, true)
			}
		case <-ctx.Done():
			return nil, nil, append(errs, ctx.Err()), true
		}
	}
	return nil, nil, errs, final
}

// maxCopies is the most copies of one request an upstream is sent: the
// request and two hedges (the first hedge may meet a spike too).
const maxCopies = 3

// try is one copy of a request sent to an upstream.
type try struct {
	m       *member
	start   time.Time
	hedge   bool
	done    bool // it failed
	pending bool // not sent yet: waiting for a slot (start is when it was launched)
}

// Latest returns a signed tree head note from the best upstream.
func (p *Pool) Latest(ctx context.Context) ([]byte, error) {
	return p.do(ctx, LatestKey, func(ctx context.Context, c *Client) ([]byte, error) { return c.Latest(ctx) })
}

// Lookup returns the /lookup answer for path@version from the best
// upstream that has it.
func (p *Pool) Lookup(ctx context.Context, path, version string) ([]byte, error) {
	return p.do(ctx, LookupKey(path, version), func(ctx context.Context, c *Client) ([]byte, error) {
		return c.Lookup(ctx, path, version)
	})
}

// Tile returns tile t from the best upstream that has it (see
// Client.Tile).
func (p *Pool) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	return p.do(ctx, TileKey(t), func(ctx context.Context, c *Client) ([]byte, error) { return c.Tile(ctx, t) })
}

// An Answer is one upstream's answer to a request asked of all of them.
type Answer struct {
	Source string // the upstream's URL, credentials masked
	Data   []byte
	Err    error
}

// latestTimeout bounds each upstream's answer in LatestAll.
const latestTimeout = 10 * time.Second

// LatestAll asks every upstream not quarantined, and not down and waiting
// for its next probe, for its signed tree head, at once, so that heads
// from all of them are linked (a split view is caught as a fork); with
// none such left, the best of the others. Answers are in the pool's order
// of preference.
func (p *Pool) LatestAll(ctx context.Context) []Answer {
	now := time.Now()
	all := p.order(ctx)
	order := slices.DeleteFunc(slices.Clone(all), func(m *member) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.down && now.Before(m.downUntil) || now.Before(m.quarUntil)
	})
	if len(order) == 0 && len(all) > 0 {
		order = all[:1] // none left to ask but the best of the rest
	}
	out := make([]Answer, len(order))
	var wg sync.WaitGroup
	for i, m := range order {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, latestTimeout)
			defer cancel()
			d, err := m.c.Latest(ctx)
			out[i] = Answer{Source: m.url, Data: d, Err: err}
		})
	}
	wg.Wait()
	return out
}

// Blame quarantines the upstream source (a URL as Answers names it) for
// the pool's Quarantine: it sent what err says, which did not verify.
// It reports whether source is one of the pool's upstreams.
func (p *Pool) Blame(source string, err error) bool {
	for _, m := range p.members {
		if m.url != source {
			continue
		}
		now := time.Now()
		m.mu.Lock()
		m.lies++
		m.quarUntil = now.Add(p.cfg.Quarantine)
		m.lastErr, m.lastErrAt = "lie: "+err.Error(), now
		m.mu.Unlock()
		p.logger.Error("upstream quarantined: it sent an answer that does not verify", "upstream", source, "until", now.Add(p.cfg.Quarantine).Format(time.RFC3339), "err", err)
		return true
	}
	return false
}

// Health returns each upstream's measures, best first.
func (p *Pool) Health() []Health {
	order := p.order(context.Background())
	for _, m := range p.members {
		if !slices.Contains(order, m) {
			order = append(order, m)
		}
	}
	now := time.Now()
	var best time.Duration
	for _, m := range order {
		m.mu.Lock()
		if !m.down && !now.Before(m.quarUntil) && m.ewma > 0 && (best == 0 || m.ewma < best) {
			best = m.ewma
		}
		m.mu.Unlock()
	}
	out := make([]Health, 0, len(order))
	for _, m := range order {
		m.mu.Lock()
		p50, _, p99, _ := m.percentiles()
		h := Health{
			URL: m.url, State: StateHealthy, Latency: m.ewma, P50: p50, P99: p99,
			Requests: m.requests, Errors: m.errors, Hedges: m.hedges, Lies: m.lies,
			LastError: m.lastErr, LastErrorAt: m.lastErrAt,
		}
		switch {
		case now.Before(m.quarUntil):
			h.State, h.Until = StateQuarantined, m.quarUntil
		case m.down:
			h.State, h.Until = StateDown, m.downUntil
		case best > 0 && m.ewma > 2*best && m.ewma-best > 20*time.Millisecond:
			h.State = StateSlow
		}
		h.History = m.historyAt(now)
		m.mu.Unlock()
		out = append(out, h)
	}
	return out
}

// historyAt returns the last hour before now, one sample a minute, oldest
// first. m.mu is held.
func (m *member) historyAt(now time.Time) []Sample {
	out := make([]Sample, 0, historyLen)
	cur := now.Truncate(time.Minute)
	for i := historyLen - 1; i >= 0; i-- {
		at := cur.Add(-time.Duration(i) * time.Minute)
		s := Sample{At: at}
		if h := &m.history[at.Unix()/60%historyLen]; h.at.Equal(at) {
			s.Requests, s.Errors = h.requests, h.errors
			if len(h.lat) > 0 {
				l := slices.Clone(h.lat)
				slices.Sort(l)
				s.P50 = l[len(l)/2]
			}
		}
		out = append(out, s)
	}
	return out
}
