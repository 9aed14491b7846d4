package origin

import (
	"net/http"
	"strings"
	"time"
)

// validators are what a representation can be compared against.
type validators struct {
	etag    string    // a strong entity tag with its quotes, `"..."`
	modTime time.Time // Last-Modified, whole seconds
}

// precondition is the outcome of evaluating a request's preconditions.
type precondition int

const (
	condPass        precondition = iota // carry on with the method
	condNotModified                     // 304 (GET and HEAD)
	condFailed                          // 412
)

// evalPreconditions follows RFC 9110 section 13.2.2. exists is false when the
// target has no current representation (only PUT gets this far without one);
// v is then ignored.
//
//  1. If-Match: false (no strong match, or no representation) is a 412.
//  2. Otherwise If-Unmodified-Since: modified after the date is a 412.
//  3. If-None-Match: a (weak) match, or "*" with a representation, is a 304
//     for GET and HEAD and a 412 for other methods.
//  4. Otherwise, for GET and HEAD, If-Modified-Since: not modified since the
//     date is a 304.
//
// Dates that do not parse are ignored, as RFC 9110 requires.
func evalPreconditions(h http.Header, method string, exists bool, v validators) precondition {
	safe := method == http.MethodGet || method == http.MethodHead
	if im, ok := h["If-Match"]; ok {
		if !exists || !matchAny(im, v.etag, false) {
			return condFailed
		}
	} else if ius := h.Get("If-Unmodified-Since"); ius != "" && exists {
		if t, err := http.ParseTime(ius); err == nil && v.modTime.After(t) {
			return condFailed
		}
	}
	if inm, ok := h["If-None-Match"]; ok {
		if exists && matchAny(inm, v.etag, true) {
			if safe {
				return condNotModified
			}
			return condFailed
		}
	} else if ims := h.Get("If-Modified-Since"); ims != "" && safe && exists {
		if t, err := http.ParseTime(ims); err == nil && !v.modTime.After(t) {
			return condNotModified
		}
	}
	return condPass
}

// ifRangeAllows reports whether a Range may be honoured given If-Range
// (RFC 9110 section 13.1.5): absent, or an entity tag that strongly matches,
// or a date exactly equal to Last-Modified.
func ifRangeAllows(h http.Header, v validators) bool {
	ir := strings.TrimSpace(h.Get("If-Range"))
	if ir == "" {
		return true
	}
	if ir[0] == '"' || strings.HasPrefix(ir, "W/") {
		tag, rest, ok := scanETag(ir)
		return ok && strings.TrimSpace(rest) == "" && !isWeak(tag) && tag == v.etag
	}
	t, err := http.ParseTime(ir)
	return err == nil && t.Equal(v.modTime)
}

// matchAny reports whether the entity-tag lists in values (the header's
// field lines) contain "*" or a tag matching etag: weakly (ignoring W/) when
// weak is set, strongly otherwise. A syntax error ends the scan of that line.
func matchAny(values []string, etag string, weak bool) bool {
	for _, line := range values {
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				rest := strings.TrimLeft(s[1:], " \t")
				if rest == "" || rest[0] == ',' {
					return true
				}
				break
			}
			tag, rest, ok := scanETag(s)
			if !ok {
				break
			}
			if weak {
				if strings.TrimPrefix(tag, "W/") == etag {
					return true
				}
			} else if tag == etag {
				return true
			}
			s = strings.TrimLeft(rest, " \t")
			if s != "" && s[0] != ',' {
				break
			}
		}
	}
	return false
}

func isWeak(tag string) bool { return strings.HasPrefix(tag, "W/") }

// scanETag reads one entity-tag (optionally W/-prefixed, then a quoted
// string of etagc characters) from the start of s.
func scanETag(s string) (tag, rest string, ok bool) {
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s) < start+2 || s[start] != '"' {
		return "", s, false
	}
	for i := start + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return s[:i+1], s[i+1:], true
		case c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80:
		default:
			return "", s, false
		}
	}
	return "", s, false
}
