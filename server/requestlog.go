package server

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sumkeep/sumkeep/internal/redact"
)

// fetchedKey is the gin context key the lookup handler sets when it asked
// the upstream (fetch-through, lazy mode); the request log reports it.
const fetchedKey = "sumkeep.fetched"

// sampler decides which requests are logged: with rate F in (0, 1], the
// n-th request is logged when ⌊n·F⌋ moves, so exactly ⌊N·F⌋ of the first
// N are, spread evenly, at the cost of one atomic add.
type sampler struct {
	rate float64
	n    atomic.Uint64
}

func (s *sampler) take() bool {
	if s.rate >= 1 {
		return true
	}
	n := s.n.Add(1)
	return uint64(float64(n)*s.rate) != uint64(float64(n-1)*s.rate)
}

// requestLog logs one line per request through the server's logger, at
// level Info (so the rate limit on warnings and errors does not apply):
// method, path, status, bytes, duration, and whether a lookup was
// fetched through. Answers with status 500 and above are always logged,
// sampled or not.
//
// The path is the decoded URL path: slog's text and JSON handlers quote
// and escape it, so a hostile path (control characters, quotes) stays one
// well-formed field. Anything in it that looks like a credential
// (user:password@, password=..., token=...) is masked, and the query
// string is not logged at all: the protocol uses none, and a query is
// where tokens go.
func (s *Server) requestLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	status := c.Writer.Status()
	if !s.sample.take() && status < 500 {
		return
	}
	r := c.Request
	path := r.URL.Path
	if s.publicPath != "" {
		// As the client asked: Handler strips the public path.
		if _, ok := underPublic(r.RequestURI, s.publicPath); ok {
			path = s.publicPath + path
		}
	}
	s.logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("path", loggedPath(path)),
		slog.Int("status", status),
		slog.Int("bytes", max(c.Writer.Size(), 0)),
		slog.Duration("duration", time.Since(start)),
		slog.Bool("fetched", c.GetBool(fetchedKey)),
	)
}

// loggedPath masks what may be credentials in a request path: the
// userinfo of a URL in it ("//user:pw@host") and password- or token-like
// key=value pairs.
func loggedPath(p string) string {
	if strings.Contains(p, "//") {
		p = maskUserinfo(p)
	}
	if strings.IndexByte(p, '=') >= 0 {
		p = redact.DSN(p)
	}
	return p
}

// maskUserinfo masks, after every "//" in s, what comes before an "@" in
// the same path segment: the userinfo of a URL embedded in a path.
func maskUserinfo(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "//")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		start := i + 2
		end := len(s)
		if j := strings.IndexAny(s[start:], "/?#"); j >= 0 {
			end = start + j
		}
		b.WriteString(s[:start])
		if at := strings.LastIndexByte(s[start:end], '@'); at >= 0 {
			b.WriteString(redact.Mask)
			start += at
		}
		s = s[start:]
	}
}
