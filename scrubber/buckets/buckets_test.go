package buckets

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

const sec = int64(time.Second)

func key(i uint32) Key {
	var k Key
	k[10], k[11] = 0xff, 0xff // IPv4-mapped, like the scrubber's keys
	binary.BigEndian.PutUint32(k[12:], i)
	return k
}

// TestMatchesXRate drives a bucket and x/time/rate's Limiter with the same
// random request times and checks every decision is the same.
func TestMatchesXRate(t *testing.T) {
	cases := []struct {
		rate  float64
		burst int
	}{{100, 50}, {100, 1}, {10, 5}, {1000, 200}, {4, 2}, {1, 1}, {0.5, 3}}
	for _, c := range cases {
		rng := rand.New(rand.NewPCG(uint64(c.rate*1000), uint64(c.burst)))
		tb := New(16, NewParams(c.rate, c.burst, 0))
		lim := rate.NewLimiter(rate.Limit(c.rate), c.burst)
		base := time.Unix(1_700_000_000, 0)
		iv := int64(1e9 / c.rate)
		now := int64(0)
		allowed := 0
		for i := 0; i < 20000; i++ {
			// Mostly faster than the rate, sometimes idle for a while.
			switch rng.IntN(100) {
			case 0:
				now += rng.Int64N(int64(c.burst+2) * iv)
			default:
				now += rng.Int64N(iv * 2 / 3)
			}
			want := lim.AllowN(base.Add(time.Duration(now)), 1)
			got := tb.Take(key(1), now) == Allowed
			if got != want {
				t.Fatalf("rate %v burst %d: request %d at %dns: table %v, x/time/rate %v", c.rate, c.burst, i, now, got, want)
			}
			if got {
				allowed++
			}
		}
		if allowed == 0 || allowed == 20000 {
			t.Fatalf("rate %v burst %d: degenerate run, %d allowed", c.rate, c.burst, allowed)
		}
	}
}

func TestTokenBucketExactlyRatePlusBurst(t *testing.T) {
	tb := New(8, NewParams(100, 50, 0))
	// A source that floods for 10 s at 10k req/s gets 100/s + 50.
	passed := 0
	for now := int64(0); now <= 10*sec; now += 100_000 {
		if tb.Take(key(7), now) == Allowed {
			passed++
		}
	}
	if want := 100*10 + 50; passed != want {
		t.Fatalf("passed %d, want rate*10s + burst = %d", passed, want)
	}
}

func TestPenaltyBox(t *testing.T) {
	const penalty = 30 * sec
	tb := New(8, NewParams(100, 50, penalty))
	k := key(9)
	now := int64(0)
	for i := 0; i < 50; i++ { // the burst passes
		if v := tb.Take(k, now); v != Allowed {
			t.Fatalf("burst request %d: %v", i, v)
		}
	}
	if v := tb.Take(k, now); v != Boxed {
		t.Fatalf("first excess request: %v, want boxed", v)
	}
	if !tb.InBox(k, now) {
		t.Fatal("InBox false right after boxing")
	}
	// Flooding at 1000/s for 2 minutes: nothing passes, the box keeps
	// being extended.
	for ; now < 120*sec; now += sec / 1000 {
		if v := tb.Take(k, now); v != Boxed {
			t.Fatalf("flooding source at %v: %v", time.Duration(now), v)
		}
	}
	// It slows down to exactly its rate: still boxed until penalty after
	// the last excess request, then it gets its rate (no fresh burst).
	last := now - sec/1000
	for now += sec / 100; now < last+penalty; now += sec / 100 {
		if v := tb.Take(k, now); v != Boxed {
			t.Fatalf("at rate inside the penalty (%v after the last excess): %v", time.Duration(now-last), v)
		}
	}
	for i := 0; i < 500; i, now = i+1, now+sec/100 {
		if v := tb.Take(k, now); v != Allowed {
			t.Fatalf("at rate after the penalty, request %d: %v", i, v)
		}
	}
	// Other sources are unaffected.
	if v := tb.Take(key(10), now); v != Allowed {
		t.Fatalf("another source: %v", v)
	}
	// Switching back to a token bucket forgets the box.
	tb.SetParams(NewParams(100, 50, 0))
	for now2 := now; now2 < now+sec; now2 += sec / 1000 {
		tb.Take(k, now2)
	}
	if tb.InBox(k, now+sec) {
		t.Fatal("InBox true in token-bucket mode")
	}
	if v := tb.Take(k, now+sec); v != Limited {
		t.Fatalf("token bucket after a flood: %v, want limited", v)
	}
}

