package scrubber

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strconv"
	"testing"
)

// Regression cases for what the smuggling corpus (cmd/verge) found in the
// proxy, behind both front ends.

// A GET, HEAD or TRACE body is read off the client connection but never
// sent upstream: an upstream that ignores a GET's body would take it for
// its next request (CL.0). The target * is answered, never forwarded.
func TestProxyDropsBodiesOfBodylessMethods(t *testing.T) {
	serveBoth(t, nil, func(t *testing.T, env *testEnv, serve func(http.Handler) string) {
		got := make(chan string, 8)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- r.Method + " " + r.RequestURI + " " + string(b)
		}))
		defer up.Close()
		addr := serve(env.s.Proxy(upstreamURL(t, up), &http.Transport{}))
		c := dialRaw(t, addr)
		hidden := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
		for _, m := range []string{"GET", "HEAD", "POST"} {
			c.send(m + " /b HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden)
			if resp, _ := c.response(m); resp.StatusCode != 200 {
				t.Fatalf("%s: %d", m, resp.StatusCode)
			}
			want := m + " /b "
			if m == "POST" {
				want += hidden
			}
			if g := <-got; g != want {
				t.Errorf("upstream got %q, want %q", g, want)
			}
		}
		c.send("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.response("OPTIONS"); resp.StatusCode != 200 {
			t.Errorf("OPTIONS *: %d", resp.StatusCode)
		}
		c.send("GET * HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != 400 {
			t.Errorf("GET *: %d", resp.StatusCode)
		}
		select {
		case g := <-got:
			t.Errorf("the target * reached the upstream: %q", g)
		default:
		}
	})
}

// After a request with both Content-Length and Transfer-Encoding the front
// end answers and closes (RFC 9112 section 6.1): what a proxy in front
// framed by Content-Length as one request never becomes two here. net/http
// keeps such connections open (golang/go#80942); the front end does not.
func TestFrontClosesAfterConflictingFraming(t *testing.T) {
	env := newTest(t, nil)
	got := make(chan string, 8)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.RequestURI
	}))
	defer up.Close()
	_, addr := startFront(t, env, env.s.Proxy(upstreamURL(t, up), &http.Transport{}))
	hidden := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, fields := range []string{
		"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n",
		"Transfer-Encoding: chunked\r\ncontent-length: 40\r\n",
	} {
		c := dialRaw(t, addr)
		c.send("POST /a HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n0\r\n\r\n" + hidden)
		resp, _ := c.response("POST")
		if resp.StatusCode != 200 || !resp.Close {
			t.Errorf("%q: status %d, close %v", fields, resp.StatusCode, resp.Close)
		}
		if n, err := c.br.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("%q: the connection stayed open", fields)
		}
		if g := <-got; g != "POST /a" {
			t.Errorf("upstream got %q", g)
		}
	}
	// Chunked alone keeps the connection.
	c := dialRaw(t, addr)
	c.send("POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := c.response("POST"); resp.Close {
		t.Error("a chunked request without Content-Length closed the connection")
	}
	if resp, _ := c.response("GET"); resp.StatusCode != 200 {
		t.Errorf("pipelined GET: %d", resp.StatusCode)
	}
	if a, b := <-got, <-got; a != "POST /b" || b != "GET /c" {
		t.Errorf("upstream got %q, %q", a, b)
	}
	select {
	case g := <-got:
		t.Errorf("the hidden request reached the upstream: %q", g)
	default:
	}
}

// FuzzHasBothLengths compares the front end's check for conflicting
// framing with Go's own reader of header fields: whenever Go reads both a
// Content-Length and a Transfer-Encoding field in a head, so does the check
// (the other way it only closes a connection it could have kept).
func FuzzHasBothLengths(f *testing.F) {
	for _, s := range []string{
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\nhost: a\ntransfer-encoding: chunked\ncontent-LENGTH: 1\n\n",
		"POST / HTTP/1.1\r\nX: a\r\n Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length : 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, done := scanHead(b)
		if !done || len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
			return
		}
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b[:n])))
		if _, err := tp.ReadLine(); err != nil {
			return
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return // net/http refuses the request
		}
		if len(h["Content-Length"]) > 0 && len(h["Transfer-Encoding"]) > 0 && !hasBothLengths(b[:n]) {
			t.Fatalf("Go reads both length fields in %q, the front end does not", b[:n])
		}
	})
}
