package scrubber

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// benchScrubber: real clock, per-IP bucket only.
func benchScrubber(b *testing.B, rate float64, burst int) *Scrubber {
	cfg := DefaultConfig()
	cfg.Attack.Enabled = false
	cfg.Limits.PerIP = Bucket{Rate: rate, Burst: burst}
	cfg.Limits.PerPrefix = Bucket{}
	s, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

var nopHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

// BenchmarkWrapAllow: the middleware's pass path (every address stage).
func BenchmarkWrapAllow(b *testing.B) {
	s := benchScrubber(b, 1e7, 1_000_000)
	h := s.Wrap(nopHandler)
	r := httptest.NewRequest("GET", "http://example.test/x", nil)
	r.RemoteAddr = "192.0.2.1:5555"
	w := &reuseWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkWrapReject: the middleware's reject path (429 from per_ip).
func BenchmarkWrapReject(b *testing.B) {
	s := benchScrubber(b, 1, 1)
	h := s.Wrap(nopHandler)
	r := httptest.NewRequest("GET", "http://example.test/x", nil)
	r.RemoteAddr = "192.0.2.1:5555"
	w := &reuseWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	if w.code != 429 {
		b.Fatal(w.code)
	}
}

// BenchmarkAdmitRotate: the address stages for a new source every time
// (table full, one eviction per request).
func BenchmarkAdmitRotate(b *testing.B) {
	s := benchScrubber(b, 100, 50)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		s.admit(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), s.nowNanos())
	}
}

// repeatReader returns one request per Read, n times, then EOF: a client
// sending request after request on a keep-alive connection.
type repeatReader struct {
	req []byte
	n   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	r.n--
	return copy(p, r.req), nil
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// benchFront drives one front-end connection through b.N requests without
// sockets: the CPU per request of the front end itself.
func benchFront(b *testing.B, s *Scrubber, h http.Handler) {
	f := s.NewFront(h)
	req := []byte("GET /obj/1024/x HTTP/1.1\r\nHost: 127.0.0.1:19110\r\nUser-Agent: flood\r\n\r\n")
	src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.1.1:40000"))
	out := &countWriter{}
	c := f.newConn(&memConn{r: &repeatReader{req: req, n: b.N}, w: out, remote: src})
	f.conns[c] = struct{}{}
	b.ReportAllocs()
	b.ResetTimer()
	c.serve()
	b.StopTimer()
	if out.n == 0 {
		b.Fatal("nothing written")
	}
}

// BenchmarkFrontReject: a refused request on the fast front end: framed,
// answered with pre-built bytes. Goal: 0 allocations.
func BenchmarkFrontReject(b *testing.B) {
	benchFront(b, benchScrubber(b, 1, 1), nopHandler)
}

// BenchmarkFrontAllow: an admitted request on the fast front end (parsed,
// handler writing a 1 KiB body with Content-Length).
func BenchmarkFrontAllow(b *testing.B) {
	body := make([]byte, 1024)
	benchFront(b, benchScrubber(b, 1e7, 1_000_000), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"1024"}
		w.Write(body)
	}))
}

func BenchmarkScanHead(b *testing.B) {
	req := []byte("GET /obj/1024/x HTTP/1.1\r\nHost: 127.0.0.1:19110\r\nUser-Agent: flood\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		scanHead(req)
	}
}
