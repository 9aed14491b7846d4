package scrubber

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vergecdn/verge/configs"
)

// startFront serves h behind the stages on 127.0.0.1:0 with Front.
func startFront(t *testing.T, env *testEnv, h http.Handler) (*Front, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := env.s.NewFront(h)
	done := make(chan error, 1)
	go func() { done <- f.Serve(ln) }()
	t.Cleanup(func() {
		f.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return f, ln.Addr().String()
}

// rawConn is a client connection that writes bytes as they are.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	return dialFrom(t, "", addr)
}

// dialFrom dials addr from a local loopback address (e.g. 127.0.0.5).
func dialFrom(t *testing.T, src, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// A guard against hangs only; no test depends on how long a step takes.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) response(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection (EOF or reset).
func (r *rawConn) closed() bool {
	_, err := r.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

// refusedFrom reports whether a connection from src is closed without an
// answer (the reset may already come back to the dial).
func refusedFrom(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return isReset(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte(get))
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	return r.closed()
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

const get = "GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n"

func TestFrontAdmitsAndRefuses(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 10, Burst: 3}
		c.Limits.PerPrefix = Bucket{}
	})
	_, addr := startFront(t, env, okHandler)
	c := dialRaw(t, addr)
	for i := 0; i < 5; i++ {
		c.send(get)
		resp, body := c.response("GET")
		switch {
		case i < 3 && (resp.StatusCode != 200 || body != "ok"):
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		case i >= 3 && (resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || resp.Close ||
			resp.Header.Get("Date") == "" || !strings.Contains(body, "too many requests")):
			t.Fatalf("request %d: %d %v %q", i, resp.StatusCode, resp.Header, body)
		}
	}
	// Pipelined: refused and admitted requests answered in order on one
	// connection once a token is back.
	env.clock.Advance(100 * time.Millisecond)
	c.send(get + get + get)
	codes := []int{}
	for i := 0; i < 3; i++ {
		resp, _ := c.response("GET")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 429 429]" {
		t.Fatalf("pipelined: %v", codes)
	}
	if counter(t, env, "pass") != 4 || counter(t, env, "per_ip") != 4 {
		t.Fatalf("counters pass %d per_ip %d", counter(t, env, "pass"), counter(t, env, "per_ip"))
	}
}

func TestFrontRefusalClosesWhenItMust(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 1, Burst: 1}
		c.Limits.PerPrefix = Bucket{}
	})
	_, addr := startFront(t, env, okHandler)
	warm := dialRaw(t, addr)
	warm.send(get)
	warm.response("GET") // the one token is spent
	cases := []struct{ name, req string }{
		{"body", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"http/1.0", "GET /x HTTP/1.0\r\n\r\n"},
		{"connection close", "GET /x HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"},
		{"odd header", "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"},
		{"huge head", "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 6000) + "\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.send(tc.req)
			resp, _ := c.response("GET")
			if resp.StatusCode != 429 || !resp.Close {
				t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
			}
			if !c.closed() {
				t.Fatal("connection left open")
			}
		})
	}
	// Content-Length: 0 is no body: the connection stays.
	c := dialRaw(t, addr)
	c.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + get)
	for i := 0; i < 2; i++ {
		if resp, _ := c.response("GET"); resp.StatusCode != 429 || resp.Close {
			t.Fatalf("request %d: %d close=%v", i, resp.StatusCode, resp.Close)
		}
	}
}

func TestFrontPenaltyBoxClosesAndRefusesAtAccept(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.Mode = ModePenaltyBox
		c.Limits.PerIP = Bucket{Rate: 1, Burst: 1}
		c.Limits.PerPrefix = Bucket{}
		c.Limits.Penalty = configs.Duration(time.Minute)
	})
	_, addr := startFront(t, env, okHandler)
	c := dialFrom(t, "127.0.0.21", addr)
	c.send(get + get)
	if resp, _ := c.response("GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	resp, _ := c.response("GET")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "60" || !resp.Close || !c.closed() {
		t.Fatalf("boxed: %d %v", resp.StatusCode, resp.Header)
	}
	// A new connection from the boxed source is closed at accept.
	if !refusedFrom(t, "127.0.0.21", addr) {
		t.Fatal("a boxed source's new connection was served")
	}
	eventually(t, func() bool { return testutil.ToFloat64(env.s.m.connBoxed) == 1 })
	// Another source is fine.
	c3 := dialFrom(t, "127.0.0.22", addr)
	c3.send(get)
	if resp, _ := c3.response("GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
}

func TestFrontSlowAndBadClients(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Connections.ReadHeaderTimeout = configs.Duration(100 * time.Millisecond)
		c.Connections.MaxHeaderBytes = 2048
	})
	_, addr := startFront(t, env, okHandler)
	m := env.s.m.slowClosed

	// Slowloris: half a header, then nothing. The server hangs up.
	c := dialRaw(t, addr)
	c.send("GET /x HTTP/1.1\r\nHost: a\r\n")
	if !c.closed() {
		t.Fatal("a half-sent header kept the connection")
	}
	// Connected and silent.
	if c := dialRaw(t, addr); !c.closed() {
		t.Fatal("a silent connection was kept")
	}
	eventually(t, func() bool { return testutil.ToFloat64(m.WithLabelValues("header_timeout")) == 2 })

	// A header over max_header_bytes: 431 and the end.
	c = dialRaw(t, addr)
	c.send("GET /x HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 100)+"\r\n", 80) + "\r\n")
	resp, _ := c.response("GET")
	if resp.StatusCode != 431 || !c.closed() {
		t.Fatalf("large header: %d", resp.StatusCode)
	}

	bad := []struct{ req, want string }{
		{"GET /x HTTP/1.1\r\n\r\n", "400 missing required Host header"},
		{"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400 malformed request"},
		{"NOT A REQUEST\r\n\r\n", "400 malformed request"},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "505 HTTP/1.x only"},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "405 CONNECT"},
		{"POST /x HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx", "417 unsupported Expect"},
		{"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", "400 malformed Host header"},
	}
	for _, b := range bad {
		c := dialRaw(t, addr)
		c.send(b.req)
		resp, body := c.response("GET")
		if !strings.HasPrefix(body, b.want) || !resp.Close || !c.closed() {
			t.Errorf("%q: %d %q", b.req, resp.StatusCode, body)
		}
	}
}

