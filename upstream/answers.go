package upstream

import (
	"context"
	"sort"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// Answers records which upstream answered each request made on behalf of a
// context that carries it (WithAnswers): a Pool notes the upstream whose
// answer it returned. The mirror reads it back when an answer turns out to
// be a lie, so that the evidence and the quarantine name the upstream that
// sent it, not merely the pool. One Answers belongs to one operation (a
// lookup fetched through, one sync run): a tile asked for twice in it
// keeps the last upstream that sent it.
type Answers struct {
	mu   sync.Mutex
	from map[string]string // request key -> upstream URL
}

// NewAnswers returns an empty record.
func NewAnswers() *Answers { return &Answers{from: make(map[string]string)} }

type answersKey struct{}

// WithAnswers returns ctx carrying a: requests made with it (or a context
// derived from it) are recorded there.
func WithAnswers(ctx context.Context, a *Answers) context.Context {
	return context.WithValue(ctx, answersKey{}, a)
}

// AnswersFrom returns the record ctx carries, or nil.
func AnswersFrom(ctx context.Context) *Answers {
	a, _ := ctx.Value(answersKey{}).(*Answers)
	return a
}

// Request keys, as an Answers names requests.

// LatestKey is the key of a /latest request.
const LatestKey = "latest"

// LookupKey is the key of the lookup of path@version.
func LookupKey(path, version string) string { return "lookup/" + path + "@" + version }

// TileKey is the key of a request for tile t.
func TileKey(t tlog.Tile) string { return t.Path() }

// note records that source answered the request key.
func (a *Answers) note(key, source string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.from[key] = source
	a.mu.Unlock()
}

// Note records that source answered the request key: for sources other than
// a Pool (which notes its answers itself).
func (a *Answers) Note(key, source string) { a.note(key, source) }

// From returns the upstream that answered the request key, or "".
func (a *Answers) From(key string) string {
	if a == nil {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.from[key]
}

// Sources returns the distinct upstreams that answered the requests keys,
// sorted; keys never answered through a Pool are left out.
func (a *Answers) Sources(keys ...string) []string {
	seen := make(map[string]bool)
	var out []string
	for _, k := range keys {
		if s := a.From(k); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

type preferKey struct{}

// Prefer returns ctx asking a Pool to send requests made with it to the
// upstream source first (if it is not quarantined): the tiles that link a
// signed head are best read from the upstream that sent the head, so that
// two upstreams showing different trees are caught as a fork, not as one's
// tiles failing the other's root.
func Prefer(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, preferKey{}, source)
}

func preferred(ctx context.Context) string {
	s, _ := ctx.Value(preferKey{}).(string)
	return s
}

// JoinURLs names several upstreams in one message.
func JoinURLs(urls []string) string { return strings.Join(urls, ", ") }
