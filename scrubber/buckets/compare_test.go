package buckets

import (
	"net/netip"
	"runtime"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// TestBytesPerSourceAlternatives measures the designs this package was
// chosen over, with the same method as TestBytesPerSource, so the README's
// comparison can be reproduced: an LRU of *rate.Limiter keyed by netip.Addr
// (golang-lru/v2), and a plain map of *rate.Limiter (unbounded).
func TestBytesPerSourceAlternatives(t *testing.T) {
	const n = 65000
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{127, 3, byte(i >> 8), byte(i)})
	}

	before := heapAlloc()
	c, err := lru.New[netip.Addr, *rate.Limiter](n)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c.Add(addr(i), rate.NewLimiter(100, 50))
	}
	after := heapAlloc()
	runtime.KeepAlive(c)
	lruPer := float64(after-before) / n

	before = heapAlloc()
	m := map[Key]*rate.Limiter{}
	for i := 0; i < n; i++ {
		m[key(uint32(i))] = rate.NewLimiter(100, 50)
	}
	after = heapAlloc()
	runtime.KeepAlive(m)
	mapPer := float64(after-before) / n

	own := bytesPerSource(n)
	t.Logf("bytes per tracked source (%d sources): buckets.Table %.1f, golang-lru/v2 of *rate.Limiter %.1f, map of *rate.Limiter (no cap) %.1f",
		n, own, lruPer, mapPer)
	if own >= lruPer {
		t.Fatalf("the compact table (%.1f B) should be smaller than an LRU of rate.Limiters (%.1f B)", own, lruPer)
	}
}
