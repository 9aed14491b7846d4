package origin

import (
	"net/http"
	"testing"
	"time"
)

func TestMatchAny(t *testing.T) {
	const e = `"abc"`
	cases := []struct {
		h            string
		weak, strong bool
	}{
		{`"abc"`, true, true},
		{`W/"abc"`, true, false},
		{`"x", "abc"`, true, true},
		{`"x",W/"abc"`, true, false},
		{` , "x" ,, "abc" `, true, true},
		{`*`, true, true},
		{` * `, true, true},
		{`"x"`, false, false},
		{`abc`, false, false},
		{`"abc`, false, false},
		{`"a"bc"`, false, false},
		{`"x" "abc"`, false, false}, // missing comma: the scan stops
		{`*x`, false, false},
		{`W/abc`, false, false},
		{``, false, false},
	}
	for _, c := range cases {
		if got := matchAny([]string{c.h}, e, true); got != c.weak {
			t.Errorf("weak %q: %v", c.h, got)
		}
		if got := matchAny([]string{c.h}, e, false); got != c.strong {
			t.Errorf("strong %q: %v", c.h, got)
		}
	}
	if !matchAny([]string{`"x"`, `"abc"`}, e, false) {
		t.Error("second field line not searched")
	}
}

func TestEvalPreconditions(t *testing.T) {
	lm := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	v := validators{etag: `"e"`, modTime: lm}
	date := func(d time.Duration) string { return lm.Add(d).Format(http.TimeFormat) }
	cases := []struct {
		name    string
		method  string
		exists  bool
		headers map[string]string
		want    precondition
	}{
		{"put create-only, absent", "PUT", false, map[string]string{"If-None-Match": "*"}, condPass},
		{"put create-only, present", "PUT", true, map[string]string{"If-None-Match": "*"}, condFailed},
		{"put if-match absent", "PUT", false, map[string]string{"If-Match": "*"}, condFailed},
		{"put if-match present", "PUT", true, map[string]string{"If-Match": `"e"`}, condPass},
		{"delete inm match", "DELETE", true, map[string]string{"If-None-Match": `"e"`}, condFailed},
		{"put ius absent file", "PUT", false, map[string]string{"If-Unmodified-Since": date(-time.Hour)}, condPass},
		{"get ims absent ignored for put", "PUT", true, map[string]string{"If-Modified-Since": date(time.Hour)}, condPass},
	}
	for _, c := range cases {
		h := http.Header{}
		for k, val := range c.headers {
			h.Set(k, val)
		}
		if got := evalPreconditions(h, c.method, c.exists, v); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func FuzzETagList(f *testing.F) {
	for _, s := range []string{`"a"`, `W/"a", "b"`, `*`, ` ,"a"`, `"a`, `W/`, "\"\x80\""} {
		f.Add(s, `"a"`)
	}
	f.Fuzz(func(t *testing.T, list, etag string) {
		weak := matchAny([]string{list}, etag, true)
		strong := matchAny([]string{list}, etag, false)
		if strong && !weak {
			t.Fatalf("%q vs %q: strong match without weak match", list, etag)
		}
		if tag, rest, ok := scanETag(list); ok && (len(tag)+len(rest) != len(list) || tag[len(tag)-1] != '"') {
			t.Fatalf("scanETag(%q) = %q, %q", list, tag, rest)
		}
		if tag, _, ok := scanETag(etag); ok && tag == etag && !matchAny([]string{etag}, etag, true) {
			t.Fatalf("%q does not match itself", etag)
		}
	})
}
