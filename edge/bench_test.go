package edge

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vergecdn/verge/edge/storage"
)

// discardWriter is a ResponseWriter that keeps its header map between
// requests, so a benchmark measures the engine, not the recorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// BenchmarkHit measures a fresh hit through ServeHTTP for several object
// sizes: the engine's own cost per request, without the network.
func BenchmarkHit(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Node.Name = "bench"
			prop := DefaultProperty()
			prop.Name, prop.Hosts, prop.Origin = "b", []string{"bench.example"}, "http://127.0.0.1:1"
			cfg.Properties = []Property{prop}
			now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			e, err := New(cfg, Options{Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			h := http.Header{
				"Content-Type":  {"application/octet-stream"},
				"Cache-Control": {"max-age=3600"},
				"Date":          {now.Format(http.TimeFormat)},
				"Etag":          {`"abc"`},
				"Via":           {"1.1 bench"},
			}
			obj := &storage.Object{
				Key: "bench.example/obj", Status: 200, Header: withContentLength(h, int64(size)),
				Body: bytes.Repeat([]byte("x"), size), ResponseTime: now, Lifetime: time.Hour,
			}
			obj.HitStatus = e.status.hitFor(obj.Header)
			e.store.Put(obj)
			req, _ := http.NewRequest("GET", "http://bench.example/obj", nil)
			w := &discardWriter{h: make(http.Header, 16)}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				w.n = 0
				e.ServeHTTP(w, req)
			}
			if w.code != 200 || w.n != size {
				b.Fatalf("served %d with %d bytes", w.code, w.n)
			}
		})
	}
}

// BenchmarkMiss measures a miss through ServeHTTP, fill and store included,
// with an in-memory upstream answering 1 KiB: the engine's own cost per
// miss, without the network or the HTTP client.
func BenchmarkMiss(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Node.Name = "bench"
	prop := DefaultProperty()
	prop.Name, prop.Hosts, prop.Origin = "b", []string{"bench.example"}, "http://127.0.0.1:1"
	cfg.Properties = []Property{prop}
	cfg.Cache.RAMBytes = 64 << 20
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	body := bytes.Repeat([]byte("x"), 1<<10)
	date := now.Format(http.TimeFormat)
	upstream := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, ContentLength: int64(len(body)), Request: r,
			Body: io.NopCloser(bytes.NewReader(body)),
			Header: http.Header{"Content-Type": {"application/octet-stream"}, "Cache-Control": {"max-age=3600"},
				"Date": {date}, "Content-Length": {"1024"}}}, nil
	})
	e, err := New(cfg, Options{Now: func() time.Time { return now }, Transport: upstream})
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*http.Request, 4096)
	for i := range reqs {
		reqs[i], _ = http.NewRequest("GET", fmt.Sprintf("http://bench.example/obj/%d", i), nil)
		reqs[i].RemoteAddr = "127.0.0.1:40000"
	}
	w := &discardWriter{h: make(http.Header, 16)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(reqs) == 0 {
			b.StopTimer()
			e.Purge(Purge{Kind: PurgeAll}) // every request a miss again
			b.StartTimer()
		}
		clear(w.h)
		w.n = 0
		e.ServeHTTP(w, reqs[i%len(reqs)])
	}
	if w.code != 200 || w.n != len(body) {
		b.Fatalf("served %d with %d bytes", w.code, w.n)
	}
}
