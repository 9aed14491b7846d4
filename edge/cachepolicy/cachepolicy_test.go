package cachepolicy

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestParseCacheControl(t *testing.T) {
	cases := []struct {
		in   []string
		want func(d Directives) bool
	}{
		{[]string{"max-age=3600"}, func(d Directives) bool { return d.MaxAge == 3600 }},
		{[]string{"MaX-AgE=3600"}, func(d Directives) bool { return d.MaxAge == 3600 }},
		{[]string{"max-age=003600"}, func(d Directives) bool { return d.MaxAge == 3600 }},
		{[]string{`max-age="3600"`}, func(d Directives) bool { return d.MaxAge == 3600 }},
		{[]string{"max-age='3600'"}, func(d Directives) bool { return d.MaxAge == 0 }},
		{[]string{"max-age=-1"}, func(d Directives) bool { return d.MaxAge == 0 }},
		{[]string{"max-age=3600.5"}, func(d Directives) bool { return d.MaxAge == 0 }},
		{[]string{"max-age =3600"}, func(d Directives) bool { return d.MaxAge == 0 }},
		{[]string{"max-age= 3600"}, func(d Directives) bool { return d.MaxAge == 0 }},
		{[]string{"max-age=99999999999"}, func(d Directives) bool { return d.MaxAge == MaxDelta }},
		{[]string{"max-age=1800, max-age=1"}, func(d Directives) bool { return d.MaxAge == 1800 }},
		{[]string{"max-age=1800", "max-age=1"}, func(d Directives) bool { return d.MaxAge == 1800 }},
		{[]string{`extension="max-age=3600", max-age=1`}, func(d Directives) bool { return d.MaxAge == 1 }},
		{[]string{`max-age=1, extension="max-age=3600"`}, func(d Directives) bool { return d.MaxAge == 1 }},
		{[]string{`x="a,\"b", no-store`}, func(d Directives) bool { return d.NoStore }},
		{[]string{"No-StOrE"}, func(d Directives) bool { return d.NoStore }},
		{[]string{"no-cache"}, func(d Directives) bool { return d.NoCache && d.NoCacheFields == nil }},
		{[]string{`no-cache="a, b"`}, func(d Directives) bool { return !d.NoCache && slices.Equal(d.NoCacheFields, []string{"A", "B"}) }},
		{[]string{`private="set-cookie"`}, func(d Directives) bool { return !d.Private && d.PrivateFields[0] == "Set-Cookie" }},
		{[]string{"private, public"}, func(d Directives) bool { return d.Private && d.Public }},
		{[]string{"max-stale"}, func(d Directives) bool { return d.MaxStaleAny && d.MaxStale == Absent }},
		{[]string{"max-stale=10, min-fresh=5, only-if-cached"}, func(d Directives) bool { return d.MaxStale == 10 && d.MinFresh == 5 && d.OnlyIfCached }},
		{[]string{"s-maxage=5, must-revalidate, proxy-revalidate, immutable, must-understand"}, func(d Directives) bool {
			return d.SMaxAge == 5 && d.MustRevalidate && d.ProxyRevalidate && d.Immutable && d.MustUnderstand
		}},
		{[]string{"stale-while-revalidate=30, stale-if-error=60"}, func(d Directives) bool { return d.StaleWhileRevalidate == 30 && d.StaleIfError == 60 }},
		{[]string{`max-age="unterminated`}, func(d Directives) bool { return d.MaxAge == 0 }},
		{[]string{",,, ,"}, func(d Directives) bool { return d.MaxAge == Absent && !d.NoStore }},
		{nil, func(d Directives) bool { return d.MaxAge == Absent && d.SMaxAge == Absent }},
	}
	for _, c := range cases {
		if d := ParseCacheControl(c.in); !c.want(d) {
			t.Errorf("ParseCacheControl(%q) = %+v", c.in, d)
		}
	}
}

func TestParseTargeted(t *testing.T) {
	cases := []struct {
		in     string
		ok     bool
		maxAge int64
		flags  func(d Directives) bool
	}{
		{"max-age=3600", true, 3600, nil},
		{"foobar, max-age=3600", true, 3600, nil},
		{"max-age=99999999999", true, MaxDelta, nil},
		{"max-age=0", true, 0, nil},
		{"no-store", true, Absent, func(d Directives) bool { return d.NoStore }},
		{"private, no-cache", true, Absent, func(d Directives) bool { return d.Private && d.NoCache }},
		{"no-store=?0", true, Absent, func(d Directives) bool { return !d.NoStore }},
		{`max-age="10000"`, true, Absent, nil}, // wrong type: directive ignored
		{"max-age=10000, &&&&&", false, Absent, nil},
		{"MaX-aGe=3600", false, Absent, nil},
		{"max-age =100", false, Absent, nil},
		{"max-age= 100", false, Absent, nil},
		{"max-age=10,", false, Absent, nil},
		{"", false, Absent, nil},
		{`a=(1 2), max-age=5;x=1`, true, 5, nil},
	}
	for _, c := range cases {
		d, ok := ParseTargeted([]string{c.in})
		if ok != c.ok || (ok && d.MaxAge != c.maxAge) || (c.flags != nil && !c.flags(d)) {
			t.Errorf("ParseTargeted(%q) = %+v, %v", c.in, d, ok)
		}
	}
}

