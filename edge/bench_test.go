package edge

import (
	"bytes"
	"fmt"
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
