package origin

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		decoded, escaped string
		rel              string
		err              error
	}{
		{"/", "/", "index.html", nil},
		{"/a", "/a", "a", nil},
		{"/a/b.txt", "/a/b.txt", "a/b.txt", nil},
		{"/a/", "/a/", "a/index.html", nil},
		{"/a b", "/a%20b", "a b", nil},
		{"/caf\u00e9", "/caf%C3%A9", "caf\u00e9", nil},
		{"/.well-known/x", "/.well-known/x", ".well-known/x", nil},
		{"/a..b", "/a..b", "a..b", nil},
		{"/..a", "/..a", "", errHidden},
		{"/.git/config", "/.git/config", "", errHidden},
		{"/a/.env", "/a/.env", "", errHidden},
		{"", "", "", errBadPath},
		{"a", "a", "", errBadPath},
		{"*", "*", "", errBadPath},
		{"/..", "/..", "", errDotSegment},
		{"/../x", "/../x", "", errDotSegment},
		{"/a/../../x", "/a/../../x", "", errDotSegment},
		{"/a/..", "/a/..", "", errDotSegment},
		{"/./a", "/./a", "", errDotSegment},
		{"/a/./", "/a/./", "", errDotSegment},
		{"//a", "//a", "", errEmptySeg},
		{"/a//b", "/a//b", "", errEmptySeg},
		{"/a/b//", "/a/b//", "", errEmptySeg},
		{"/a/b", "/a%2fb", "", errEncodedSep},
		{"/a/b", "/a%2Fb", "", errEncodedSep},
		{"/a\\b", "/a%5cb", "", errEncodedSep},
		{"/a\\b", "/a\\b", "", errControlByte},
		{"/a\x00b", "/a%00b", "", errControlByte},
		{"/a\nb", "/a%0Ab", "", errControlByte},
		{"/a\x7f", "/a%7F", "", errControlByte},
		{"/\xc0\xae\xc0\xae/x", "/%C0%AE%C0%AE/x", "", errBadPath},
		{"/" + strings.Repeat("a", maxPathLen), "/" + strings.Repeat("a", maxPathLen), "", errTooLong},
	}
	for _, c := range cases {
		p, err := parsePath(c.decoded, c.escaped, "index.html")
		if !errors.Is(err, c.err) || p.rel != c.rel {
			t.Errorf("parsePath(%q, %q) = %q, %v; want %q, %v", c.decoded, c.escaped, p.rel, err, c.rel, c.err)
		}
	}
	if p, err := parsePath("/a/", "/a/", ""); err != nil || p.rel != "a" || !p.dir {
		t.Errorf("no index: %+v %v", p, err)
	}
	if p, err := parsePath("/", "/", ""); err != nil || p.rel != "." {
		t.Errorf("no index, root: %+v %v", p, err)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a%2fb", "/.git", "//", "/a/", "/\x00", "/.well-known/acme"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, decoded, escaped string) {
		p, err := parsePath(decoded, escaped, "index.html")
		if err != nil {
			return
		}
		// Whatever is accepted names a clean relative path below the root.
		if p.rel == "" || strings.HasPrefix(p.rel, "/") || path.Clean(p.rel) != p.rel {
			t.Fatalf("%q: rel %q is not clean and relative", decoded, p.rel)
		}
		for _, seg := range strings.Split(p.rel, "/") {
			if seg == ".." || seg == "." || (strings.HasPrefix(seg, ".") && seg != ".well-known") {
				t.Fatalf("%q: rel %q has segment %q", decoded, p.rel, seg)
			}
		}
		if strings.ContainsAny(p.rel, "\x00\\") || !validPathText(p.rel) || hasEncodedSeparator(escaped) {
			t.Fatalf("%q: accepted with a bad byte or encoded separator", decoded)
		}
	})
}
