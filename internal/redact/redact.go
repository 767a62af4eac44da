// Package redact removes secrets from the URLs and connection strings that
// sumkeep prints: in logs, error messages, status output and evidence.
//
// An upstream or proxy URL may carry credentials in its userinfo
// (https://user:token@host, or https://token@host), and a Postgres
// connection string a password (postgres://user:pw@host/db,
// ?password=pw, or password=pw in keyword/value form). Apply URL or DSN
// where such a string enters a message, and URLError to errors of the
// net/http client, whose text holds the whole request URL.
package redact

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a secret.
const Mask = "xxxxx"

// URL returns s with its credentials masked: user:password@ becomes
// user:xxxxx@, and a userinfo of a user name alone, which is often a token,
// becomes xxxxx@. Query parameters named like a password or token are
// masked too. A string that does not parse as a URL has everything between
// "//" and the last "@" of its authority masked.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return rough(s)
	}
	q := query(u.RawQuery)
	if u.User == nil && q == u.RawQuery {
		return s // nothing to mask: keep it exactly as written
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else {
			u.User = url.User(Mask)
		}
	}
	u.RawQuery = q
	return u.String()
}

// DSN returns a Postgres connection string with its password masked: the
// URL form's userinfo password (the user name is kept) and any
// password=... parameter in the URL's query or in keyword/value form.
// Anything else (a SQLite file path) is returned as it is, but for
// password=... parameters, which are masked wherever they appear.
func DSN(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return rough(s)
		}
		_, hasPassword := u.User.Password()
		q := query(u.RawQuery)
		if !hasPassword && q == u.RawQuery {
			return s
		}
		if hasPassword {
			u.User = url.UserPassword(u.User.Username(), Mask)
		}
		u.RawQuery = q
		return u.String()
	}
	return keyValue.ReplaceAllString(s, "${1}"+Mask)
}

// URLError masks the credentials in the URL of every *url.Error in err's
// chain (net/http's client returns them, with the whole request URL in
// their text) and returns err. Call it before err is printed or wrapped.
func URLError(err error) error {
	for e := err; e != nil; {
		var ue *url.Error
		if !errors.As(e, &ue) {
			break
		}
		ue.URL = URL(ue.URL)
		e = ue.Err
	}
	return err
}

// keyValue matches a password-like parameter in keyword/value form, with
// its value: quoted (with backslash escapes) or up to the next space.
var keyValue = regexp.MustCompile(`(?i)(\b[a-z_]*(?:password|passwd|pwd|token|secret)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s]*)`)

// secretParam matches the query parameters whose values are masked.
var secretParam = regexp.MustCompile(`(?i)(password|passwd|pwd|token|secret)`)

// query masks the values of password-like parameters in a raw query,
// leaving the rest of it as it was written.
func query(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if secretParam.MatchString(k) {
			parts[i] = url.QueryEscape(k) + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}

// rough masks what may be credentials in a string that does not parse as
// a URL: everything from the scheme's "//" to the last "@" before the path,
// and password-like query parameters. It may mask more than needed, never
// less.
func rough(s string) string {
	if i := strings.Index(s, "//"); i >= 0 {
		start := i + 2
		end := len(s)
		if j := strings.IndexAny(s[start:], "/?#"); j >= 0 {
			end = start + j
		}
		// A password holding '/', '?' or '#' ends the authority early:
		// then the '@' comes after it.
		at := strings.LastIndex(s[start:end], "@")
		if at < 0 {
			at = strings.LastIndex(s[start:], "@")
		}
		if at >= 0 {
			s = s[:start] + Mask + s[start+at:]
		}
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i+1] + query(s[i+1:])
	}
	return keyValue.ReplaceAllString(s, "${1}"+Mask)
}