func TestPenaltyBoxReleasesAfterPenalty(t *testing.T) {
	tb := New(8, NewParams(10, 2, 5*sec))
	k := key(1)
	tb.Take(k, 0)
	tb.Take(k, 0)
	if v := tb.Take(k, 0); v != Boxed {
		t.Fatalf("third request: %v", v)
	}
	// Silent for exactly the penalty: still boxed at the last nanosecond.
	if tb.InBox(k, 5*sec) || !tb.InBox(k, 5*sec-1) {
		t.Fatal("box should end exactly penalty after the excess")
	}
	if v := tb.Take(k, 5*sec); v != Allowed {
		t.Fatalf("after the penalty: %v", v)
	}
}

func TestLRUEviction(t *testing.T) {
	tb := New(4, NewParams(1, 1, 0)) // one shard of 4
	for i := uint32(1); i <= 4; i++ {
		if v := tb.Take(key(i), 0); v != Allowed {
			t.Fatal(v)
		}
	}
	// Touch 1 so 2 is the least recently used, then add a fifth source.
	if v := tb.Take(key(1), 0); v != Limited {
		t.Fatal("source 1 should be empty", v)
	}
	tb.Take(key(5), 0)
	if tb.Len() != 4 || tb.Evictions() != 1 {
		t.Fatalf("len %d evictions %d", tb.Len(), tb.Evictions())
	}
	// 2 was forgotten: it comes back with a full bucket. 1, 3, 4 were kept.
	for _, i := range []uint32{1, 3, 4} {
		if v := tb.Take(key(i), 0); v != Limited {
			t.Fatalf("source %d: %v, want limited (kept)", i, v)
		}
	}
	if v := tb.Take(key(2), 0); v != Allowed {
		t.Fatalf("evicted source 2: %v, want a fresh bucket", v)
	}
}

// TestAgainstModel runs random operations on small tables (many collisions,
// wrap-around probing, constant eviction) and checks membership and LRU
// order against a plain map and list.
func TestAgainstModel(t *testing.T) {
	for _, capacity := range []int{1, 2, 3, 7, 64, 600, 5000} {
		rng := rand.New(rand.NewPCG(uint64(capacity), 42))
		tb := New(capacity, NewParams(1, 1, 0))
		per := int(tb.shards[0].cap)
		// model: per shard, keys in LRU order (most recent last)
		model := make([][]Key, len(tb.shards))
		universe := uint32(capacity*3 + 5)
		for op := 0; op < 30000; op++ {
			k := key(rng.Uint32N(universe))
			si := 0
			if tb.shardBits > 0 {
				si = int(tb.hash(&k) >> (64 - tb.shardBits))
			}
			m := model[si]
			found := -1
			for i, x := range m {
				if x == k {
					found = i
				}
			}
			if found >= 0 {
				m = append(m[:found], m[found+1:]...)
			} else if len(m) == per {
				m = m[1:]
			}
			model[si] = append(m, k)
			tb.Take(k, 0)
			if op%997 == 0 || capacity < 10 {
				checkModel(t, tb, model)
			}
		}
		checkModel(t, tb, model)
	}
}

func checkModel(t *testing.T, tb *Table, model [][]Key) {
	t.Helper()
	for si := range tb.shards {
		s := &tb.shards[si]
		if int(s.n) != len(model[si]) {
			t.Fatalf("shard %d holds %d, model %d", si, s.n, len(model[si]))
		}
		for _, k := range model[si] {
			if s.find(&k, uint32(tb.hash(&k))) == 0 {
				t.Fatalf("shard %d lost key %v", si, k)
			}
		}
		// LRU order from the tail (least recent) must match the model.
		i, pos := s.tail, 0
		for i != 0 {
			if s.at(i).key != model[si][pos] {
				t.Fatalf("shard %d LRU position %d differs", si, pos)
			}
			i, pos = s.at(i).prev, pos+1
		}
		if pos != len(model[si]) {
			t.Fatalf("shard %d LRU list has %d entries, model %d", si, pos, len(model[si]))
		}
		used := 0
		for _, x := range s.index {
			if x != 0 {
				used++
			}
		}
		if used != int(s.n) {
			t.Fatalf("shard %d index has %d used slots for %d entries", si, used, s.n)
		}
	}
}

