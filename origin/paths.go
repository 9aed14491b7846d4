package origin

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// maxPathLen bounds a request path (Linux's PATH_MAX).
const maxPathLen = 4096

// Reasons a request path is refused. errHidden is a 404 for reads (the file
// is not published), the rest are a 400.
var (
	errBadPath     = errors.New("bad path")
	errEncodedSep  = errors.New("bad path: encoded slash or backslash")
	errDotSegment  = errors.New("bad path: \".\" or \"..\" segment")
	errEmptySeg    = errors.New("bad path: empty segment")
	errControlByte = errors.New("bad path: control byte or backslash")
	errTooLong     = errors.New("bad path: too long")
	errHidden      = errors.New("hidden path")
)

// reqPath is a checked request path.
type reqPath struct {
	url string // the decoded URL path, "/a/b" or "/a/"
	rel string // the file to open under the root: "a/b", or "a/index.html" for "/a/"
	dir bool   // url ends in "/"
}

// parsePath checks a request's decoded path (and its escaped form, which
// reveals %2F and %5C) and maps it to a name under the root. index is the
// file a path ending in "/" names ("" for none: rel is then the directory).
//
// Refused: anything not starting with "/", "." and ".." segments, empty
// segments ("//"), NUL and other control bytes, backslashes, encoded slashes
// or backslashes, invalid UTF-8, paths over 4096 bytes, and (errHidden)
// segments that start with "." other than ".well-known".
func parsePath(decoded, escaped, index string) (reqPath, error) {
	if len(decoded) > maxPathLen || len(escaped) > 3*maxPathLen {
		return reqPath{}, errTooLong
	}
	if decoded == "" || decoded[0] != '/' {
		return reqPath{}, errBadPath
	}
	if hasEncodedSeparator(escaped) {
		return reqPath{}, errEncodedSep
	}
	if !validPathText(decoded) {
		if !utf8.ValidString(decoded) {
			return reqPath{}, errBadPath
		}
		return reqPath{}, errControlByte
	}
	p := reqPath{url: decoded, dir: strings.HasSuffix(decoded, "/")}
	body := strings.TrimSuffix(decoded[1:], "/")
	hidden := false
	if body != "" {
		for seg := range strings.SplitSeq(body, "/") {
			switch {
			case seg == "":
				return reqPath{}, errEmptySeg
			case seg == "." || seg == "..":
				return reqPath{}, errDotSegment
			case seg[0] == '.' && seg != ".well-known":
				hidden = true
			}
		}
	}
	if hidden {
		return reqPath{}, errHidden
	}
	switch {
	case !p.dir:
		p.rel = body
	case body == "" && index == "":
		p.rel = "."
	case body == "":
		p.rel = index
	case index == "":
		p.rel = body
	default:
		p.rel = body + "/" + index
	}
	return p, nil
}

// validPathText reports whether s is valid UTF-8 without control bytes or
// backslashes.
func validPathText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return utf8.ValidString(s)
}

// hasEncodedSeparator reports whether an escaped path contains %2F or %5C
// (either case), which would decode to a separator.
func hasEncodedSeparator(escaped string) bool {
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		a, b := escaped[i+1], escaped[i+2]|0x20
		if (a == '2' && b == 'f') || (a == '5' && b == 'c') {
			return true
		}
	}
	return false
}