func TestParseHTTPDate(t *testing.T) {
	good := map[string]time.Time{
		"Sun, 06 Nov 1994 08:49:37 GMT":    time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC),
		"THU, 18 AUG 2050 02:01:18 gMT":    time.Date(2050, 8, 18, 2, 1, 18, 0, time.UTC),
		"Tue, 19 Jan 2038 14:14:08 GMT":    time.Date(2038, 1, 19, 14, 14, 8, 0, time.UTC),
		"Sun, 21 Nov 2286 04:46:39 GMT":    time.Date(2286, 11, 21, 4, 46, 39, 0, time.UTC),
		"Thursday, 18-Aug-50 02:01:18 GMT": time.Date(2050, 8, 18, 2, 1, 18, 0, time.UTC),
		"Sunday, 06-Nov-94 08:49:37 GMT":   time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC),
		"Thu Aug  8 02:01:18 2050":         time.Date(2050, 8, 8, 2, 1, 18, 0, time.UTC),
		"Sun Nov 16 08:49:37 1994":         time.Date(1994, 11, 16, 8, 49, 37, 0, time.UTC),
	}
	for in, want := range good {
		got, ok := ParseHTTPDate(in, t0)
		if !ok || !got.Equal(want) {
			t.Errorf("ParseHTTPDate(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{
		"0", "", "Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 2050 02:01:18 AEST", "Thu, 18 Aug 50 02:01:18 GMT",
		"Thu 18 Aug 2050 02:01:18 GMT", "Thu, 18  Aug  2050 02:01:18 GMT", "Thu, 18-Aug-2050 02:01:18 GMT",
		"Thu, 18 Aug 2050 02.01.18 GMT", "Thu, 18 Aug 2050 2:01:18 GMT", "Thu, 31 Feb 2050 02:01:18 GMT",
		"Thu, 18 Aug 2050 25:01:18 GMT", "Xyz, 18 Aug 2050 02:01:18 GMT",
	} {
		if got, ok := ParseHTTPDate(in, t0); ok {
			t.Errorf("ParseHTTPDate(%q) accepted as %v", in, got)
		}
	}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func date(d time.Duration) string { return t0.Add(d).Format(http.TimeFormat) }

func TestAnalyze(t *testing.T) {
	opts := DefaultOptions()
	cases := []struct {
		name     string
		status   int
		h        http.Header
		auth     bool
		storable bool
		lifetime time.Duration
		noStale  bool
	}{
		{"max-age", 200, hdr("Cache-Control", "max-age=60"), false, true, time.Minute, false},
		{"s-maxage wins", 200, hdr("Cache-Control", "max-age=3600, s-maxage=1", "Etag", `"x"`), false, true, time.Second, true},
		{"expires", 200, hdr("Date", date(0), "Expires", date(time.Hour)), false, true, time.Hour, false},
		{"invalid expires is stale", 200, hdr("Date", date(0), "Expires", "0", "Etag", `"x"`), false, true, 0, false},
		{"max-age beats expires", 200, hdr("Date", date(0), "Expires", date(-time.Hour), "Cache-Control", "max-age=60"), false, true, time.Minute, false},
		{"heuristic 10%", 200, hdr("Date", date(0), "Last-Modified", date(-10*time.Hour)), false, true, time.Hour, false},
		{"heuristic capped", 200, hdr("Date", date(0), "Last-Modified", date(-1000*time.Hour)), false, true, 24 * time.Hour, false},
		{"201 not heuristic", 201, hdr("Date", date(0), "Last-Modified", date(-10*time.Hour)), false, false, 0, false},
		{"599 public heuristic", 599, hdr("Date", date(0), "Last-Modified", date(-10*time.Hour), "Cache-Control", "public"), false, true, time.Hour, false},
		{"no-store", 200, hdr("Cache-Control", "max-age=60, no-store"), false, false, 0, false},
		{"must-understand 200", 200, hdr("Cache-Control", "max-age=60, no-store, must-understand"), false, true, time.Minute, false},
		{"must-understand 599", 599, hdr("Cache-Control", "max-age=60, no-store, must-understand"), false, false, 0, false},
		{"private", 200, hdr("Cache-Control", "private, max-age=60"), false, false, 0, false},
		{"authorization", 200, hdr("Cache-Control", "max-age=60"), true, false, 0, false},
		{"authorization public", 200, hdr("Cache-Control", "max-age=60, public"), true, true, time.Minute, false},
		{"authorization must-revalidate", 200, hdr("Cache-Control", "max-age=60, must-revalidate"), true, true, time.Minute, true},
		{"vary star", 200, hdr("Cache-Control", "max-age=60", "Vary", "Foo, *"), false, false, 0, false},
		{"no-cache needs validator", 200, hdr("Cache-Control", "max-age=60, no-cache"), false, false, 0, false},
		{"no-cache with etag", 200, hdr("Cache-Control", "no-cache", "Etag", `"a"`), false, true, 0, true},
		{"nothing", 200, hdr(), false, false, 0, false},
		{"cdn-cache-control overrides", 200, hdr("Cache-Control", "no-store", "Cdn-Cache-Control", "max-age=100"), false, true, 100 * time.Second, false},
		{"verge-cache-control first", 200, hdr("Cdn-Cache-Control", "max-age=100", "Verge-Cache-Control", "max-age=5"), false, true, 5 * time.Second, false},
		{"invalid targeted ignored", 200, hdr("Cache-Control", "no-store", "Cdn-Cache-Control", `max-age=10000, &&&`), false, false, 0, false},
		{"304 never", 304, hdr("Cache-Control", "max-age=60"), false, false, 0, false},
		{"206 never", 206, hdr("Cache-Control", "max-age=60"), false, false, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := Analyze(&Response{Method: "GET", Status: c.status, Header: c.h, RequestTime: t0, ResponseTime: t0, Authorization: c.auth}, &opts)
			if a.Storable != c.storable || (c.storable && (a.Lifetime != c.lifetime || a.NoStale != c.noStale)) {
				t.Errorf("got storable=%v (%s) lifetime=%v noStale=%v", a.Storable, a.Reason, a.Lifetime, a.NoStale)
			}
		})
	}
	// Options: default and max TTL.
	o2 := opts
	o2.DefaultTTL, o2.MaxTTL = 10*time.Minute, 20*time.Minute
	a := Analyze(&Response{Method: "GET", Status: 200, Header: hdr("Etag", `"a"`), RequestTime: t0, ResponseTime: t0}, &o2)
	if !a.Storable || a.Lifetime != 10*time.Minute {
		t.Errorf("default ttl: %+v", a)
	}
	a = Analyze(&Response{Method: "GET", Status: 200, Header: hdr("Cache-Control", "max-age=86400"), RequestTime: t0, ResponseTime: t0}, &o2)
	if a.Lifetime != 20*time.Minute {
		t.Errorf("max ttl: %v", a.Lifetime)
	}
}

func TestAge(t *testing.T) {
	cases := []struct {
		age  []string
		date time.Duration
		want time.Duration
	}{
		{nil, 0, 0},
		{[]string{"30"}, 0, 30 * time.Second},
		{[]string{"abc"}, 0, 0},
		{[]string{"-7200"}, 0, 0},
		{[]string{"7200.0"}, 0, 0},
		{[]string{"7200, 0"}, 0, 7200 * time.Second},
		{[]string{"0, 7200"}, 0, 0},
		{[]string{"7200", "0"}, 0, 7200 * time.Second},
		{[]string{"2147483649"}, 0, MaxDelta * time.Second},
		{nil, -time.Hour, time.Hour}, // apparent age from Date
	}
	for _, c := range cases {
		h := hdr("Date", date(c.date))
		for _, a := range c.age {
			h.Add("Age", a)
		}
		if got := initialAge(h, t0.Add(c.date), t0, t0); got != c.want {
			t.Errorf("Age %q Date %v: %v, want %v", c.age, c.date, got, c.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	s := Stored{Lifetime: 100 * time.Second, ResponseTime: t0, SWR: 50 * time.Second, SIE: 200 * time.Second}
	req := func(cc string) Directives { return RequestDirectives(hdr("Cache-Control", cc)) }
	cases := []struct {
		name string
		s    Stored
		req  Directives
		at   time.Duration
		want Use
	}{
		{"fresh", s, req(""), 10 * time.Second, Fresh},
		{"stale in swr", s, req(""), 120 * time.Second, StaleRevalidate},
		{"stale past swr", s, req(""), 200 * time.Second, Validate},
		{"no-cache", s, req("no-cache"), 0, Validate},
		{"pragma", s, RequestDirectives(hdr("Pragma", "no-cache")), 0, Validate},
		{"max-age=0", s, req("max-age=0"), 0, Validate},
		{"max-age too old", s, req("max-age=5"), 10 * time.Second, Validate},
		{"min-fresh", s, req("min-fresh=95"), 10 * time.Second, Validate},
		{"max-stale", s, req("max-stale=60"), 130 * time.Second, StaleOK},
		{"max-stale any", s, req("max-stale"), 1000 * time.Second, StaleOK},
		{"no-stale forbids max-stale", Stored{Lifetime: time.Second, ResponseTime: t0, NoStale: true}, req("max-stale"), 10 * time.Second, Validate},
		{"stored no-cache", Stored{Lifetime: time.Hour, ResponseTime: t0, NoCache: true}, req(""), 0, Validate},
	}
	for _, c := range cases {
		if got := Evaluate(&c.s, &c.req, t0.Add(c.at)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	none := req("")
	if !ServeStaleOnError(&s, &none, t0.Add(250*time.Second)) || ServeStaleOnError(&s, &none, t0.Add(400*time.Second)) {
		t.Error("stale-if-error window")
	}
	noStale := Stored{Lifetime: time.Second, ResponseTime: t0, NoStale: true, SIE: time.Hour}
	if ServeStaleOnError(&noStale, &none, t0.Add(time.Minute)) {
		t.Error("must-revalidate allowed stale on error")
	}
}

func TestConditionalsAndVary(t *testing.T) {
	stored := hdr("Etag", `"abc"`, "Last-Modified", date(-time.Hour), "Date", date(0))
	cases := []struct {
		req  http.Header
		want bool
	}{
		{hdr("If-None-Match", `"abc"`), true},
		{hdr("If-None-Match", `W/"abc"`), true},
		{hdr("If-None-Match", `"x", "abc"`), true},
		{hdr("If-None-Match", `"x"`), false},
		{hdr("If-None-Match", `*`), true},
		{hdr("If-None-Match", `"x"`, "If-Modified-Since", date(0)), false}, // INM takes precedence
		{hdr("If-Modified-Since", date(0)), true},
		{hdr("If-Modified-Since", date(-2*time.Hour)), false},
		{hdr("If-Modified-Since", "garbage"), false},
	}
	for _, c := range cases {
		if got := NotModified(c.req, stored, t0); got != c.want {
			t.Errorf("NotModified(%v) = %v", c.req, got)
		}
	}
	names, star := VaryFields(hdr("Vary", "accept-encoding, Foo", "Vary", "foo"))
	if star || !slices.Equal(names, []string{"Accept-Encoding", "Foo"}) {
		t.Errorf("VaryFields = %v %v", names, star)
	}
	if _, star := VaryFields(hdr("Vary", "", "Vary", "*")); !star {
		t.Error("Vary * on a second line")
	}
	a, _ := VaryValue(hdr("Foo", "1, 2"), "Foo")
	b, _ := VaryValue(hdr("Foo", " 1", "Foo", "2 "), "Foo")
	l1, _ := VaryValue(hdr("Accept-Language", "en, De"), "Accept-Language")
	l2, _ := VaryValue(hdr("Accept-Language", " de ,   EN"), "Accept-Language")
	if a != b || l1 != l2 {
		t.Errorf("normalisation: %q %q / %q %q", a, b, l1, l2)
	}
	if _, ok := VaryValue(hdr(), "Foo"); ok {
		t.Error("absent field reported present")
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", `no-cache="a, b", private`, `x="\"", max-age=1`, "max-stale", "max-age=99999999999999999999", `"`, `a="\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseCacheControl([]string{s})
		for _, v := range []int64{d.MaxAge, d.SMaxAge, d.MaxStale, d.MinFresh, d.StaleWhileRevalidate, d.StaleIfError} {
			if v < Absent || v > MaxDelta {
				t.Fatalf("%q: delta out of range: %+v", s, d)
			}
		}
		if td, ok := ParseTargeted([]string{s}); ok && (td.MaxAge < Absent || td.MaxAge > MaxDelta) {
			t.Fatalf("%q: targeted max-age %d", s, td.MaxAge)
		}
	})
}

func FuzzParseHTTPDate(f *testing.F) {
	f.Add("Sun, 06 Nov 1994 08:49:37 GMT")
	f.Add("Sunday, 06-Nov-94 08:49:37 GMT")
	f.Add("Sun Nov  6 08:49:37 1994")
	f.Fuzz(func(t *testing.T, s string) {
		if tm, ok := ParseHTTPDate(s, t0); ok {
			// What parses must print back the same instant in IMF-fixdate.
			if back, ok := ParseHTTPDate(tm.Format(http.TimeFormat), t0); !ok || !back.Equal(tm) {
				t.Fatalf("%q -> %v does not round-trip", s, tm)
			}
		}
	})
}
