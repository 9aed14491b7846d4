package listen

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// wire builds a client's byte stream: the preface, then frames.
type wire struct {
	buf bytes.Buffer
	fr  *http2.Framer
}

func newWire() *wire {
	w := &wire{}
	w.buf.WriteString(http2.ClientPreface)
	w.fr = http2.NewFramer(&w.buf, nil)
	w.fr.WriteSettings()
	return w
}

func headerBlock() []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.test"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return b.Bytes()
}

// scanner is a guardConn without a connection, its deadlines recorded.
func scanner(opts H2Options) (*guardConn, *[]time.Time) {
	opts.defaults(&http.Server{})
	var deadlines []time.Time
	g := &guardConn{opts: &opts, preface: len(http2.ClientPreface), now: func() time.Time { return time.Unix(1000, 0) }}
	g.rd = func(t time.Time) error { deadlines = append(deadlines, t); return nil }
	return g, &deadlines
}

// scanChunks feeds b to a fresh scanner in chunks of size n (all at once
// when n is 0) and returns the scanner and the first error.
func scanChunks(opts H2Options, b []byte, n int) (*guardConn, error) {
	g, _ := scanner(opts)
	if n == 0 {
		n = len(b) + 1
	}
	for len(b) > 0 {
		k := min(n, len(b))
		if err := g.scan(b[:k]); err != nil {
			return g, err
		}
		b = b[k:]
	}
	return g, nil
}

func TestGuardScan(t *testing.T) {
	blk := headerBlock()
	cases := []struct {
		name   string
		build  func(w *wire)
		reason string // "" for no error
	}{
		{"199 rapid resets", func(w *wire) {
			for i := uint32(0); i < 199; i++ {
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true})
				w.fr.WriteRSTStream(1+2*i, http2.ErrCodeCancel)
			}
		}, ""},
		{"200 rapid resets", func(w *wire) {
			for i := uint32(0); i < 200; i++ {
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true})
				w.fr.WriteRSTStream(1+2*i, http2.ErrCodeCancel)
			}
		}, reasonRapidReset},
		{"a browser: 1,000 streams, 300 of them cancelled", func(w *wire) {
			for i := uint32(0); i < 1000; i++ {
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true})
				if i%10 < 3 {
					w.fr.WriteRSTStream(1+2*i, http2.ErrCodeCancel)
				}
			}
		}, ""},
		{"half the streams reset, past the minimum", func(w *wire) {
			for i := uint32(0); i < 400; i++ {
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true})
				if i%2 == 0 {
					w.fr.WriteRSTStream(1+2*i, http2.ErrCodeCancel)
				}
			}
		}, reasonRapidReset},
		{"trailers are not new streams", func(w *wire) {
			// 100 streams, each with trailers, each reset: 100 of 100.
			for i := uint32(0); i < 100; i++ {
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndHeaders: true})
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true})
				w.fr.WriteRSTStream(1+2*i, http2.ErrCodeCancel)
			}
		}, ""},
		{"a header block of exactly 64 KiB", func(w *wire) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
			left := 64<<10 - 9 - len(blk)
			for left > 9+16<<10 {
				w.fr.WriteContinuation(1, false, make([]byte, 16<<10))
				left -= 9 + 16<<10
			}
			w.fr.WriteContinuation(1, true, make([]byte, left-9))
		}, ""},
		{"a header block of 64 KiB + 1", func(w *wire) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
			left := 64<<10 + 1 - 9 - len(blk)
			for left > 9+16<<10 {
				w.fr.WriteContinuation(1, false, make([]byte, 16<<10))
				left -= 9 + 16<<10
			}
			w.fr.WriteContinuation(1, true, make([]byte, left-9))
		}, reasonHeaderBlock},
		{"empty CONTINUATION frames", func(w *wire) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
			for range 10000 {
				w.fr.WriteContinuation(1, false, nil)
			}
		}, reasonHeaderBlock},
		{"many small header blocks", func(w *wire) {
			for i := uint32(0); i < 2000; i++ {
				w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true})
			}
		}, ""},
		{"DATA frames of every size", func(w *wire) {
			w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true})
			for i := range 100 {
				w.fr.WriteData(1, false, make([]byte, i*97))
			}
			w.fr.WriteData(1, true, nil)
		}, ""},
	}
	for _, c := range cases {
		w := newWire()
		c.build(w)
		b := w.buf.Bytes()
		for _, chunk := range []int{0, 1, 7, 4096} {
			g, err := scanChunks(H2Options{}, b, chunk)
			if (err != nil) != (c.reason != "") || g.reason != c.reason {
				t.Errorf("%s (chunks of %d): err %v, reason %q, want %q", c.name, chunk, err, g.reason, c.reason)
			}
		}
	}
}

