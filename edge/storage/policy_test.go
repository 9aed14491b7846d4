package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"

	arc "github.com/hashicorp/golang-lru/arc/v2"
	lru "github.com/hashicorp/golang-lru/v2"
)

// With every object the same size, the byte-counted 2Q, ARC and LRU must make
// exactly the decisions golang-lru's count-bounded caches make.
func TestPoliciesMatchGolangLRU(t *testing.T) {
	const n, requests, capacity = 5000, 100000, 250
	tr := zipfTrace(n, requests, 0.9, true)
	type libCache interface {
		Get(uint64) (int, bool)
		Add(uint64, int)
	}
	lib2q, _ := lru.New2Q[uint64, int](capacity)
	libARC, _ := arc.NewARC[uint64, int](capacity)
	libLRU, _ := lru.New[uint64, int](capacity)
	cases := []struct {
		policy Policy
		lib    libCache
	}{
		{Policy2Q, lib2q},
		{PolicyARC, libARC},
		{PolicyLRU, lruAdapter{libLRU}},
	}
	for _, c := range cases {
		t.Run(string(c.policy), func(t *testing.T) {
			p, err := newPolicy(c.policy, capacity)
			if err != nil {
				t.Fatal(err)
			}
			var ev []entry
			for i, id := range tr.reqs {
				h := uint64(id)
				_, mine := p.get(h)
				_, theirs := c.lib.Get(h)
				if mine != theirs {
					t.Fatalf("request %d (key %d): hit=%v, golang-lru hit=%v", i, h, mine, theirs)
				}
				if !mine {
					ev, _ = p.add(h, entry{size: 1}, ev[:0])
					c.lib.Add(h, 1)
				}
				if p.bytes() > capacity {
					t.Fatalf("request %d: %d bytes over budget %d", i, p.bytes(), capacity)
				}
			}
		})
	}
}

type lruAdapter struct{ c *lru.Cache[uint64, int] }

func (a lruAdapter) Get(k uint64) (int, bool) { return a.c.Get(k) }
func (a lruAdapter) Add(k uint64, v int)      { a.c.Add(k, v) }

// Random operations with varied sizes keep every policy within its budget,
// with its byte count equal to the sum of what it holds.
func TestPolicyAccounting(t *testing.T) {
	for _, name := range Policies {
		t.Run(string(name), func(t *testing.T) {
			const budget = 1 << 20
			p, err := newPolicy(name, budget)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			held := map[uint64]int64{}
			var ev []entry
			for i := range 50000 {
				h := uint64(r.IntN(2000))
				switch op := r.IntN(10); {
				case op < 6:
					if e, ok := p.get(h); ok && e.size != held[h] {
						t.Fatalf("get %d: size %d, stored %d", h, e.size, held[h])
					}
				case op < 9:
					size := int64(1 + r.IntN(64<<10))
					o := &Object{Key: fmt.Sprint(h)}
					var stored bool
					ev, stored = p.add(h, entry{o: o, size: size}, ev[:0])
					for _, e := range ev {
						var k uint64
						fmt.Sscan(e.o.Key, &k)
						if k == h && e.o != o {
							t.Fatalf("op %d: evicted the replaced object of %d", i, h)
						}
						delete(held, k)
					}
					if stored {
						held[h] = size
					}
				default:
					if _, ok := p.remove(h); ok != (held[h] != 0) {
						t.Fatalf("remove %d: %v, held %v", h, ok, held[h] != 0)
					}
					delete(held, h)
				}
				var sum int64
				for _, e := range p.values(nil) {
					sum += e.size
				}
				if sum != p.bytes() || p.bytes() > budget || len(p.values(nil)) != p.len() {
					t.Fatalf("op %d: bytes()=%d sum=%d len()=%d values=%d budget=%d", i, p.bytes(), sum, p.len(), len(p.values(nil)), budget)
				}
				if len(held) != p.len() {
					t.Fatalf("op %d: policy holds %d, test expects %d", i, p.len(), len(held))
				}
			}
		})
	}
}

