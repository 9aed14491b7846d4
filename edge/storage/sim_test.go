package storage

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

// The trace simulation behind the hit-ratio table in README.md. Run the full
// one (1M objects, 10M requests per trace; a few minutes on one core) with
//
//	go test ./edge/storage -run TestHitRatioTable -sim.full -v -timeout 1h
//
// With -sim instead the same code runs on a small trace (-sim.objects,
// -sim.requests); TestTinyLFUGoalsSmall checks the goals on every run. Every trace comes
// from a PRNG with a fixed seed, so the table is reproducible.
var (
	simRun      = flag.Bool("sim", false, "run the trace simulation (small unless -sim.full) and print the hit-ratio table")
	simFull     = flag.Bool("sim.full", false, "run the full trace simulation (1M objects, 10M requests) and print the hit-ratio table")
	simObjects  = flag.Int("sim.objects", 20000, "distinct objects per trace, without -sim.full")
	simRequests = flag.Int("sim.requests", 200000, "requests per trace, without -sim.full")
	simTraces   = flag.String("sim.traces", "", "comma-separated subset of traces (zipf0.8, zipf0.8scan, zipf1.0, zipf1.0scan, recency)")
	simPolicies = flag.String("sim.policies", "lru,2q,arc,tinylfu,oracle", "comma-separated policies")
	simSized    = flag.String("sim.sizes", "equal,varied", "size models: equal, varied")
)

// trace is a request sequence over object ids, with one size per id.
type trace struct {
	name     string
	reqs     []uint32
	objects  int     // distinct ids the trace can name (sizes has one entry per id)
	rank     []int32 // popularity rank of each id (IRM traces), for the oracle
	scanFrom int     // index of the first scan request, -1 without a scan
	scanLen  int
}

const simSeed = 20261127

// zipfSampler draws ranks 0..n-1 with P(r) proportional to 1/(r+1)^s.
type zipfSampler struct{ cdf []float64 }

func newZipf(n int, s float64) *zipfSampler {
	cdf := make([]float64, n)
	var sum float64
	for i := range cdf {
		sum += 1 / math.Pow(float64(i+1), s)
		cdf[i] = sum
	}
	for i := range cdf {
		cdf[i] /= sum
	}
	return &zipfSampler{cdf}
}

func (z *zipfSampler) draw(r *rand.Rand) int {
	i := sort.SearchFloat64s(z.cdf, r.Float64())
	return min(i, len(z.cdf)-1)
}

// zipfTrace is an independent-reference trace: every request draws a rank
// from Zipf(s); ranks map to ids through a random permutation. With scan, a
// one-off sequential scan of scanLen cold ids (never requested otherwise)
// replaces the requests in the middle of the trace.
func zipfTrace(n, requests int, s float64, scan bool) *trace {
	r := rand.New(rand.NewPCG(simSeed, uint64(s*1000)))
	z := newZipf(n, s)
	perm := r.Perm(n)
	t := &trace{name: fmt.Sprintf("zipf %.1f", s), objects: n, reqs: make([]uint32, requests), rank: make([]int32, n), scanFrom: -1}
	for rank, id := range perm {
		t.rank[id] = int32(rank)
	}
	for i := range t.reqs {
		t.reqs[i] = uint32(perm[z.draw(r)])
	}
	if scan {
		t.name += " + scan"
		t.scanLen = n / 5
		t.scanFrom = requests / 2
		t.objects = n + t.scanLen
		for i := range t.scanLen {
			t.reqs[t.scanFrom+i] = uint32(n + i)
		}
		for range t.scanLen {
			t.rank = append(t.rank, int32(n)) // never in the oracle's set
		}
	}
	return t
}

