package scrubber

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchNewConns: each iteration is one request on a new connection, closed
// with a reset by the client (as the flood harness's rotation does),
// through serve (a front end) and the proxy to a local upstream.
func benchNewConns(b *testing.B, fast bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		w.Write(make([]byte, 1024))
	}))
	defer up.Close()
	s := benchScrubber(b, 100, 50)
	proxy := s.Proxy(upstreamURL(b, up), &http.Transport{MaxIdleConnsPerHost: 128})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if fast {
		f := s.NewFront(proxy)
		go f.Serve(ln)
		defer f.Close()
	} else {
		srv := s.HTTPServer(s.Wrap(proxy), nil)
		go srv.Serve(s.Listener(ln))
		defer srv.Close()
	}
	addr := ln.Addr().String()
	req := []byte("GET /obj/1024/x HTTP/1.1\r\nHost: a\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}

func BenchmarkNewConnFront(b *testing.B)  { benchNewConns(b, true) }
func BenchmarkNewConnStdlib(b *testing.B) { benchNewConns(b, false) }
