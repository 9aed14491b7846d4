package cachekey

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	withQ := Spec{Query: true}
	noQ := Spec{Query: false}
	hdr := Spec{Query: true, Headers: []string{"X-Device"}}
	h := http.Header{"X-Device": {"mobile"}, "X-Forwarded-Host": {"evil"}}
	cases := []struct {
		spec  *Spec
		host  string
		path  string
		query string
		h     http.Header
		want  string
	}{
		{&withQ, "www.example.com", "/a", "", nil, "www.example.com/a"},
		{&withQ, "www.example.com", "/a", "x=1", nil, "www.example.com/a?x=1"},
		{&noQ, "www.example.com", "/a", "x=1", nil, "www.example.com/a"},
		{&withQ, "www.example.com", "/a%2Fb", "", nil, "www.example.com/a%2Fb"},
		{&hdr, "h", "/", "", h, "h/\x00X-Device=mobile"},
		{&hdr, "h", "/", "", http.Header{}, "h/"},
		{&withQ, "h", "/", "", h, "h/"}, // unkeyed headers never reach the key
	}
	for _, c := range cases {
		if got := c.spec.Build(c.host, c.path, c.query, c.h); got != c.want {
			t.Errorf("Build(%q %q %q) = %q, want %q", c.host, c.path, c.query, got, c.want)
		}
	}
	for in, want := range map[string]string{
		"WWW.Example.COM": "www.example.com", "example.com:8080": "example.com", "example.com.": "example.com",
		"[::1]:80": "[::1]", "[::1]": "[::1]", "": "",
	} {
		if got := Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
	if HostOf("a.example/x?y") != "a.example" {
		t.Error("HostOf")
	}
	ctx := NewContext(context.Background(), "k")
	if k, ok := FromContext(ctx); !ok || k != "k" {
		t.Error("context round trip")
	}
}

// FuzzBuild checks that distinct requests never share a key: the key is
// injective in (host, path, query) for a fixed spec, and never contains a
// header the spec does not name.
func FuzzBuild(f *testing.F) {
	f.Add("a.example", "/x", "q=1", "a.example", "/x?q=1", "", "v")
	f.Add("a.example", "/x?q", "", "a.example", "/x", "q", "v")
	f.Fuzz(func(t *testing.T, h1, p1, q1, h2, p2, q2, hv string) {
		// Inputs as net/http gives them: a host without '/', a path that
		// starts with '/' and has no '?', a query without '#'.
		valid := func(h, p, q string) bool {
			return !strings.ContainsAny(h, "/?\x00") && strings.HasPrefix(p, "/") && !strings.ContainsAny(p, "?\x00") && !strings.ContainsAny(q, "#\x00")
		}
		if !valid(h1, p1, q1) || !valid(h2, p2, q2) {
			return
		}
		s := Spec{Query: true}
		k1 := s.Build(h1, p1, q1, http.Header{"X-Unkeyed": {hv}})
		k2 := s.Build(h2, p2, q2, nil)
		norm := func(q string) string { return q }
		same := h1 == h2 && p1 == p2 && norm(q1) == norm(q2)
		if (k1 == k2) != same {
			t.Fatalf("(%q %q %q) and (%q %q %q): keys %q %q", h1, p1, q1, h2, p2, q2, k1, k2)
		}
		if HostOf(k1) != h1 {
			t.Fatalf("HostOf(%q) = %q, want %q", k1, HostOf(k1), h1)
		}
	})
}
