package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// limitsEdge runs "verge edge" in this process with HTTP, HTTPS (h1, h2)
// and HTTP/3 listeners and the given limits section; it returns the
// addresses and the fixture's CA.
type limitsEdge struct {
	http, https, h3 string
	fx              *tlsFixture
}

func startLimitsEdge(t *testing.T, limits string) *limitsEdge {
	t.Helper()
	dir := t.TempDir()
	origin := cachedOrigin(t)
	fx := newTLSFixture(t, dir)
	cfg := writeConfig(t, filepath.Join(dir, "edge.yaml"), fx.edgeYAML(origin.URL, limits))
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- runEdge(ctx, env{args: []string{"-config", cfg}, stdout: io.Discard, stderr: logs}) }()
	t.Cleanup(func() {
		cancel()
		if code := <-exited; code != exitOK {
			t.Errorf("edge exited %d:\n%s", code, logs.String())
		}
	})
	return &limitsEdge{
		http:  waitListening(t, logs, "public", exited),
		https: waitListening(t, logs, "https", exited),
		h3:    waitListening(t, logs, "http3", exited),
		fx:    fx,
	}
}

// headerCase is a request head that the edge must refuse with 431, or
// (ok) serve.
type headerCase struct {
	name   string
	fields [][2]string
	ok     bool
	// h2Close: over HTTP/2 the connection may be closed instead (a header
	// block over twice the limit is a connection error, or the guard's).
	h2Close bool
}

func headerCases() []headerCase {
	field := func(name string, n int) [2]string { return [2]string{name, strings.Repeat("v", n)} }
	many := func(count, size int) [][2]string {
		var f [][2]string
		for i := range count {
			f = append(f, field(fmt.Sprintf("X-Pad-%02d", i), size))
		}
		return f
	}
	return []headerCase{
		{"one field of 7.9 KiB (allowed)", [][2]string{field("X-Big", 8<<10-100)}, true, false},
		{"one field of 8 KiB + 1", [][2]string{field("X-Big", 8<<10-len("X-Big")+1)}, false, false},
		{"one field of 16 KiB", [][2]string{field("X-Big", 16<<10)}, false, false},
		{"a head of 24 KiB in 12 fields (allowed)", many(12, 2<<10), true, false},
		{"a head of 40 KiB in 20 fields", many(20, 2<<10), false, false},
		{"a head of 64 KiB in 16 fields", many(16, 4<<10), false, false},
		{"a head of 96 KiB in 24 fields", many(24, 4<<10), false, true},
	}
}

// TestHeaderLimitsEveryProtocol sends each head over HTTP/1.1 (plain and
// TLS), HTTP/2 (a raw framer: Go's client would refuse to send them) and
// HTTP/3, and wants 431 (or 200 for the allowed ones).
func TestHeaderLimitsEveryProtocol(t *testing.T) {
	e := startLimitsEdge(t, "")
	roots := e.fx.ca.Pool()
	_, port, _ := net.SplitHostPort(e.https)
	h3 := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, e.h3, tc, qc)
		},
	}
	defer h3.Close()
	for _, c := range headerCases() {
		want := 431
		if c.ok {
			want = 200
		}
		got := map[string]int{}
		got["h1"] = h1Status(t, e.http, nil, c.fields)
		got["h1+tls"] = h1Status(t, e.https, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}}, c.fields)

		h2 := dialH2(t, e.https, "a.test", roots)
		var flat []string
		for _, f := range c.fields {
			flat = append(flat, strings.ToLower(f[0]), f[1])
		}
		if _, err := h2.request("a.test", "/obj", flat...); err != nil {
			t.Fatalf("%s: h2 write: %v", c.name, err)
		}
		var s int
		fmt.Sscan(h2.status(), &s)
		got["h2"] = s

		req, _ := http.NewRequest("GET", "https://a.test:"+port+"/obj", nil)
		for _, f := range c.fields {
			req.Header.Set(f[0], f[1])
		}
		if res, err := h3.RoundTrip(req); err != nil {
			t.Errorf("%s: h3: %v", c.name, err)
		} else {
			got["h3"] = res.StatusCode
			res.Body.Close()
		}
		for proto, s := range got {
			if s == 0 && proto == "h2" && c.h2Close {
				continue
			}
			if s != want {
				t.Errorf("%s over %s: status %d, want %d", c.name, proto, s, want)
			}
		}
		t.Logf("%s: h1 %d, h1+tls %d, h2 %d, h3 %d", c.name, got["h1"], got["h1+tls"], got["h2"], got["h3"])
	}
}

