package scrubber

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
)

// memConn is a net.Conn over a reader and a writer, for driving a front-end
// connection without sockets (fuzzing, benchmarks).
type memConn struct {
	r      io.Reader
	w      io.Writer
	remote net.Addr
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return c.remote }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// scanHeadCases are the framing cases, including what the fuzzer found.
var scanHeadCases = []struct {
	name string
	in   string
	n    int
	keep bool
	done bool
}{
	{"simple", get, len(get), true, true},
	{"pipelined", get + get, len(get), true, true},
	{"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", 0, false, false},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 24, true, true},
	{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 29, true, true},
	{"http/1.0", "GET / HTTP/1.0\r\n\r\n", 18, false, true},
	{"content-length 0", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 38, true, true},
	{"content-length 5", "POST / HTTP/1.1\r\ncontent-LENGTH:5\r\n\r\nhello", 37, false, true},
	{"te", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 47, false, true},
	{"close", "GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n", 49, false, true},
	{"space before colon", "GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n", 38, false, true},
	{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 28, false, true},
	{"no colon", "GET / HTTP/1.1\r\nbogus\r\n\r\n", 25, false, true},
	{"empty", "\r\n\r\n\r\n\r\n\r\n", 10, false, true},
}

func TestScanHead(t *testing.T) {
	for _, c := range scanHeadCases {
		n, keep, done := scanHead([]byte(c.in))
		if n != c.n || keep != c.keep || done != c.done {
			t.Errorf("%s: scanHead = %d %v %v, want %d %v %v", c.name, n, keep, done, c.n, c.keep, c.done)
		}
	}
}

// FuzzScanHead checks the refusal path's framing against net/http's
// parser: whenever scanHead would keep the connection, a request that
// http.ReadRequest accepts has no body, does not ask to close, and ends
// exactly where scanHead says.
func FuzzScanHead(f *testing.F) {
	for _, c := range scanHeadCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, keep, done := scanHead(b)
		if !done {
			if n != 0 || keep {
				t.Fatalf("incomplete head reported n=%d keep=%v", n, keep)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("n=%d for %d bytes", n, len(b))
		}
		if !keep {
			return
		}
		rd := bytes.NewReader(b)
		br := bufio.NewReader(rd)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.ContentLength != 0 || len(req.TransferEncoding) > 0 || req.Close {
			t.Fatalf("kept a connection for a request with a body or close: CL %d TE %v close %v",
				req.ContentLength, req.TransferEncoding, req.Close)
		}
		if consumed := int(rd.Size()) - rd.Len() - br.Buffered(); consumed != n {
			t.Fatalf("scanHead framed %d bytes, http.ReadRequest read %d", n, consumed)
		}
	})
}

// frontFuzzCases are whole-connection inputs kept from fuzzing.
var frontFuzzCases = []string{
	get + get + get + get,
	"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + get,
	"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
	"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\nshort",
	"GET / HTTP/1.1\r\n\r\n",
	"\x00\x01\x02",
	"GET /panic HTTP/1.1\r\nHost: a\r\n\r\n",
}

// FuzzFrontConn feeds arbitrary bytes to a front-end connection: it must
// neither panic nor hang, and what it writes back must parse as a sequence
// of HTTP responses.
func FuzzFrontConn(f *testing.F) {
	for _, c := range frontFuzzCases {
		f.Add([]byte(c))
	}
	env := newTest(f, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 1, Burst: 2}
		c.Limits.PerPrefix = Bucket{}
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Write(b)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-T")
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		io.WriteString(w, "b")
		w.Header().Set("X-T", "t\r\nInjected: 1")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	fr := env.s.NewFront(mux)
	var n atomic.Uint32
	f.Fuzz(func(t *testing.T, in []byte) {
		i := n.Add(1)
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		var out bytes.Buffer
		mc := &memConn{r: bytes.NewReader(in), w: &out, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 1234))}
		c := fr.newConn(mc)
		fr.mu.Lock()
		fr.conns[c] = struct{}{}
		fr.mu.Unlock()
		c.serve()
		br := bufio.NewReader(&out)
		for {
			if _, err := br.Peek(1); err == io.EOF {
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("unparseable output %q: %v", out.String(), err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("body: %v", err)
			}
			for k := range resp.Header {
				if strings.EqualFold(k, "Injected") {
					t.Fatal("header injection through a trailer")
				}
			}
			for k := range resp.Trailer {
				if strings.EqualFold(k, "Injected") {
					t.Fatal("header injection through a trailer")
				}
			}
		}
	})
}

// configFuzzCases are config files kept from fuzzing.
var configFuzzCases = []string{
	"",
	"listen: 127.0.0.1:1\nlimits: {mode: penalty_box, per_ip: {rate: 5, burst: 1}, penalty: 10s}\n",
	"limits:\n  per_ip: {rate: 0.5, burst: 1}\n  global: {rate: 1000, burst: 100}\nattack: {enabled: false}\n",
	"attack:\n  limits: {per_ip: {rate: 1e400}}\n",
	"lists: {allow: [10.0.0.0/8], deny: [\"::/0\"]}\n",
	"connections: {max_header_bytes: 1MiB, idle_timeout: 1ns}\n",
	"limits: {ipv4_prefix: 0}\nserver: slow\n",
	"attack: {challenge: {enabled: true, kind: redirect, cookie: c}}\n",
}

// FuzzConfig: any file either loads into a config that New accepts, or is
// an error naming the file.
func FuzzConfig(f *testing.F) {
	for _, c := range configFuzzCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data string) {
		cfg := DefaultProxyConfig()
		err := configs.LoadBytes("f.yaml", []byte(data), &cfg)
		if err != nil {
			if !strings.Contains(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if cfg.Lists.File != "" || cfg.Attack.Challenge.SecretFile != "" || cfg.Attack.Report.TokenFile != "" {
			return // would read files named by the input
		}
		if cfg.Limits.MaxSources > 1<<20 {
			return // valid, but a table that size takes a while to allocate per input
		}
		s, err := New(cfg.Config, Options{})
		if err != nil {
			t.Fatalf("a config that validated was refused by New: %v", err)
		}
		h := s.Wrap(okHandler)
		do(h, "192.0.2.1:1")
		do(h, "[2001:db8::1]:1")
	})
}

func TestFuzzCasesAsTable(t *testing.T) {
	// The kept inputs also run as plain tests (go test without -fuzz runs
	// the seed corpus; this makes the config cases' outcomes explicit).
	for _, c := range configFuzzCases {
		cfg := DefaultProxyConfig()
		err := configs.LoadBytes("f.yaml", []byte(c), &cfg)
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Errorf("%q: %v", c, err)
		}
	}
}