// recencyTrace follows the LRU stack model, the textbook trace on which LRU
// is the optimal online policy: each request is, with probability 0.1, a
// first request for a new object, and otherwise a re-request of the object
// at stack depth d (1 = the most recently requested), where log d is
// uniform over the stack. Popularity here is all recency: an object's past
// request count says nothing about its future.
func recencyTrace(n, requests int) *trace {
	r := rand.New(rand.NewPCG(simSeed, 7))
	t := &trace{name: "recency (LRU stack)", objects: n, reqs: make([]uint32, requests), scanFrom: -1}
	// A Fenwick tree over request times finds the object with the d-th most
	// recent last request; owner maps a time slot to its object.
	size := requests + 1
	fen := make([]int32, size+1)
	add := func(i int, v int32) {
		for i++; i <= size; i += i & -i {
			fen[i] += v
		}
	}
	// kth returns the slot of the k-th set slot (1-based) in time order.
	kth := func(k int32) int {
		pos := 0
		for step := 1 << (bits(size)); step > 0; step >>= 1 {
			if pos+step <= size && fen[pos+step] < k {
				pos += step
				k -= fen[pos]
			}
		}
		return pos
	}
	owner := make([]uint32, size)
	slot := make([]int32, n) // each seen object's current slot
	live, next := int32(0), 0
	for i := range t.reqs {
		var id uint32
		if live == 0 || (next < n && r.Float64() < 0.1) {
			id = uint32(next)
			next++
			live++
		} else {
			d := int32(math.Exp(r.Float64() * math.Log(float64(live)))) // 1..live, log d uniform
			d = min(max(d, 1), live)
			id = owner[kth(live-d+1)]
			add(int(slot[id]), -1)
		}
		owner[i] = id
		slot[id] = int32(i)
		add(i, 1)
		t.reqs[i] = id
	}
	return t
}

func bits(n int) int {
	b := 0
	for 1<<(b+1) <= n {
		b++
	}
	return b
}

// sizes returns a size per id: log-uniform between 1 KiB and 1 MiB, from the
// id's hash (unit sizes when uniform).
func simSizes(objects int, uniform bool) []int64 {
	s := make([]int64, objects)
	for id := range s {
		if uniform {
			s[id] = 1
			continue
		}
		u := float64(mix(uint64(id)+simSeed)>>11) / (1 << 53)
		s[id] = int64(1024 * math.Exp(u*math.Log(1024)))
	}
	return s
}

// simResult is one policy's result on one trace.
type simResult struct {
	reqHit, byteHit float64
	afterScan       float64 // hit ratio in the requests right after the scan
}

// afterScanWindow is how many requests after a scan its damage is measured over.
func afterScanWindow(t *trace) int { return len(t.reqs) / 50 }

// simulate runs a trace through a policy of budget bytes (name "oracle":
// the static optimum that keeps the most popular objects by true rank).
func simulate(t *trace, name string, sizes []int64, budget int64) simResult {
	var hits, reqs int
	var hitB, reqB int64
	var winHits, winReqs int
	w0 := t.scanFrom + t.scanLen
	w1 := w0 + afterScanWindow(t)
	record := func(i int, hit bool, size int64) {
		reqs++
		reqB += size
		if hit {
			hits++
			hitB += size
		}
		if t.scanFrom >= 0 && i >= w0 && i < w1 {
			winReqs++
			if hit {
				winHits++
			}
		}
	}
	if name == "oracle" {
		// keep the top objects by true popularity that fit, in rank order
		byRank := make([]int, len(t.rank))
		for id := range byRank {
			byRank[id] = id
		}
		sort.Slice(byRank, func(a, b int) bool { return t.rank[byRank[a]] < t.rank[byRank[b]] })
		keep := make([]bool, len(t.rank))
		var used int64
		for _, id := range byRank {
			if used+sizes[id] <= budget {
				keep[id] = true
				used += sizes[id]
			}
		}
		seen := make([]bool, len(t.rank))
		for i, id := range t.reqs {
			record(i, keep[id] && seen[id], sizes[id])
			seen[id] = true
		}
	} else {
		p, err := newPolicy(Policy(name), budget)
		if err != nil {
			panic(err)
		}
		var ev []entry
		for i, id := range t.reqs {
			h := mix(uint64(id) + 0x5bd1e995)
			_, ok := p.get(h)
			record(i, ok, sizes[id])
			if !ok && sizes[id] <= budget {
				ev, _ = p.add(h, entry{size: sizes[id]}, ev[:0])
			}
		}
	}
	res := simResult{reqHit: float64(hits) / float64(reqs), byteHit: float64(hitB) / float64(reqB)}
	if winReqs > 0 {
		res.afterScan = float64(winHits) / float64(winReqs)
	}
	return res
}

