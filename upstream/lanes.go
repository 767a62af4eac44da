package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
)

// laneStreams is how many requests a lane has in flight at most: 100, the
// smallest SETTINGS_MAX_CONCURRENT_STREAMS that HTTP/2 recommends a server
// to allow (RFC 9113, 6.5.2), so one connection carries them all.
const laneStreams = 100

// lanes spreads a Client's requests over its own transport so that an
// upstream reached over HTTP/2 costs a connection (and, over TLS, a
// handshake) for every laneStreams requests in flight, not one per
// request.
//
// Go's transport dials for each request that finds no connection able to
// take it: before the first connection is up, every request of a burst
// dials its own, and whenever a connection is at the server's stream
// limit, every request that finds it so dials again; the connections
// left over are closed at once. A seed of a few hundred lookups over TLS
// so made hundreds of handshakes. (The transport's strict stream limit,
// which would queue instead, left requests waiting forever.) So, until
// it has a connection to the upstream, a Client sends one request at a
// time: the connection says whether the upstream speaks HTTP/2. If it
// does, requests go over lanes, each a clone of the transport that dials
// one connection at a time (MaxConnsPerHost 1: requests waiting for it
// share it once up) and is given at most laneStreams requests at once; a
// burst beyond opens another lane. Over HTTP/1.1 the transport itself is
// used, a connection a request, as before.
type lanes struct {
	base *http.Client    // the Client's, for HTTP/1.1
	own  *http.Transport // base's Transport, cloned for each lane

	mu      sync.Mutex
	proto   int           // the upstream's HTTP major version; 0 until connected
	probing bool          // a request is out while proto is 0
	wake    chan struct{} // closed when proto or probing changes
	h2      []*lane
}

// A lane is a clone of the transport and the requests it has in flight.
type lane struct {
	hc *http.Client
	n  int
}

func newLanes(base *http.Client, own *http.Transport) *lanes {
	return &lanes{base: base, own: own, wake: make(chan struct{})}
}

// admit waits until a request may be sent and returns the client to send
// it with and the context to send it in; done must be called once its
// answer is read, or it failed.
func (l *lanes) admit(ctx context.Context, shown string) (hc *http.Client, rctx context.Context, done func(), err error) {
	l.mu.Lock()
	for l.proto == 0 && l.probing {
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, nil, nil, fmt.Errorf("waiting for a connection to %s: %w", shown, ctx.Err())
		}
		l.mu.Lock()
	}
	defer l.mu.Unlock()
	switch l.proto {
	case 0:
		// The first request goes over the first lane: if the upstream
		// speaks HTTP/2, its connection is the one the lane keeps. Once
		// connected, the protocol is known and the others may go.
		l.probing = true
		ln := l.lane()
		ln.n++
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { l.learn(l.protoOf(info.Conn)) }}
		return ln.hc, httptrace.WithClientTrace(ctx, trace), func() { l.release(ln); l.learn(0) }, nil
	case 2:
		ln := l.lane()
		ln.n++
		return ln.hc, ctx, func() { l.release(ln) }, nil
	}
	return l.base, ctx, func() {}, nil
}

// protoOf is the HTTP major version spoken over conn: over TLS, what ALPN
// chose; in the clear, 2 only if the transport speaks nothing else.
func (l *lanes) protoOf(conn net.Conn) int {
	if tc, ok := conn.(*tls.Conn); ok {
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			return 2
		}
		return 1
	}
	if p := l.own.Protocols; p != nil && p.UnencryptedHTTP2() && !p.HTTP1() {
		return 2
	}
	return 1
}

// learn records the upstream's protocol and lets waiting requests go; 0
// (the request sent to learn it ended without a connection) lets the next
// one try.
func (l *lanes) learn(proto int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proto == 0 {
		l.proto = proto
		l.probing = false
		close(l.wake)
		l.wake = make(chan struct{})
	}
}

// lane returns the first lane with room for a request, opening one if
// none has. l.mu is held.
func (l *lanes) lane() *lane {
	for _, ln := range l.h2 {
		if ln.n < laneStreams {
			return ln
		}
	}
	t := l.own.Clone()
	t.MaxConnsPerHost = 1
	ln := &lane{hc: &http.Client{Transport: t, Timeout: l.base.Timeout, CheckRedirect: l.base.CheckRedirect, Jar: l.base.Jar}}
	l.h2 = append(l.h2, ln)
	return ln
}

// release ends a request of ln's.
func (l *lanes) release(ln *lane) {
	l.mu.Lock()
	ln.n--
	l.mu.Unlock()
}
