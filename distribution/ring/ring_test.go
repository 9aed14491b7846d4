package ring

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustNew(t testing.TB, opts Options, nodes ...Node) *Ring {
	t.Helper()
	r, err := New(opts, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func names(ns ...string) []Node {
	out := make([]Node, len(ns))
	for i, n := range ns {
		out[i] = Node{Name: n}
	}
	return out
}

func key(i int) string { return "www.example.com/assets/" + strconv.Itoa(i) + ".js" }

func TestEmpty(t *testing.T) {
	r := mustNew(t, Options{})
	if r.Get("k") != "" || r.Owner("k") != -1 || r.GetN("k", 3) != nil || r.Len() != 0 || r.Points() != 0 {
		t.Fatal("empty ring answered")
	}
	if r.Find("k", func(int) bool { return true }) != -1 {
		t.Fatal("Find on empty ring")
	}
	if got := r.AppendN(nil, "k", 2); len(got) != 0 {
		t.Fatalf("AppendN = %v", got)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name  string
		opts  Options
		nodes []Node
		want  string
	}{
		{"no name", Options{}, []Node{{Name: ""}}, "has no name"},
		{"duplicate", Options{}, names("a", "b", "a"), `duplicate node "a"`},
		{"negative weight", Options{}, []Node{{Name: "a", Weight: -1}}, "negative weight"},
		{"too many points", Options{}, []Node{{Name: "a", Weight: MaxPoints}}, "more than"},
		{"too many points in total", Options{VirtualNodes: MaxPoints / 2}, names("a", "b", "c"), "more than"},
		{"negative vnodes", Options{VirtualNodes: -1}, names("a"), "virtual nodes"},
		{"too many probes", Options{Probes: MaxProbes + 1}, names("a"), "probes"},
		{"negative probes", Options{Probes: -2}, names("a"), "probes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts, tc.nodes...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPointsFollowWeight(t *testing.T) {
	r := mustNew(t, Options{VirtualNodes: 10}, Node{Name: "a"}, Node{Name: "b", Weight: 3})
	if r.Points() != 40 {
		t.Fatalf("points = %d, want 10 + 30", r.Points())
	}
	if r.Node(0).Weight != 1 || r.Nodes()[1].Weight != 3 {
		t.Fatalf("nodes = %v", r.Nodes())
	}
}

// TestStable pins the hash and a few placements. Every node of a fleet must
// place keys the same way, across versions too: a change here reshuffles
// every hub's cache and must be deliberate.
func TestStable(t *testing.T) {
	if got := String(""); got != 0xf52a15e9a9b5e89b {
		t.Errorf(`String("") = %#x`, got)
	}
	if got := String("www.example.com/"); got != 0xe89aa5b2b80c7efd {
		t.Errorf(`String("www.example.com/") = %#x`, got)
	}
	r := mustNew(t, Options{}, names("hub-a", "hub-b", "hub-c")...)
	// Node order does not matter, only names.
	r2 := mustNew(t, Options{}, names("hub-c", "hub-a", "hub-b")...)
	for i := 0; i < 1000; i++ {
		if r.Get(key(i)) != r2.Get(key(i)) || !slices.Equal(r.GetN(key(i), 3), r2.GetN(key(i), 3)) {
			t.Fatalf("key %q: placement depends on node order", key(i))
		}
	}
	want := map[string]string{}
	for i := 0; i < 6; i++ {
		want[key(i)] = r.Get(key(i))
	}
	pinned := map[string]string{
		key(0): "hub-b", key(1): "hub-b", key(2): "hub-c",
		key(3): "hub-c", key(4): "hub-c", key(5): "hub-b",
	}
	for k, v := range pinned {
		if want[k] != v {
			t.Errorf("Get(%q) = %q, pinned %q", k, want[k], v)
		}
	}
}

// TestHashIsFNV1a checks the first stage of String against the standard
// library's FNV-1a.
func TestHashIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "a", "www.example.com/index.html", "\x00\xff"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := String(s), mix(h.Sum64()); got != want {
			t.Errorf("String(%q) = %#x, want mix(fnv64a) = %#x", s, got, want)
		}
	}
}

// shares counts keys per node over nkeys keys.
func shares(r *Ring, nkeys int) []int {
	counts := make([]int, r.Len())
	for i := 0; i < nkeys; i++ {
		counts[r.Owner(key(i))]++
	}
	return counts
}

func peakToMean(counts []int) float64 {
	total, peak := 0, 0
	for _, c := range counts {
		total += c
		peak = max(peak, c)
	}
	return float64(peak) / (float64(total) / float64(len(counts)))
}

// TestBalance: with 3 hubs and 1M keys the busiest hub holds at most 10% more
// than the mean.
func TestBalance(t *testing.T) {
	const nkeys = 1_000_000
	r := mustNew(t, Options{}, names("hub-1", "hub-2", "hub-3")...)
	counts := shares(r, nkeys)
	ratio := peakToMean(counts)
	classic := peakToMean(shares(mustNew(t, Options{Probes: 1}, names("hub-1", "hub-2", "hub-3")...), nkeys))
	t.Logf("3 hubs, 1M keys: %v, busiest/mean = %.4f (classic one-probe ring: %.4f)", counts, ratio, classic)
	if ratio > 1.10 {
		t.Fatalf("busiest hub holds %.1f%% more than the mean", (ratio-1)*100)
	}
}

// TestBalanceAnyNames checks the bound is not luck of the names: random sets
// of 3 names, with the default probes and, for contrast, the classic ring.
func TestBalanceAnyNames(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const sets, nkeys = 10, 100_000
	rng := rand.New(rand.NewPCG(3, 7))
	worst, worstClassic := 0.0, 0.0
	for s := 0; s < sets; s++ {
		ns := names(fmt.Sprintf("hub-%x", rng.Uint64()), fmt.Sprintf("hub-%x", rng.Uint64()), fmt.Sprintf("hub-%x", rng.Uint64()))
		worst = max(worst, peakToMean(shares(mustNew(t, Options{}, ns...), nkeys)))
		worstClassic = max(worstClassic, peakToMean(shares(mustNew(t, Options{Probes: 1}, ns...), nkeys)))
	}
	t.Logf("%d random name sets: worst busiest/mean %.4f with %d probes, %.4f with 1 probe", sets, worst, DefaultProbes, worstClassic)
	if worst > 1.10 {
		t.Fatalf("busiest/mean %.4f over a random name set", worst)
	}
}

// TestAddNode: adding a 4th hub moves about a quarter of the keys, all of
// them to the new hub.
func TestAddNode(t *testing.T) {
	const nkeys = 1_000_000
	r3 := mustNew(t, Options{}, names("hub-1", "hub-2", "hub-3")...)
	r4 := mustNew(t, Options{}, names("hub-1", "hub-2", "hub-3", "hub-4")...)
	moved := 0
	for i := 0; i < nkeys; i++ {
		a, b := r3.Get(key(i)), r4.Get(key(i))
		if a != b {
			moved++
			if b != "hub-4" {
				t.Fatalf("key %q moved from %s to %s, not to the new hub", key(i), a, b)
			}
		}
	}
	frac := float64(moved) / nkeys
	t.Logf("adding a 4th hub moved %d of %d keys: %.4f (ideal 0.25)", moved, nkeys, frac)
	if frac < 0.22 || frac > 0.28 {
		t.Fatalf("moved fraction %.4f, want about 0.25", frac)
	}
}

// TestRemoveNode: removing a hub moves only its keys, each to the next node
// in its failover order.
func TestRemoveNode(t *testing.T) {
	r := mustNew(t, Options{}, names("a", "b", "c", "d")...)
	without := mustNew(t, Options{}, names("a", "c", "d")...)
	for i := 0; i < 50_000; i++ {
		k := key(i)
		order := r.GetN(k, 4)
		got := without.Get(k)
		if order[0] != "b" && got != order[0] {
			t.Fatalf("key %q moved from %s to %s though %s stayed", k, order[0], got, order[0])
		}
		if order[0] == "b" && got != order[1] {
			t.Fatalf("key %q of the removed node went to %s, failover order %v", k, got, order)
		}
	}
}

func TestWeightsScaleShare(t *testing.T) {
	const nkeys = 400_000
	r := mustNew(t, Options{}, Node{Name: "small-1", Weight: 1}, Node{Name: "small-2", Weight: 1}, Node{Name: "big", Weight: 2})
	counts := shares(r, nkeys)
	for i, want := range []float64{0.25, 0.25, 0.5} {
		got := float64(counts[i]) / nkeys
		t.Logf("%s (weight %d): %.4f of the keys", r.Node(i).Name, r.Node(i).Weight, got)
		if got < want*0.9 || got > want*1.1 {
			t.Errorf("%s holds %.4f, want about %.2f", r.Node(i).Name, got, want)
		}
	}
}

// TestFindIsRingWithout: Find over a subset answers what a ring of only that
// subset answers, and GetN is the chain of such answers.
func TestFindIsRingWithout(t *testing.T) {
	all := names("n0", "n1", "n2", "n3", "n4", "n5")
	rng := rand.New(rand.NewPCG(1, 1))
	for _, probes := range []int{1, DefaultProbes} {
		r := mustNew(t, Options{Probes: probes}, all...)
		for trial := 0; trial < 20; trial++ {
			mask := rng.IntN(1 << len(all))
			var sub []Node
			for i, n := range all {
				if mask&(1<<i) != 0 {
					sub = append(sub, n)
				}
			}
			rs := mustNew(t, Options{Probes: probes}, sub...)
			calls := 0
			for i := 0; i < 2000; i++ {
				calls = 0
				got := r.Find(key(i), func(n int) bool { calls++; return mask&(1<<n) != 0 })
				name := ""
				if got >= 0 {
					name = r.Node(got).Name
				}
				if want := rs.Get(key(i)); name != want {
					t.Fatalf("probes %d mask %b key %q: Find = %q, ring of the subset = %q", probes, mask, key(i), name, want)
				}
				if calls > len(all) {
					t.Fatalf("ok called %d times for %d nodes", calls, len(all))
				}
			}
		}
		for i := 0; i < 300; i++ {
			order := r.GetN(key(i), len(all))
			if len(order) != len(all) {
				t.Fatalf("GetN = %v", order)
			}
			for j := range order {
				var rest []Node
				for _, n := range all {
					if !slices.Contains(order[:j], n.Name) {
						rest = append(rest, n)
					}
				}
				if got := mustNew(t, Options{Probes: probes}, rest...).Get(key(i)); got != order[j] {
					t.Fatalf("GetN(%q)[%d] = %s, ring without %v says %s", key(i), j, order[j], order[:j], got)
				}
			}
		}
	}
}

// TestClassicRing: with one probe a key belongs to the first point at or
// after its hash, wrapping, checked against a linear scan.
func TestClassicRing(t *testing.T) {
	r := mustNew(t, Options{Probes: 1, VirtualNodes: 16}, names("a", "b", "c")...)
	for i := 0; i < 5000; i++ {
		h := String(key(i))
		want := int(r.owners[0])
		for j, p := range r.hashes {
			if p >= h {
				want = int(r.owners[j])
				break
			}
		}
		if got := r.Owner(key(i)); got != want {
			t.Fatalf("key %q: owner %d, first point clockwise is %d's", key(i), got, want)
		}
	}
}

func TestManyNodes(t *testing.T) {
	var ns []Node
	for i := 0; i < 100; i++ {
		ns = append(ns, Node{Name: "n" + strconv.Itoa(i)})
	}
	r := mustNew(t, Options{VirtualNodes: 8}, ns...)
	for i := 0; i < 50; i++ {
		order := r.AppendN(nil, key(i), 1000)
		if len(order) != 100 {
			t.Fatalf("AppendN returned %d nodes", len(order))
		}
		seen := map[int]bool{}
		for _, o := range order {
			if seen[o] {
				t.Fatalf("node %d twice in %v", o, order)
			}
			seen[o] = true
		}
		if order[0] != r.Owner(key(i)) {
			t.Fatal("AppendN does not start at the owner")
		}
		if got := r.Find(key(i), func(n int) bool { return n == 99 }); got != 99 {
			t.Fatalf("Find accepting only node 99 = %d", got)
		}
		if got := r.Find(key(i), func(n int) bool { return n == order[70] || n == order[80] }); got != order[70] {
			t.Fatalf("Find = %d, want the earlier of the accepted nodes in failover order %d", got, order[70])
		}
	}
	if got := r.Find("k", func(int) bool { return false }); got != -1 {
		t.Fatalf("Find accepting nothing = %d", got)
	}
}

func TestNoAllocs(t *testing.T) {
	r := mustNew(t, Options{}, names("a", "b", "c", "d")...)
	up := []bool{false, true, true, true}
	buf := make([]int, 0, 8)
	k := "www.example.com/some/object.css"
	if n := testing.AllocsPerRun(200, func() {
		_ = r.Get(k)
		_ = r.Find(k, func(i int) bool { return up[i] })
		buf = r.AppendN(buf[:0], k, 4)
	}); n != 0 {
		t.Fatalf("lookups allocate %v times", n)
	}
}

func FuzzLookup(f *testing.F) {
	f.Add("www.example.com/", "a,b,c", 2, 3, 1)
	f.Add("", "", 0, 0, 0)
	f.Add("\xff\x00", "x", -1, 1, 64)
	f.Add("k", "a,a", 5, 0, 2)
	f.Fuzz(func(t *testing.T, key, list string, n, weight, probes int) {
		var ns []Node
		for i, name := range strings.Split(list, ",") {
			if i >= 8 {
				break
			}
			ns = append(ns, Node{Name: name, Weight: weight % 4})
		}
		r, err := New(Options{VirtualNodes: 8, Probes: probes % (MaxProbes + 2)}, ns...)
		if err != nil {
			return
		}
		got := r.Get(key)
		order := r.GetN(key, n)
		if r.Len() > 0 && got == "" {
			t.Fatalf("no owner for %q on a ring of %d", key, r.Len())
		}
		if want := min(max(n, 0), r.Len()); len(order) != want {
			t.Fatalf("GetN(%q, %d) = %v, want %d nodes", key, n, order, want)
		}
		if len(order) > 0 && order[0] != got {
			t.Fatalf("GetN starts at %q, Get says %q", order[0], got)
		}
		seen := map[string]bool{}
		for _, o := range order {
			if seen[o] {
				t.Fatalf("GetN repeats %q: %v", o, order)
			}
			seen[o] = true
		}
		if r.Len() > 0 {
			last := r.Len() - 1
			if r.Find(key, func(i int) bool { return i == last }) != last {
				t.Fatal("Find missed the only acceptable node")
			}
		}
	})
}

func benchRing(b *testing.B, n int) *Ring {
	ns := make([]Node, n)
	for i := range ns {
		ns[i] = Node{Name: "hub-" + strconv.Itoa(i)}
	}
	return mustNew(b, Options{}, ns...)
}

func benchKeys() []string {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "www.example.com/static/img/" + strconv.Itoa(i*7919) + ".jpg"
	}
	return keys
}

func BenchmarkGet(b *testing.B) {
	keys := benchKeys()
	for _, n := range []int{3, 10, 100} {
		b.Run(strconv.Itoa(n)+"nodes", func(b *testing.B) {
			r := benchRing(b, n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = r.Get(keys[i&1023])
			}
		})
	}
}

func BenchmarkGetClassic(b *testing.B) {
	keys := benchKeys()
	r := mustNew(b, Options{Probes: 1}, names("hub-0", "hub-1", "hub-2")...)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = r.Get(keys[i&1023])
	}
}

func BenchmarkFindOneDown(b *testing.B) {
	keys := benchKeys()
	r := benchRing(b, 3)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = r.Find(keys[i&1023], func(n int) bool { return n != 0 })
	}
}

func BenchmarkAppendN(b *testing.B) {
	keys := benchKeys()
	r := benchRing(b, 3)
	buf := make([]int, 0, 3)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = r.AppendN(buf[:0], keys[i&1023], 3)
	}
}

func BenchmarkString(b *testing.B) {
	k := "www.example.com/static/img/12345.jpg"
	b.ReportAllocs()
	b.SetBytes(int64(len(k)))
	for b.Loop() {
		_ = String(k)
	}
}