func TestConcurrent(t *testing.T) {
	tb := New(1000, NewParams(100, 10, sec))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				k := key(uint32(i*7+g) % 3000)
				tb.Take(k, int64(i)*1000)
				if i%100 == 0 {
					tb.InBox(k, int64(i)*1000)
					tb.Len()
				}
				if i == 10000 && g == 0 {
					tb.SetParams(NewParams(50, 5, 0))
				}
			}
		}()
	}
	wg.Wait()
	if n := tb.Len(); n > tb.Capacity() || n < 900 {
		t.Fatalf("len %d, capacity %d", n, tb.Capacity())
	}
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRotationStaysWithinCap rotates 65,000 sources (ten times over)
// through a table capped at 16,384: the table's memory must not grow once it
// is full.
func TestRotationStaysWithinCap(t *testing.T) {
	const capacity, sources = 16384, 65000
	tb := New(capacity, NewParams(100, 50, 0))
	for i := uint32(0); i < capacity; i++ {
		tb.Take(key(i), 0)
	}
	full := heapAlloc()
	chunks := 0
	for i := range tb.shards {
		chunks += len(tb.shards[i].chunks)
	}
	for round := int64(0); round < 10; round++ {
		for i := uint32(0); i < sources; i++ {
			tb.Take(key(i+1_000_000*uint32(round)), round*sec)
		}
	}
	after := heapAlloc()
	if tb.Len() > capacity {
		t.Fatalf("table holds %d sources, cap %d", tb.Len(), capacity)
	}
	chunks2 := 0
	for i := range tb.shards {
		chunks2 += len(tb.shards[i].chunks)
	}
	if chunks2 != chunks {
		t.Fatalf("slab grew from %d to %d chunks", chunks, chunks2)
	}
	// Allow GC bookkeeping noise; the table itself allocates nothing once full.
	if after > full+64<<10 {
		t.Fatalf("heap grew by %d bytes while rotating %d sources through a full table", after-full, 10*sources)
	}
	t.Logf("rotation of %d sources x10 through cap %d: heap %d -> %d bytes, %d evictions",
		sources, capacity, full, after, tb.Evictions())
}

// bytesPerSource measures the heap held by a table tracking n sources.
func bytesPerSource(n int) float64 {
	before := heapAlloc()
	tb := New(n, NewParams(100, 50, 0))
	for i := 0; i < n; i++ {
		tb.Take(key(uint32(i)), 0)
	}
	after := heapAlloc()
	runtime.KeepAlive(tb)
	return float64(after-before) / float64(n)
}

// TestBytesPerSource checks the README's figure: under 150 bytes per
// tracked source (nginx limit_req about 140, HAProxy about 215), measured
// with runtime.MemStats around filling a table of 65,000 sources.
func TestBytesPerSource(t *testing.T) {
	b := bytesPerSource(65000)
	t.Logf("buckets.Table: %.1f bytes per tracked source (65000 sources)", b)
	if b >= 150 {
		t.Fatalf("%.1f bytes per source, goal < 150", b)
	}
}

func BenchmarkBytesPerSource(b *testing.B) {
	var per float64
	for i := 0; i < b.N; i++ {
		per = bytesPerSource(65000)
	}
	b.ReportMetric(per, "bytes/source")
}

func BenchmarkTakeHit(b *testing.B) {
	tb := New(100000, NewParams(100, 50, 0))
	k := key(1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tb.Take(k, int64(i)*1000)
	}
}

func BenchmarkTakeRotate(b *testing.B) {
	tb := New(16384, NewParams(100, 50, 0))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tb.Take(key(uint32(i)%65000), int64(i))
	}
}

func BenchmarkTakeParallel(b *testing.B) {
	tb := New(100000, NewParams(100, 50, 0))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.Uint32N(50)
		n := int64(0)
		for pb.Next() {
			tb.Take(key(i), n)
			i = (i + 1) % 50
			n += 1000
		}
	})
}
