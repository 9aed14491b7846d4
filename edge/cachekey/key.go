package cachekey

import (
	"net/http"
	"strings"
)

// Spec says what goes into a property's keys.
type Spec struct {
	// Query includes the raw query string in the key. When false, the edge
	// must also drop the query from the upstream request, so one key never
	// stands for two different upstream answers.
	Query bool
	// Headers are request fields added to the key, in canonical form.
	Headers []string
}

// Host normalises a Host field for lookups and keys: lower case, without a
// port or a trailing dot.
func Host(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// Build returns the cache key of a request for host (already normalised) and
// the request target's escaped path and raw query, as forwarded upstream:
// "host/path?query", then "\x00Name=value" for each keyed header present.
// Keys are compared byte for byte: two targets that differ in escaping are
// two keys, because the upstream may answer them differently.
func (s *Spec) Build(host, escapedPath, rawQuery string, h http.Header) string {
	n := len(host) + len(escapedPath) + 1 + len(rawQuery)
	if len(s.Headers) > 0 {
		n += 64
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(host)
	b.WriteString(escapedPath)
	if s.Query && rawQuery != "" {
		b.WriteByte('?')
		b.WriteString(rawQuery)
	}
	for _, name := range s.Headers {
		vs, ok := h[name]
		if !ok {
			continue
		}
		b.WriteByte(0)
		b.WriteString(name)
		b.WriteByte('=')
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.TrimSpace(v))
		}
	}
	return b.String()
}

// HostOf returns the host part of a key built by Build.
func HostOf(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return key
}
