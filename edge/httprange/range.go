// Package httprange parses the HTTP Range request field (RFC 9110 section
// 14.2) against a representation of known size and lays out multipart
// byteranges responses. It honours at most a caller-given number of ranges
// and coalesces overlapping or adjacent ones, so a request for many ranges
// can never make a response much larger than the representation itself.
package httprange

import (
	"errors"
	"strconv"
	"strings"
)

// Range is a satisfiable byte range: Length bytes from Start.
type Range struct {
	Start, Length int64
}

// ContentRange returns the Content-Range value "bytes a-b/size".
func (r Range) ContentRange(size int64) string {
	return "bytes " + strconv.FormatInt(r.Start, 10) + "-" + strconv.FormatInt(r.Start+r.Length-1, 10) + "/" + strconv.FormatInt(size, 10)
}

var (
	// ErrIgnore means the field must be ignored and the whole
	// representation sent: it does not parse, is not in bytes, or asks for
	// more ranges than allowed.
	ErrIgnore = errors.New("httprange: ignored")
	// ErrUnsatisfiable means no range overlaps the representation (416).
	ErrUnsatisfiable = errors.New("httprange: unsatisfiable")
)

// Parse parses a Range field value for a representation of size bytes and
// returns the satisfiable ranges, in request order, with overlapping and
// adjacent ranges coalesced. More than max ranges is ErrIgnore.
func Parse(v string, size int64, max int) ([]Range, error) {
	unit, set, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, ErrIgnore
	}
	var out []Range
	n := 0
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		n++
		if n > max {
			return nil, ErrIgnore
		}
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return nil, ErrIgnore
		}
		var r Range
		if first == "" {
			// suffix-range: the last N bytes
			sfx, ok := parseInt(last)
			if !ok {
				return nil, ErrIgnore
			}
			if sfx == 0 || size == 0 {
				continue
			}
			if sfx > size {
				sfx = size
			}
			r = Range{Start: size - sfx, Length: sfx}
		} else {
			a, ok := parseInt(first)
			if !ok {
				return nil, ErrIgnore
			}
			end := size - 1
			if last != "" {
				b, ok := parseInt(last)
				if !ok || b < a {
					return nil, ErrIgnore
				}
				if b < end {
					end = b
				}
			}
			if a >= size {
				continue // unsatisfiable on its own
			}
			r = Range{Start: a, Length: end - a + 1}
		}
		out = append(out, r)
	}
	if n == 0 {
		return nil, ErrIgnore
	}
	if len(out) == 0 {
		return nil, ErrUnsatisfiable
	}
	return coalesce(out), nil
}

// coalesce merges ranges that overlap or touch, keeping the position of the
// first of each merged group.
func coalesce(rs []Range) []Range {
	if len(rs) < 2 {
		return rs
	}
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(rs) && !merged; i++ {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				if a.Start <= b.Start+b.Length && b.Start <= a.Start+a.Length {
					start := min(a.Start, b.Start)
					end := max(a.Start+a.Length, b.Start+b.Length)
					rs[i] = Range{Start: start, Length: end - start}
					rs = append(rs[:j], rs[j+1:]...)
					merged = true
					break
				}
			}
		}
	}
	return rs
}

// parseInt parses 1*DIGIT without sign or spaces, up to 18 digits.
func parseInt(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Part is one part of a multipart/byteranges body: its header block (the
// boundary line and part fields) followed by the range of the representation.
type Part struct {
	Header string
	Range  Range
}

// Multipart lays out a multipart/byteranges body for ranges of a
// representation of size bytes and content type ctype. It returns the parts,
// the closing delimiter and the total body length.
func Multipart(ranges []Range, size int64, ctype, boundary string) (parts []Part, trailer string, length int64) {
	parts = make([]Part, len(ranges))
	for i, r := range ranges {
		var b strings.Builder
		b.WriteString("\r\n--")
		b.WriteString(boundary)
		b.WriteString("\r\n")
		if ctype != "" {
			b.WriteString("Content-Type: ")
			b.WriteString(ctype)
			b.WriteString("\r\n")
		}
		b.WriteString("Content-Range: ")
		b.WriteString(r.ContentRange(size))
		b.WriteString("\r\n\r\n")
		parts[i] = Part{Header: b.String(), Range: r}
		length += int64(b.Len()) + r.Length
	}
	trailer = "\r\n--" + boundary + "--\r\n"
	return parts, trailer, length + int64(len(trailer))
}