// A one-off scan of cold objects must not flush tinylfu's hot set: the hit
// ratio right after the scan stays near the ratio before it, while LRU's
// collapses.
func TestTinyLFUScanResistance(t *testing.T) {
	const n, requests = 20000, 400000
	tr := zipfTrace(n, requests, 1.0, true)
	sizes := simSizes(tr.objects, true)
	budget := int64(n / 10)
	for _, c := range []struct {
		name    string
		maxLoss float64 // points lost after the scan compared with no scan
		resists bool
	}{{"lru", 0, false}, {"tinylfu", 2, true}} {
		with := simulate(tr, c.name, sizes, budget).afterScan
		plain := *tr
		plain.reqs = zipfTrace(n, requests, 1.0, false).reqs
		without := simulate(&plain, c.name, sizes, budget).afterScan
		loss := 100 * (without - with)
		t.Logf("%s: after-scan hit ratio %.1f%%, same window without the scan %.1f%% (loss %.1f points)", c.name, 100*with, 100*without, loss)
		if c.resists && loss > c.maxLoss {
			t.Errorf("%s lost %.1f points to the scan, more than %.0f", c.name, loss, c.maxLoss)
		}
		if !c.resists && loss < 5 {
			t.Errorf("the scan cost %s only %.1f points: the trace does not test scan resistance", c.name, loss)
		}
	}
}

// The goals, on a small trace (the full table is TestHitRatioTable -sim.full):
// tinylfu well above LRU on Zipf 1.0 at 1%, and within a point of LRU on the
// recency trace where LRU is optimal.
func TestTinyLFUGoalsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("trace simulation")
	}
	const n, requests = 50000, 500000
	zipf := zipfTrace(n, requests, 1.0, false)
	sizes := simSizes(zipf.objects, true)
	lruZ := simulate(zipf, "lru", sizes, n/100).reqHit
	tlfuZ := simulate(zipf, "tinylfu", sizes, n/100).reqHit
	t.Logf("zipf 1.0 at 1%%: lru %.1f%% tinylfu %.1f%%", 100*lruZ, 100*tlfuZ)
	if tlfuZ < lruZ+0.07 {
		t.Errorf("tinylfu %.1f%% is not 7 points above lru %.1f%%", 100*tlfuZ, 100*lruZ)
	}
	rec := recencyTrace(n, requests)
	for _, pct := range []int64{1, 10} {
		l := simulate(rec, "lru", sizes, n*pct/100).reqHit
		tl := simulate(rec, "tinylfu", sizes, n*pct/100).reqHit
		t.Logf("recency at %d%%: lru %.1f%% tinylfu %.1f%%", pct, 100*l, 100*tl)
		if tl < l-0.01 {
			t.Errorf("recency at %d%%: tinylfu %.1f%% is more than a point below lru %.1f%%", pct, 100*tl, 100*l)
		}
	}
}

func TestFrequencySketch(t *testing.T) {
	f := newFrequency(100)
	hot, cold := uint64(12345), uint64(999)
	if f.estimate(hot) != 0 {
		t.Fatal("estimate before any access")
	}
	f.increment(hot) // the doorkeeper takes the first access
	if got := f.estimate(hot); got != 1 {
		t.Fatalf("after one access: %d, want 1", got)
	}
	for range 5 {
		f.increment(hot)
	}
	f.increment(cold)
	if got := f.estimate(hot); got != 6 {
		t.Fatalf("after six accesses: %d, want 6", got)
	}
	if f.estimate(cold) != 1 {
		t.Fatalf("cold: %d", f.estimate(cold))
	}
	// growing keeps estimates
	f.fit(5000)
	if got := f.estimate(hot); got != 6 {
		t.Fatalf("after growing: %d, want 6", got)
	}
	// counters saturate at 15 (+1 for the doorkeeper)
	for range 100 {
		f.increment(hot)
	}
	if got := f.estimate(hot); got != 16 {
		t.Fatalf("saturated: %d, want 16", got)
	}
	// aging halves counts and clears the doorkeeper
	f.age()
	if got := f.estimate(hot); got != 0 {
		t.Fatalf("after aging, before a new access: %d (doorkeeper cleared), want 0", got)
	}
	f.increment(hot)
	if got := f.estimate(hot); got != 8 {
		t.Fatalf("after aging: %d, want 7+1", got)
	}
}

func TestGhostFilter(t *testing.T) {
	g := newGhostFilter(100)
	for i := range uint64(100) {
		g.add(i)
	}
	for i := range uint64(100) {
		if !g.has(i) {
			t.Fatalf("forgot %d", i)
		}
	}
	// 100 more keys rotate the filters: the first 100 are still in the old one
	for i := range uint64(100) {
		g.add(1000 + i)
	}
	if !g.has(5) || !g.has(1005) {
		t.Fatal("forgot keys within two generations")
	}
	// and 100 more forget them
	for i := range uint64(100) {
		g.add(2000 + i)
	}
	fp := 0
	for i := range uint64(100) {
		if g.has(i) {
			fp++
		}
	}
	if fp > 5 {
		t.Fatalf("%d of 100 expired keys still reported", fp)
	}
}
