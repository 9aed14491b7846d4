package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
)

// Regression cases for defects the attack corpora in cmd/verge found.

// A GET, HEAD or TRACE body is never sent upstream: an origin that ignores
// the body of a GET would read it as its next request (CL.0 smuggling).
// Other methods keep theirs.
func TestBodylessMethodsForwardNoBody(t *testing.T) {
	bodies := make(chan string, 8)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- r.Method + " " + r.Header.Get("Content-Length") + " " + string(b)
		w.Header().Set("Cache-Control", "no-store")
	})
	te := newEdge(t, o.URL, nil)
	hidden := "GET /smuggled HTTP/1.1\r\nHost: www.example.test\r\n\r\n"
	for _, c := range []struct{ method, want string }{
		{http.MethodGet, "GET  "},
		{http.MethodHead, "HEAD  "},
		{http.MethodPost, "POST 50 " + hidden},
		{http.MethodDelete, "DELETE 50 " + hidden},
	} {
		// no-store: a GET is passed through rather than filled
		te.do(t, c.method, "/b", strings.NewReader(hidden), "Cache-Control", "no-store")
		if got := <-bodies; got != c.want {
			t.Errorf("%s: origin got %q, want %q", c.method, got, c.want)
		}
	}
}

// The asterisk-form target is a server-wide OPTIONS and nothing else: it is
// answered by the node, and other methods with it are refused rather than
// fetched (and cached) as a resource named "*".
func TestAsteriskForm(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("origin got %s %s", r.Method, r.RequestURI)
	})
	te := newEdge(t, o.URL, nil)
	for _, c := range []struct {
		req  string
		want int
	}{
		{"GET * HTTP/1.1\r\nHost: www.example.test\r\n\r\n", http.StatusBadRequest},
		{"POST * HTTP/1.1\r\nHost: www.example.test\r\nContent-Length: 0\r\n\r\n", http.StatusBadRequest},
		{"OPTIONS * HTTP/1.1\r\nHost: www.example.test\r\n\r\n", http.StatusOK},
	} {
		c2, err := net.Dial("tcp", te.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c2.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard only
		io.WriteString(c2, c.req)
		resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
		c2.Close()
		if err != nil {
			t.Fatalf("%q: %v", c.req, err)
		}
		if resp.StatusCode != c.want {
			t.Errorf("%q: status %d, want %d", c.req, resp.StatusCode, c.want)
		}
	}
	// Over HTTP/2 OPTIONS * reaches the handler: answered there too.
	rec := &headerRecorder{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodOptions, "http://www.example.test/", nil)
	req.URL.Path, req.RequestURI, req.Host = "*", "*", "www.example.test"
	te.ServeHTTP(rec, req)
	if rec.code != http.StatusOK {
		t.Errorf("OPTIONS * in the handler: %d", rec.code)
	}
}

// headerRecorder is a minimal ResponseWriter.
type headerRecorder struct {
	h    http.Header
	code int
	body strings.Builder
}

func (r *headerRecorder) Header() http.Header { return r.h }
func (r *headerRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *headerRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(p)
}

// A client that half-closes its side after its request is still reading;
// Go's server cancels the request's context all the same. A body of unknown
// length that is still arriving must then end as an aborted response, never
// as a clean last chunk that makes a cut body look whole.
func TestHalfClosedClientNeverGetsACutBodyThatLooksWhole(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "part1")
		w.(http.Flusher).Flush() // chunked: no Content-Length
		<-release
		io.WriteString(w, "part2")
	})
	te := newEdge(t, o.URL, nil)
	defer close(release)
	c, err := net.Dial("tcp", te.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard only
	io.WriteString(c, "GET /chunked HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return // aborted before the head: not whole either
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil && string(body) != "part1part2" {
		t.Errorf("a cut body looked whole: %d %q", resp.StatusCode, body)
	}
}

// Fields that frameworks trust to build URLs, pick a scheme or a method,
// and that are not in the cache key, never reach the origin from a client,
// through an edge or a hub: honouring them would let one client poison the
// page for everyone.
func TestUntrustedForwardingFieldsDropped(t *testing.T) {
	for _, f := range []string{"X-Forwarded-Ssl", "Front-End-Https", "X-Forwarded-Prefix", "X-Original-Host", "X-Url-Scheme"} {
		if !slices.Contains(untrustedFromClients, f) {
			t.Errorf("%s is not in the list", f)
		}
	}
	for _, role := range []Role{RoleEdge, RoleHub} {
		seen := make(chan http.Header, 1)
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Header.Clone()
			w.Header().Set("Cache-Control", "max-age=60")
		})
		te := newEdge(t, o.URL, func(c *Config) { c.Role = role })
		var hdr []string
		for _, f := range untrustedFromClients {
			hdr = append(hdr, f, "evil.test")
		}
		te.get(t, "/u", hdr...)
		h := <-seen
		for _, f := range untrustedFromClients {
			if v, ok := h[f]; ok {
				t.Errorf("%s: origin got %s: %q", role, f, v)
			}
		}
	}
}

// The origin gets the Host the cache key holds: one spelling of the host
// (case, port, trailing dot) cannot store a page built for it under the key
// every other spelling shares.
func TestUpstreamHostIsTheKeyedHost(t *testing.T) {
	hosts := make(chan string, 4)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		w.Header().Set("Cache-Control", "no-store")
	})
	te := newEdge(t, o.URL, nil)
	for _, h := range []string{"WWW.Example.TEST", "www.example.test:1337", "www.example.test."} {
		te.get(t, "/h", "Host", h)
		if got := <-hosts; got != "www.example.test" {
			t.Errorf("Host %q reached the origin as %q", h, got)
		}
	}
}

// Web cache deception: with default_ttl set, a victim's personal page at
// /account.php/x.css (the origin ignores the suffix and says nothing about
// caching) must not be stored for the attacker who asks for the same URL.
// implicit_ttl_for_cookies restores the old behaviour for sites that want
// it; an explicit lifetime from the origin is always honoured.
func TestDefaultTTLNeverStoresPersonalPages(t *testing.T) {
	for _, c := range []struct {
		name     string
		implicit bool
		cc       string
		leaks    bool
	}{
		{"default", false, "", false},
		{"implicit_ttl_for_cookies", true, "", true},
		{"explicit max-age", false, "max-age=60", true},
	} {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			if c.cc != "" {
				w.Header().Set("Cache-Control", c.cc)
			}
			ck, err := r.Cookie("session")
			if err != nil {
				io.WriteString(w, "account of nobody")
				return
			}
			io.WriteString(w, "account of "+ck.Value)
		})
		te := newEdge(t, o.URL, func(cfg *Config) {
			cfg.Properties[0].DefaultTTL = configs.Duration(time.Hour)
			cfg.Properties[0].ImplicitTTLForCookies = c.implicit
		})
		if _, body := te.get(t, "/account.php/x.css", "Cookie", "session=victim"); body != "account of victim" {
			t.Fatalf("%s: victim got %q", c.name, body)
		}
		_, body := te.get(t, "/account.php/x.css")
		if leaked := body == "account of victim"; leaked != c.leaks {
			t.Errorf("%s: the attacker got %q", c.name, body)
		}
	}
}