// h1Status sends one HTTP/1.1 request with fields on a fresh connection
// and returns the response status (0 when the connection ended first).
func h1Status(t *testing.T, addr string, tc *tls.Config, fields [][2]string) int {
	t.Helper()
	var conn net.Conn
	var err error
	if tc != nil {
		conn, err = tls.Dial("tcp", addr, tc)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	b.WriteString("GET /obj HTTP/1.1\r\nHost: a.test\r\n")
	for _, f := range fields {
		b.WriteString(f[0] + ": " + f[1] + "\r\n")
	}
	b.WriteString("\r\n")
	go io.WriteString(conn, b.String()) // the server may answer before reading it all
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// TestIdleHeaderReadsAreClosed opens connections that start a request head
// (or a TLS handshake, or an HTTP/2 header block) and then send nothing,
// and checks that the edge closes each one: limits.read_header_timeout is
// set to 1s here (the default is 10s). The only thing asserted is that
// the connection was closed; how long it took is printed.
func TestIdleHeaderReadsAreClosed(t *testing.T) {
	e := startLimitsEdge(t, "limits: {read_header_timeout: 1s}\n")
	roots := e.fx.ca.Pool()
	// waitEOF reads until the server closes; false if it has not after 20s.
	waitEOF := func(conn net.Conn) (bool, time.Duration) {
		start := time.Now()
		conn.SetReadDeadline(start.Add(20 * time.Second))
		_, err := io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, time.Since(start)
		}
		return true, time.Since(start)
	}
	cases := []struct {
		name string
		open func() net.Conn
	}{
		{"h1: half a request head", func() net.Conn {
			c, err := net.Dial("tcp", e.http)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /obj HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
			return c
		}},
		{"h1: connected, nothing sent", func() net.Conn {
			c, err := net.Dial("tcp", e.http)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"tls: no ClientHello", func() net.Conn {
			c, err := net.Dial("tcp", e.https)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"h1+tls: half a request head", func() net.Conn {
			c, err := tls.Dial("tcp", e.https, &tls.Config{RootCAs: roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /obj HTTP/1.1\r\nHost: a.test\r\n")
			return c
		}},
	}
	for _, c := range cases {
		conn := c.open()
		closed, took := waitEOF(conn)
		conn.Close()
		t.Logf("FIGURE idle header read (%s): closed=%v after %v (read_header_timeout 1s)", c.name, closed, took.Round(time.Millisecond))
		if !closed {
			t.Errorf("%s: still open after 20s", c.name)
		}
	}
	// HTTP/2: the guard arms read_header_timeout from HEADERS to END_HEADERS.
	h := dialH2(t, e.https, "a.test", roots)
	if !h.ping() {
		t.Fatal("no PING ack")
	}
	blk := h.block("a.test", "/obj")
	start := time.Now()
	h.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:len(blk)/2], EndStream: true})
	})
	closed := h.waitClosed(20 * time.Second)
	t.Logf("FIGURE idle header read (h2: HEADERS without END_HEADERS): closed=%v after %v (read_header_timeout 1s)", closed, time.Since(start).Round(time.Millisecond))
	if !closed {
		t.Error("h2 header block: still open after 20s")
	}
}

// TestSlowlorisBystander opens 2,000 connections to a real "verge edge"
// process that each start a request head (or a TLS handshake) and stall,
// then sends a bystander's requests, all of which must succeed.
func TestSlowlorisBystander(t *testing.T) {
	needHardening(t)
	const sockets = 2000
	if err := raiseNoFile(sockets + 1000); err != nil {
		t.Skipf("cannot open %d sockets: %v", sockets, err)
	}
	dir := t.TempDir()
	bin := buildVerge(t, dir, "slowloris")
	origin := cachedOrigin(t)
	fx := newTLSFixture(t, dir)
	cfg := writeConfig(t, filepath.Join(dir, "edge.yaml"), fx.edgeYAML(origin.URL, ""))
	p := startVerge(t, bin, nil, "edge", "-config", cfg)
	httpAddr, httpsAddr := p.addr(t, "public"), p.addr(t, "https")

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range sockets {
		addr := httpAddr
		if i%2 == 1 {
			addr = httpsAddr // a TLS port that never gets a ClientHello
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("slowloris socket %d: %v", i, err)
		}
		if addr == httpAddr {
			io.WriteString(c, "GET /obj HTTP/1.1\r\nHost: a.test\r\nX-Slow: a")
		}
		conns = append(conns, c)
	}
	opened := time.Since(start)
	// The bystander: 200 requests over HTTP/1.1, each on a new connection,
	// and 200 over one HTTP/2 connection, while the sockets are open (the
	// edge cuts them at read_header_timeout, 10s).
	var failed atomic.Int64
	var lastErr atomic.Value
	var wg sync.WaitGroup
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	h2 := h2Client(httpsAddr, fx.ca.Pool())
	defer h2.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(httpsAddr)
	for _, target := range []struct {
		c   *http.Client
		url string
	}{{h1, "http://" + httpAddr + "/obj"}, {h2, "https://a.test:" + port + "/obj"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond) // 4s: all while the sockets stall
			defer tick.Stop()
			for range 200 {
				<-tick.C
				req, _ := http.NewRequest("GET", target.url, nil)
				req.Host = "a.test"
				res, err := target.c.Do(req)
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	stillOpen := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				stillOpen++
			}
		}
	}
	t.Logf("FIGURE slowloris: %d stalled sockets opened in %v; bystander 400 requests (h1 new connections, h2), %d failed, done %v after the first socket; %d sockets still open then",
		sockets, opened.Round(time.Millisecond), failed.Load(), took.Round(time.Millisecond), stillOpen)
	if failed.Load() > 0 {
		t.Errorf("bystander: %d requests failed: %v", failed.Load(), lastErr.Load())
	}
}

// raiseNoFile raises this process's open-file limit to at least n (the
// edge it starts inherits it).
func raiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	if lim.Max < n {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d < %d", lim.Max, n)
	}
	lim.Cur = n
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
