package storage

import (
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"testing"
)

// sink is a loopback TCP connection whose other end discards everything,
// so a benchmark pays what serving a client costs: a copy into the socket
// for RAM bodies, sendfile for disk bodies.
func sink(b *testing.B) *net.TCPConn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		ln.Close()
		<-done
	})
	return c.(*net.TCPConn)
}

// BenchmarkHit serves one stored object per op to a loopback connection:
// from RAM (a write of Body) and from disk (Get reads the header block, then
// OpenBody and io.Copy of a LimitReader, which the kernel does with
// sendfile; the page cache is warm). Promotion is off so every disk hit
// stays a disk hit.
func BenchmarkHit(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, tier := range []string{"ram", "disk"} {
			b.Run(fmt.Sprintf("%s/%dKiB", tier, size>>10), func(b *testing.B) {
				cfg := testConfig(b.TempDir())
				cfg.RAMBytes = 64 << 20
				tr := open(b, cfg, Options{})
				tr.cfg.Disk.PromoteAfter = math.MaxInt
				o := response("bench", size)
				if tier == "ram" {
					tr.Put(o)
				} else {
					tmp, err := tr.disk.writeTemp(o)
					if err != nil {
						b.Fatal(err)
					}
					if err := tr.disk.install(tmp, nil); err != nil {
						b.Fatal(err)
					}
				}
				conn := sink(b)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					got, ok := tr.Get("bench")
					if !ok {
						b.Fatal("miss")
					}
					if got.Body != nil {
						if _, err := conn.Write(got.Body); err != nil {
							b.Fatal(err)
						}
						continue
					}
					f, n, err := got.OpenBody()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(conn, io.LimitReader(f, n)); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
			})
		}
	}
}

// BenchmarkRAMGetParallel is concurrent hits on 10,000 keys from 16
// goroutines per CPU (an edge serves many connections at once): with one
// shard every hit takes the same lock and goroutines queue on it; with 32
// they rarely meet.
func BenchmarkRAMGetParallel(b *testing.B) {
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("example.com/objects/%06d", i)
	}
	for _, shards := range []int{1, 32} {
		for _, p := range []Policy{PolicyLRU, PolicyTinyLFU} {
			b.Run(fmt.Sprintf("%s/shards=%d", p, shards), func(b *testing.B) {
				r, _ := NewRAMPolicy(1<<30, shards, p)
				for _, k := range keys {
					r.Put(&Object{Key: k, Status: 200, Body: make([]byte, 100)})
				}
				var next atomic.Uint64
				b.ReportAllocs()
				b.SetParallelism(16)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := next.Add(7919)
					for pb.Next() {
						i++
						if _, ok := r.Get(keys[i%uint64(len(keys))]); !ok {
							b.Fatal("miss")
						}
					}
				})
			})
		}
	}
}

// BenchmarkRAMPut is a put that evicts (the cache is full).
func BenchmarkRAMPut(b *testing.B) {
	for _, p := range Policies {
		b.Run(string(p), func(b *testing.B) {
			r, _ := NewRAMPolicy(64<<20, 32, p)
			objs := make([]*Object, 1<<16)
			for i := range objs {
				objs[i] = &Object{Key: fmt.Sprintf("example.com/objects/%06d", i), Status: 200, Body: make([]byte, 4096)}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Put(objs[i&(len(objs)-1)])
				i++
			}
		})
	}
}
