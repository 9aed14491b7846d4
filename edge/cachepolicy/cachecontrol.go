package cachepolicy

import (
	"strings"
)

// Absent is the value of a delta-seconds directive that was not present.
const Absent = -1

// MaxDelta is the largest delta-seconds value kept; larger values (and
// overflowing ones) are clamped to it, as RFC 9111 section 1.2.2 asks.
const MaxDelta = 2147483648

// Directives is a parsed Cache-Control field (or targeted field). Delta-second
// values are Absent when the directive is missing, 0 when it was present with
// an invalid value (an invalid max-age makes the response stale, RFC 9111
// section 4.2.1).
type Directives struct {
	MaxAge               int64
	SMaxAge              int64
	MaxStale             int64 // request; MaxStaleAny when given without a value
	MinFresh             int64 // request
	StaleWhileRevalidate int64 // RFC 5861
	StaleIfError         int64 // RFC 5861

	MaxStaleAny     bool
	NoStore         bool
	NoCache         bool     // unqualified no-cache
	NoCacheFields   []string // no-cache="a, b" (canonical header names)
	Private         bool     // unqualified private
	PrivateFields   []string // private="a, b"
	Public          bool
	MustRevalidate  bool
	ProxyRevalidate bool
	MustUnderstand  bool
	Immutable       bool
	NoTransform     bool
	OnlyIfCached    bool // request
}

// empty returns Directives with every delta-seconds value Absent.
func empty() Directives {
	return Directives{MaxAge: Absent, SMaxAge: Absent, MaxStale: Absent, MinFresh: Absent,
		StaleWhileRevalidate: Absent, StaleIfError: Absent}
}

// ParseCacheControl parses every line of a Cache-Control field. Directive
// names are case-insensitive; values are tokens or quoted strings; the first
// occurrence of a directive wins; unknown directives are ignored. It never
// fails: an invalid value of a freshness directive makes that value 0.
func ParseCacheControl(lines []string) Directives {
	d := empty()
	seen := 0 // bitset of directives already taken, so the first one wins
	for _, line := range lines {
		parseList(line, func(name, value string, hasValue, quoted bool) {
			d.apply(name, value, hasValue, quoted, &seen)
		})
	}
	return d
}

const (
	seenMaxAge = 1 << iota
	seenSMaxAge
	seenMaxStale
	seenMinFresh
	seenSWR
	seenSIE
)

func (d *Directives) apply(name, value string, hasValue, quoted bool, seen *int) {
	delta := func(bit int, dst *int64) {
		if *seen&bit != 0 {
			return
		}
		*seen |= bit
		if !hasValue {
			*dst = 0
			return
		}
		*dst = parseDelta(value)
	}
	switch lower(name) {
	case "max-age":
		delta(seenMaxAge, &d.MaxAge)
	case "s-maxage":
		delta(seenSMaxAge, &d.SMaxAge)
	case "max-stale":
		if *seen&seenMaxStale != 0 {
			return
		}
		if !hasValue {
			*seen |= seenMaxStale
			d.MaxStaleAny = true
			return
		}
		delta(seenMaxStale, &d.MaxStale)
	case "min-fresh":
		delta(seenMinFresh, &d.MinFresh)
	case "stale-while-revalidate":
		delta(seenSWR, &d.StaleWhileRevalidate)
	case "stale-if-error":
		delta(seenSIE, &d.StaleIfError)
	case "no-store":
		d.NoStore = true
	case "no-cache":
		if hasValue && quoted {
			d.NoCacheFields = append(d.NoCacheFields, fieldNames(value)...)
		} else {
			d.NoCache = true
		}
	case "private":
		if hasValue && quoted {
			d.PrivateFields = append(d.PrivateFields, fieldNames(value)...)
		} else {
			d.Private = true
		}
	case "public":
		d.Public = true
	case "must-revalidate":
		d.MustRevalidate = true
	case "proxy-revalidate":
		d.ProxyRevalidate = true
	case "must-understand":
		d.MustUnderstand = true
	case "immutable":
		d.Immutable = true
	case "no-transform":
		d.NoTransform = true
	case "only-if-cached":
		d.OnlyIfCached = true
	}
}

// parseList calls fn for each element of a comma-separated directive list.
// A name followed by whitespace and "=", or "=" followed by whitespace, is
// malformed: the element is reported with an invalid value so that a
// freshness directive becomes 0 rather than silently valid.
func parseList(s string, fn func(name, value string, hasValue, quoted bool)) {
	i := 0
	for i < len(s) {
		// skip OWS and empty elements
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return
		}
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		name := s[start:i]
		if name == "" {
			// not a token: skip to the next comma outside quotes
			i = skipElement(s, i)
			continue
		}
		j := i
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		switch {
		case j < len(s) && s[j] == '=' && j > i:
			// whitespace before "=": malformed
			fn(name, "", true, false)
			i = skipElement(s, j)
		case i < len(s) && s[i] == '=':
			i++
			if i < len(s) && s[i] == '"' {
				v, n, ok := unquote(s[i:])
				if !ok {
					fn(name, "", true, false)
					return
				}
				i += n
				fn(name, v, true, true)
			} else {
				vs := i
				for i < len(s) && isTokenChar(s[i]) {
					i++
				}
				fn(name, s[vs:i], true, false)
			}
			i = skipElement(s, i)
		default:
			fn(name, "", false, false)
			i = skipElement(s, i)
		}
	}
}

// skipElement returns the index just past the next comma outside a quoted string.
func skipElement(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ',':
			return i + 1
		case '"':
			_, n, ok := unquote(s[i:])
			if !ok {
				return len(s)
			}
			i += n
			continue
		}
		i++
	}
	return i
}

// unquote reads a quoted-string at the start of s and returns its value and
// length in s.
func unquote(s string) (string, int, bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", 0, false
	}
	var b []byte
	simple := true
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			if simple {
				return s[1:i], i + 1, true
			}
			return string(b), i + 1, true
		case '\\':
			if i+1 >= len(s) {
				return "", 0, false
			}
			if simple {
				b = append(b, s[1:i]...)
				simple = false
			}
			i++
			b = append(b, s[i])
		default:
			if !simple {
				b = append(b, s[i])
			}
		}
	}
	return "", 0, false
}

// parseDelta parses delta-seconds: 1*DIGIT, clamped to MaxDelta. Anything
// else is invalid and yields 0 (stale).
func parseDelta(s string) int64 {
	if s == "" {
		return 0
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		if n < MaxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	if n > MaxDelta {
		n = MaxDelta
	}
	return n
}

func fieldNames(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f != "" && validToken(f) {
			out = append(out, canonical(f))
		}
	}
	return out
}

func isTokenChar(c byte) bool {
	// RFC 9110 tchar
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// lower returns s in lower case, without allocating when it already is.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
