package cachepolicy

import (
	"net/http"
	"testing"
	"time"
)

// Cookies and implicit freshness: a default or heuristic lifetime never
// makes a likely-personal response storable (web cache deception); an
// explicit one, or public, does, as RFC 9111 allows.
func TestCookiesNeedExplicitFreshness(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	lm := now.Add(-100 * time.Hour).Format(http.TimeFormat)
	opts := DefaultOptions()
	opts.DefaultTTL = time.Minute
	cases := []struct {
		name     string
		cookie   bool
		h        http.Header
		storable bool
	}{
		{"no cookie, default ttl", false, http.Header{}, true},
		{"cookie, default ttl", true, http.Header{}, false},
		{"set-cookie, default ttl", false, http.Header{"Set-Cookie": {"s=1"}}, false},
		{"cookie, heuristic (Last-Modified)", true, http.Header{"Last-Modified": {lm}}, false},
		{"cookie, validator only", true, http.Header{"Etag": {`"a"`}}, false},
		{"cookie, max-age", true, http.Header{"Cache-Control": {"max-age=60"}}, true},
		{"set-cookie, s-maxage", false, http.Header{"Cache-Control": {"s-maxage=60"}, "Set-Cookie": {"s=1"}}, true},
		{"cookie, expires", true, http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, true},
		{"cookie, public", true, http.Header{"Cache-Control": {"public"}, "Last-Modified": {lm}}, true},
	}
	for _, c := range cases {
		for _, implicit := range []bool{false, true} {
			o := opts
			o.ImplicitForCookies = implicit
			a := Analyze(&Response{Method: "GET", Status: 200, Header: c.h, RequestTime: now, ResponseTime: now, Cookie: c.cookie}, &o)
			want := c.storable || implicit // with the option, the default ttl applies to all
			if a.Storable != want {
				t.Errorf("%s (implicit_ttl_for_cookies %v): storable %v (%s), want %v", c.name, implicit, a.Storable, a.Reason, want)
			}
		}
	}
}