func TestGuardHeaderDeadline(t *testing.T) {
	blk := headerBlock()
	w := newWire()
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:3], EndStream: true})
	w.fr.WriteContinuation(1, false, blk[3:5])
	g, deadlines := scanner(H2Options{HeaderTimeout: 5 * time.Second})
	if err := g.scan(w.buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if len(*deadlines) != 1 || !(*deadlines)[0].Equal(time.Unix(1005, 0)) {
		t.Fatalf("deadlines after an open block: %v", *deadlines)
	}
	w.buf.Reset()
	w.fr.WriteContinuation(1, true, blk[5:])
	b := w.buf.Bytes()
	if err := g.scan(b[:len(b)-1]); err != nil || len(*deadlines) != 1 {
		t.Fatalf("cleared before the block's last byte: %v", *deadlines)
	}
	if err := g.scan(b[len(b)-1:]); err != nil || len(*deadlines) != 2 || !(*deadlines)[1].IsZero() {
		t.Fatalf("deadlines after END_HEADERS: %v", *deadlines)
	}
}

// FuzzGuardScan: any byte stream scans without a panic, and how it is cut
// into reads changes nothing.
func FuzzGuardScan(f *testing.F) {
	w := newWire()
	blk := headerBlock()
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true})
	w.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk[:2]})
	w.fr.WriteContinuation(3, true, blk[2:])
	f.Add(w.buf.Bytes(), uint8(3))
	f.Add([]byte(http2.ClientPreface+"\x00\x00\x00\x09\x00\x00\x00\x00\x01"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		opts := H2Options{MaxHeaderBlock: 100, MaxResets: 3}
		whole, werr := scanChunks(opts, b, 0)
		cut, cerr := scanChunks(opts, b, int(chunk)+1)
		if (werr != nil) != (cerr != nil) || whole.reason != cut.reason {
			t.Fatalf("whole: %v %q; in chunks of %d: %v %q", werr, whole.reason, int(chunk)+1, cerr, cut.reason)
		}
		if werr == nil && (whole.streams != cut.streams || whole.resets != cut.resets || whole.blockBytes != cut.blockBytes) {
			t.Fatalf("whole %d/%d/%d, chunks %d/%d/%d", whole.streams, whole.resets, whole.blockBytes, cut.streams, cut.resets, cut.blockBytes)
		}
	})
}

// guardedServer serves h behind GuardHTTP2 over TLS on loopback.
func guardedServer(t *testing.T, h http.Handler, idle time.Duration, opts H2Options) (addr string, ca *CA) {
	t.Helper()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := NewCerts([]CertFiles{issue(t, ca, dir, "a", "a.test")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: certs.TLSConfig(), IdleTimeout: idle, MaxHeaderBytes: 32 << 10}
	if err := GuardHTTP2(srv, opts); err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ca
}

// rawH2 is a frame-level client: it sends what it is told and reads until
// the server ends the connection, noting GOAWAY.
type rawH2 struct {
	conn   *tls.Conn
	fr     *http2.Framer
	goaway atomic.Int32 // error code + 1
	pings  chan struct{}
	done   chan struct{}
}

func dialRaw(t *testing.T, addr string, ca *CA) *rawH2 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.test", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawH2{conn: conn, fr: http2.NewFramer(conn, conn), pings: make(chan struct{}, 16), done: make(chan struct{})}
	io.WriteString(conn, http2.ClientPreface)
	c.fr.WriteSettings()
	c.fr.WriteSettingsAck() // for the server's; sent before any header block
	c.fr.WriteWindowUpdate(0, 1<<30)
	go func() {
		defer close(c.done)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				c.goaway.Store(int32(f.ErrCode) + 1)
			case *http2.PingFrame:
				if f.IsAck() {
					c.pings <- struct{}{}
				}
			}
		}
	}()
	return c
}

