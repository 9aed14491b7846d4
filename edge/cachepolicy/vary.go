package cachepolicy

import (
	"net/http"
	"slices"
	"strings"
)

// VaryFields returns the canonical field names listed in a response's Vary
// (every line), and star=true when any of them is "*".
func VaryFields(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
		for _, f := range strings.Split(line, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*":
				star = true
			case validToken(f):
				c := canonical(f)
				if !slices.Contains(names, c) {
					names = append(names, c)
				}
			}
		}
	}
	return names, star
}

// VaryValue returns the normalised value of request field name, used to
// match a request against a stored variant: every line joined, list elements
// trimmed of whitespace; for Accept-Language and Accept-Encoding, also
// lower-cased and sorted, since their order and case do not change the
// selected representation. present is false when the field is absent.
func VaryValue(h http.Header, name string) (value string, present bool) {
	lines, ok := h[name]
	if !ok {
		return "", false
	}
	var parts []string
	for _, l := range lines {
		for _, p := range strings.Split(l, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
	}
	if name == "Accept-Language" || name == "Accept-Encoding" {
		for i, p := range parts {
			parts[i] = strings.ToLower(strings.ReplaceAll(p, " ", ""))
		}
		slices.Sort(parts)
	}
	return strings.Join(parts, ","), true
}
