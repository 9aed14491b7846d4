package origin

import (
	"strings"
)

// byteRange is a satisfiable range of a representation: length bytes from start.
type byteRange struct {
	start, length int64
}

func (r byteRange) end() int64 { return r.start + r.length } // exclusive

// rangeResult is what a Range header asks of a representation.
type rangeResult int

const (
	rangeIgnore        rangeResult = iota // no usable Range: send the whole representation (200)
	rangeOK                               // send the ranges (206)
	rangeUnsatisfiable                    // no range overlaps the representation (416)
	rangeTooMany                          // more ranges than allowed (416)
	rangeOverlap                          // two ranges overlap (416)
)

// parseRange interprets a Range header value for a representation of size
// bytes, allowing at most maxRanges ranges (RFC 9110 section 14).
//
//   - A unit other than "bytes", or a syntax error (including a range whose
//     last position is before its first) makes the whole header ignored:
//     RFC 9110 lets a server ignore Range, and the client then gets the
//     whole representation.
//   - Ranges that start at or beyond the end are dropped; if none is left,
//     the result is rangeUnsatisfiable. A suffix range "-0" is unsatisfiable.
//   - More than maxRanges ranges, or two ranges that share a byte, are
//     rejected (RFC 9110 section 15.5.17 names both as reasons for a 416):
//     this bounds the work and the response size of a multipart answer to
//     the representation's own size plus part headers.
//
// The ranges are returned in the order they were asked for.
func parseRange(h string, size int64, maxRanges int) ([]byteRange, rangeResult) {
	h = strings.TrimSpace(h)
	const unit = "bytes="
	if len(h) < len(unit) || !strings.EqualFold(h[:len(unit)], unit) {
		return nil, rangeIgnore
	}
	h = h[len(unit):]
	var out []byteRange
	specs := 0
	for len(h) > 0 {
		var spec string
		if i := strings.IndexByte(h, ','); i >= 0 {
			spec, h = h[:i], h[i+1:]
		} else {
			spec, h = h, ""
		}
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue // empty list elements are allowed
		}
		if specs++; specs > maxRanges {
			return nil, rangeTooMany
		}
		r, ok, valid := parseSpec(spec, size)
		if !valid {
			return nil, rangeIgnore
		}
		if ok {
			out = append(out, r)
		}
	}
	if specs == 0 {
		return nil, rangeIgnore
	}
	if len(out) == 0 {
		return nil, rangeUnsatisfiable
	}
	if overlapping(out) {
		return nil, rangeOverlap
	}
	return out, rangeOK
}

// parseSpec parses one byte-range-spec or suffix-range. valid is false for a
// syntax error; ok is false for a well-formed range that is not satisfiable.
func parseSpec(spec string, size int64) (r byteRange, ok, valid bool) {
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return r, false, false
	}
	first, last = strings.TrimRight(first, " \t"), strings.TrimLeft(last, " \t")
	if first == "" { // suffix range: the last N bytes
		n, good := parseDigits(last)
		if !good {
			return r, false, false
		}
		if n == 0 || size == 0 {
			return r, false, true
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, true, true
	}
	start, good := parseDigits(first)
	if !good {
		return r, false, false
	}
	end := size - 1
	if last != "" {
		l, good := parseDigits(last)
		if !good || l < start {
			return r, false, false
		}
		end = min(l, end)
	}
	if start >= size {
		return r, false, true
	}
	return byteRange{start: start, length: end - start + 1}, true, true
}

// parseDigits parses a non-empty run of ASCII digits; values beyond int64
// saturate, which is correct for positions (they are past any end).
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	const limit = 1<<63 - 1
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (limit-d)/10 {
			n = limit
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// overlapping reports whether any two ranges share a byte. n is small
// (at most max_ranges), so the quadratic scan beats sorting a copy.
func overlapping(rs []byteRange) bool {
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			if rs[i].start < rs[j].end() && rs[j].start < rs[i].end() {
				return true
			}
		}
	}
	return false
}