func (c *rawH2) ended(t *testing.T) bool {
	t.Helper()
	select {
	case <-c.done:
		return true
	case <-time.After(20 * time.Second):
		return false
	}
}

func TestGuardHTTP2Server(t *testing.T) {
	var sawTLS atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawTLS.Store(r.TLS != nil && r.ProtoMajor == 2)
		io.WriteString(w, "ok")
	})
	reg := prometheus.NewRegistry()
	m, err := NewH2Metrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	addr, ca := guardedServer(t, h, 300*time.Millisecond, H2Options{HeaderTimeout: 300 * time.Millisecond, MaxResets: 20, Metrics: m})
	blk := headerBlock()

	t.Run("a normal client", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "a.test"}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		for range 3 {
			req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
			res, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.ProtoMajor != 2 || string(b) != "ok" || !sawTLS.Load() {
				t.Fatalf("%s %q, handler saw TLS h2: %v", res.Proto, b, sawTLS.Load())
			}
		}
	})
	t.Run("rapid reset", func(t *testing.T) {
		c := dialRaw(t, addr, ca)
		sent := 0
		for i := uint32(0); i < 1000; i++ {
			if c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1 + 2*i, BlockFragment: blk, EndStream: true, EndHeaders: true}) != nil ||
				c.fr.WriteRSTStream(1+2*i, http2.ErrCodeCancel) != nil {
				break
			}
			sent++
			if sent%10 == 0 {
				c.fr.WritePing(false, [8]byte{})
				select {
				case <-c.pings:
					continue
				case <-c.done:
				}
				break
			}
		}
		if !c.ended(t) || sent > 20 {
			t.Errorf("connection open after %d resets (limit 20)", sent)
		}
	})
	t.Run("empty CONTINUATION frames", func(t *testing.T) {
		c := dialRaw(t, addr, ca)
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
		for range 20000 {
			if c.fr.WriteContinuation(1, false, nil) != nil {
				break
			}
		}
		if !c.ended(t) {
			t.Error("connection open after 180 KB of empty CONTINUATION frames")
		}
	})
	t.Run("a header block that stalls", func(t *testing.T) {
		c := dialRaw(t, addr, ca)
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:2], EndStream: true})
		if !c.ended(t) {
			t.Error("connection open 20s after a stalled header block")
		}
	})
	t.Run("idle", func(t *testing.T) {
		c := dialRaw(t, addr, ca)
		if !c.ended(t) {
			t.Fatal("idle connection open after 20s")
		}
		if g := c.goaway.Load(); g != int32(http2.ErrCodeNo)+1 {
			t.Errorf("idle connection ended with GOAWAY code %d, want NO_ERROR", g-1)
		}
	})
	for reason, want := range map[string]float64{reasonRapidReset: 1, reasonHeaderBlock: 1, reasonHeaderTimeout: 1} {
		if got := testutil.ToFloat64(m.closed.WithLabelValues(reason)); got != want {
			t.Errorf("metric %s = %v, want %v", reason, got, want)
		}
	}
	n, err := testutil.GatherAndCount(reg, "verge_edge_h2_guard_closed_connections_total")
	if err != nil || n != 3 {
		t.Errorf("registered series: %d, %v", n, err)
	}
}