func TestHitRatioTable(t *testing.T) {
	n, requests := *simObjects, *simRequests
	if *simFull {
		n, requests = 1000000, 10000000
	} else if !*simRun {
		t.Skip("trace simulation: run with -sim or -sim.full")
	}
	start := time.Now()
	all := []struct {
		name string
		mk   func() *trace
	}{
		{"zipf0.8", func() *trace { return zipfTrace(n, requests, 0.8, false) }},
		{"zipf0.8scan", func() *trace { return zipfTrace(n, requests, 0.8, true) }},
		{"zipf1.0", func() *trace { return zipfTrace(n, requests, 1.0, false) }},
		{"zipf1.0scan", func() *trace { return zipfTrace(n, requests, 1.0, true) }},
		{"recency", func() *trace { return recencyTrace(n, requests) }},
	}
	var traces []func() *trace
	for _, tr := range all {
		if *simTraces == "" || strings.Contains(","+*simTraces+",", ","+tr.name+",") {
			traces = append(traces, tr.mk)
		}
	}
	names := strings.Split(*simPolicies, ",")
	header := "| trace | cache |"
	sep := "|---|---|"
	for _, n := range names {
		header += " " + n + " |"
		sep += "---|"
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d objects, %d requests per trace, seed %d\n\n", n, requests, simSeed)
	for _, uniform := range []bool{true, false} {
		if uniform && !strings.Contains(*simSized, "equal") || !uniform && !strings.Contains(*simSized, "varied") {
			continue
		}
		if uniform {
			fmt.Fprintf(&out, "Equal sizes: request hit ratio (%%)\n\n%s\n%s\n", header, sep)
		} else {
			fmt.Fprintf(&out, "\nSizes 1 KiB..1 MiB (log-uniform): request hit ratio / byte hit ratio (%%)\n\n%s\n%s\n", header, sep)
		}
		var scanRows []string
		for _, mk := range traces {
			tr := mk()
			sizes := simSizes(tr.objects, uniform)
			var total int64
			for id := range n { // the scan's cold objects do not count toward the cache size
				total += sizes[id]
			}
			for _, pct := range []int{1, 10} {
				budget := total * int64(pct) / 100
				row := fmt.Sprintf("| %s | %d%% |", tr.name, pct)
				scanRow := fmt.Sprintf("| %s | %d%% |", tr.name, pct)
				for _, name := range names {
					if name == "oracle" && tr.rank == nil {
						row += " - |"
						scanRow += " - |"
						continue
					}
					r := simulate(tr, name, sizes, budget)
					if uniform {
						row += fmt.Sprintf(" %.1f |", 100*r.reqHit)
					} else {
						row += fmt.Sprintf(" %.1f / %.1f |", 100*r.reqHit, 100*r.byteHit)
					}
					scanRow += fmt.Sprintf(" %.1f |", 100*r.afterScan)
				}
				fmt.Fprintln(&out, row)
				if tr.scanFrom >= 0 && uniform {
					scanRows = append(scanRows, scanRow)
				}
			}
		}
		if len(scanRows) > 0 {
			fmt.Fprintf(&out, "\nEqual sizes, hit ratio (%%) in the %d requests right after the scan\n\n", requests/50)
			fmt.Fprintf(&out, "%s\n%s\n", header, sep)
			for _, r := range scanRows {
				fmt.Fprintln(&out, r)
			}
		}
	}
	fmt.Fprintf(&out, "\n(%s)\n", time.Since(start).Round(time.Second))
	t.Log("\n" + out.String())
}
