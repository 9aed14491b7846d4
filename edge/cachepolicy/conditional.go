package cachepolicy

import (
	"net/http"
	"strings"
	"time"
)

// opaqueTag returns an entity-tag without its weakness flag and quotes, for
// weak comparison (RFC 9110 section 8.8.3.2). Unquoted tags, which some
// servers send, compare by their text.
func opaqueTag(t string) string {
	t = strings.TrimSpace(t)
	if len(t) >= 2 && (t[0] == 'W' || t[0] == 'w') && t[1] == '/' {
		t = t[2:]
	}
	if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		t = t[1 : len(t)-1]
	}
	return t
}

// MatchNoneMatch reports whether an If-None-Match field value matches etag
// (weak comparison, as If-None-Match uses).
func MatchNoneMatch(values []string, etag string) bool {
	if etag == "" {
		for _, v := range values {
			if strings.TrimSpace(v) == "*" {
				return true
			}
		}
		return false
	}
	want := opaqueTag(etag)
	for _, v := range values {
		for _, t := range splitTags(v) {
			if t == "*" || opaqueTag(t) == want {
				return true
			}
		}
	}
	return false
}

// splitTags splits a list of entity-tags on commas outside quotes.
func splitTags(v string) []string {
	var out []string
	start, inQuote := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				if t := strings.TrimSpace(v[start:i]); t != "" {
					out = append(out, t)
				}
				start = i + 1
			}
		}
	}
	if t := strings.TrimSpace(v[start:]); t != "" {
		out = append(out, t)
	}
	return out
}

// NotModified evaluates a GET or HEAD request's If-None-Match and
// If-Modified-Since against a stored 200 response's validators (RFC 9110
// section 13.2.2): If-None-Match takes precedence; If-Modified-Since compares
// with Last-Modified, or with Date when there is none. It reports whether a
// 304 is the answer.
func NotModified(req http.Header, stored http.Header, now time.Time) bool {
	if inm := req["If-None-Match"]; len(inm) > 0 {
		return MatchNoneMatch(inm, stored.Get("Etag"))
	}
	ims := req.Get("If-Modified-Since")
	if ims == "" {
		return false
	}
	since, ok := ParseHTTPDate(ims, now)
	if !ok {
		return false
	}
	lm := stored.Get("Last-Modified")
	if lm == "" {
		lm = stored.Get("Date")
	}
	t, ok := ParseHTTPDate(lm, now)
	if !ok {
		return false
	}
	return !t.After(since)
}

// HasConditional reports whether a request carries any precondition.
func HasConditional(h http.Header) bool {
	return len(h["If-None-Match"]) > 0 || len(h["If-Modified-Since"]) > 0 ||
		len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0 || len(h["If-Range"]) > 0
}