func TestFrontBodiesAndFraming(t *testing.T) {
	env := newTest(t, nil)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	mux.HandleFunc("/nolength", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1 ")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "part2")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/trailer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "data")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})
	mux.HandleFunc("/ignore-body", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ignored") })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	_, addr := startFront(t, env, mux)
	c := dialRaw(t, addr)

	c.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body := c.response("POST"); resp.StatusCode != 200 || body != "POST hello" {
		t.Fatalf("echo: %d %q", resp.StatusCode, body)
	}
	c.send("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	if _, body := c.response("POST"); body != "POST abcde" {
		t.Fatalf("chunked echo: %q", body)
	}
	// Expect: 100-continue: the body is sent after the interim response.
	c.send("PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	interim, err := http.ReadResponse(c.br, nil)
	if err != nil || interim.StatusCode != 100 {
		t.Fatalf("100-continue: %v %v", interim, err)
	}
	c.send("xyz")
	if _, body := c.response("PUT"); body != "PUT xyz" {
		t.Fatalf("after 100-continue: %q", body)
	}
	// Unknown length: chunked, streamed as the handler flushes.
	c.send("GET /nolength HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("nolength: %v %v", resp, err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part1 " {
		t.Fatalf("first part before the handler finished: %q %v", buf, err)
	}
	close(release)
	if rest, _ := io.ReadAll(resp.Body); string(rest) != "part2" {
		t.Fatalf("rest %q", rest)
	}
	// HEAD and 204 have no body.
	c.send("HEAD /echo HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := c.response("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	c.send("GET /empty HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := c.response("GET"); resp.StatusCode != 204 || body != "" {
		t.Fatalf("204: %d %q", resp.StatusCode, body)
	}
	c.send("GET /trailer HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := c.response("GET")
	if body != "data" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" {
		t.Fatalf("trailers: %q %v", body, resp.Trailer)
	}
	// A body the handler ignored is read through, and the next request works.
	c.send("POST /ignore-body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789" + get)
	if _, body := c.response("POST"); body != "ignored" {
		t.Fatal(body)
	}
	if resp, _ := c.response("GET"); resp.StatusCode != 404 {
		t.Fatalf("request after an ignored body: %d", resp.StatusCode)
	}
	// HTTP/1.0 with keep-alive.
	c.send("GET /empty HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp, _ := c.response("GET"); resp.StatusCode != 204 || resp.Close {
		t.Fatalf("1.0 keep-alive: %d close=%v", resp.StatusCode, resp.Close)
	}
	// A panicking handler costs its connection, not the server.
	c.send("GET /panic HTTP/1.1\r\nHost: a\r\n\r\n")
	if !c.closed() {
		t.Fatal("connection kept after a panic")
	}
	c2 := dialRaw(t, addr)
	c2.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := c2.response("GET"); resp.StatusCode != 200 {
		t.Fatal("server broken after a panic")
	}
}

func TestFrontShutdownDrains(t *testing.T) {
	env := newTest(t, nil)
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})
	f, addr := startFront(t, env, h)
	idle := dialRaw(t, addr)
	idle.send(get)
	idle.response("GET")
	busy := dialRaw(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- f.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Fatal("idle connection not closed by Shutdown")
	}
	close(release)
	resp, body := busy.response("GET")
	if body != "done" || !resp.Close {
		t.Fatalf("in-flight request: %q close=%v", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

func TestFrontDenyAndConnLimitAtAccept(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Lists.Deny = []string{"127.0.0.66"}
		c.Connections.PerClient = 2
	})
	_, addr := startFront(t, env, okHandler)
	if !refusedFrom(t, "127.0.0.66", addr) {
		t.Fatal("deny-listed source served")
	}
	a1, a2 := dialFrom(t, "127.0.0.31", addr), dialFrom(t, "127.0.0.31", addr)
	for _, c := range []*rawConn{a1, a2} {
		c.send(get)
		if resp, _ := c.response("GET"); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
	}
	if !refusedFrom(t, "127.0.0.31", addr) {
		t.Fatal("third connection of a source with per_client 2 was served")
	}
	// Closing one frees a slot.
	a1.c.Close()
	a := mustAddr("127.0.0.31")
	eventually(t, func() bool { return env.s.conns.open(a) == 1 })
	a4 := dialFrom(t, "127.0.0.31", addr)
	a4.send(get)
	if resp, _ := a4.response("GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if testutil.ToFloat64(env.s.m.connDeny) != 1 || testutil.ToFloat64(env.s.m.connLimit) != 1 {
		t.Fatalf("deny %v limit %v", testutil.ToFloat64(env.s.m.connDeny), testutil.ToFloat64(env.s.m.connLimit))
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
