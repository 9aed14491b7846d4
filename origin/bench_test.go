package origin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a reusable ResponseWriter that drops the body, so the
// benchmark measures the handler rather than a network stack.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header                 { return d.h }
func (d *discardWriter) WriteHeader(code int)                { d.code = code }
func (d *discardWriter) Write(b []byte) (int, error)         { return len(b), nil }
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

func benchOrigin(b *testing.B) *testOrigin {
	o := newTestOrigin(b, testRules, Options{})
	o.write(b, "static/1k.bin", content(1024), lm)
	return o
}

// BenchmarkServe1KiB is a GET of a 1 KiB file through the handler: path
// checks, rule match, open, fstat, ETag cache hit, headers and the body.
func BenchmarkServe1KiB(b *testing.B) {
	o := benchOrigin(b)
	req := httptest.NewRequest("GET", "/static/1k.bin", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		clear(w.h)
		o.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkRevalidate1KiB is a conditional GET answered 304.
func BenchmarkRevalidate1KiB(b *testing.B) {
	o := benchOrigin(b)
	req := httptest.NewRequest("GET", "/static/1k.bin", nil)
	w := &discardWriter{h: http.Header{}}
	o.ServeHTTP(w, req)
	req.Header.Set("If-None-Match", w.h.Get("ETag"))
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		o.ServeHTTP(w, req)
		if w.code != 304 {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkServe1KiBLoopback is the same GET through a real server and
// client on loopback (keep-alive), allocations of both included.
func BenchmarkServe1KiBLoopback(b *testing.B) {
	o := benchOrigin(b)
	client := o.ts.Client()
	url := o.url + "/static/1k.bin"
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		res, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}
