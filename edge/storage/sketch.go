package storage

// frequency estimates how often each key was accessed recently: the TinyLFU
// sketch. A doorkeeper (a Bloom filter) absorbs every key's first access in a
// period, so one-hit wonders never reach the counters; later accesses go to a
// count-min sketch of 4-bit counters (4 probes, conservative update). After
// period samples every counter is halved and the doorkeeper cleared, so old
// popularity fades.
//
// The sketch grows with the number of entries its cache holds (a byte budget
// says nothing about the count up front). Growing doubles the tables by
// duplication, which keeps every estimate: a probe's index is its hash masked
// to the table size, so one extra mask bit lands on one of two identical copies.
type frequency struct {
	table  []uint64 // 16 4-bit counters per word; counter i is nibble i&15 of word i>>4
	door   []uint64 // doorkeeper bits
	cmask  uint64   // number of counters - 1
	dmask  uint64   // number of doorkeeper bits - 1
	cap    int      // entries the tables are sized for
	adds   int      // samples since the last halving
	period int      // samples between halvings: 10 per entry
	// adds changes on every access: keep other shards' data off its
	// cache lines (128-byte objects are 128-byte aligned)
	_ [128 - 88]byte
}

const (
	sketchMinEntries = 64
	// per entry: 8 counters (4 bytes) and 32 doorkeeper bits (4 bytes)
	countersPerEntry = 8
	doorBitsPerEntry = 32
	maxCount         = 15
)

func newFrequency(entries int) *frequency {
	f := &frequency{}
	c := sketchMinEntries
	for c < entries {
		c <<= 1
	}
	f.table = make([]uint64, c*countersPerEntry/16)
	f.door = make([]uint64, c*doorBitsPerEntry/64)
	f.setCap(c)
	return f
}

func (f *frequency) setCap(c int) {
	f.cap = c
	f.cmask = uint64(c*countersPerEntry) - 1
	f.dmask = uint64(c*doorBitsPerEntry) - 1
	f.period = 10 * c
}

// fit grows the sketch until it is sized for at least entries.
func (f *frequency) fit(entries int) {
	for f.cap < entries {
		f.table = append(f.table, f.table...)
		f.door = append(f.door, f.door...)
		f.setCap(f.cap * 2)
	}
}

// mix is the splitmix64 finalizer: keys arrive as hashes already, but the
// shard was chosen by their top bits, so the bits are spread again here.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// probes returns the 4 counter indexes of h by double hashing.
func (f *frequency) probes(m uint64) [4]uint64 {
	a, b := m&0xffffffff, m>>32|1
	return [4]uint64{a & f.cmask, (a + b) & f.cmask, (a + 2*b) & f.cmask, (a + 3*b) & f.cmask}
}

func (f *frequency) counter(i uint64) uint64 {
	return f.table[i>>4] >> ((i & 15) * 4) & 0xf
}

// doorBits returns the two doorkeeper bit indexes of h.
func (f *frequency) doorBits(m uint64) (uint64, uint64) {
	m2 := m * 0x9e3779b97f4a7c15
	return (m2 >> 7) & f.dmask, (m2>>32 ^ m2<<17) & f.dmask
}

// increment records an access to h.
func (f *frequency) increment(h uint64) {
	m := mix(h)
	d1, d2 := f.doorBits(m)
	w1, b1 := d1>>6, uint64(1)<<(d1&63)
	w2, b2 := d2>>6, uint64(1)<<(d2&63)
	if f.door[w1]&b1 == 0 || f.door[w2]&b2 == 0 {
		f.door[w1] |= b1
		f.door[w2] |= b2
	} else {
		p := f.probes(m)
		low := uint64(maxCount)
		for _, i := range p {
			low = min(low, f.counter(i))
		}
		if low < maxCount {
			for _, i := range p {
				if f.counter(i) == low { // conservative update
					f.table[i>>4] += 1 << ((i & 15) * 4)
				}
			}
		}
	}
	f.adds++
	if f.adds >= f.period {
		f.age()
	}
}

// estimate returns h's estimated access count in the current period (0..16).
func (f *frequency) estimate(h uint64) int {
	m := mix(h)
	d1, d2 := f.doorBits(m)
	if f.door[d1>>6]&(1<<(d1&63)) == 0 || f.door[d2>>6]&(1<<(d2&63)) == 0 {
		return 0
	}
	low := uint64(maxCount)
	for _, i := range f.probes(m) {
		low = min(low, f.counter(i))
	}
	return int(low) + 1
}

// age halves every counter and clears the doorkeeper.
func (f *frequency) age() {
	for i, w := range f.table {
		f.table[i] = (w >> 1) & 0x7777777777777777
	}
	clear(f.door)
	f.adds /= 2
}

// ghostFilter remembers, approximately, the keys inserted recently: two
// Bloom filters, the current one taking inserts; once it holds limit keys the
// older one is cleared and they swap, so a key is remembered for the next
// limit to 2*limit insertions. 8 bits and 3 probes per key (about 3% false
// positives); no sizes, no lists.
type ghostFilter struct {
	cur, old []uint64
	mask     uint64
	n, limit int
}

const ghostBitsPerKey = 16

func newGhostFilter(limit int) *ghostFilter {
	g := &ghostFilter{}
	g.reset(limit)
	return g
}

func (g *ghostFilter) reset(limit int) {
	bitsN := 64
	for bitsN < limit*ghostBitsPerKey {
		bitsN <<= 1
	}
	g.cur, g.old = make([]uint64, bitsN/64), make([]uint64, bitsN/64)
	g.mask = uint64(bitsN) - 1
	g.n, g.limit = 0, limit
}

func (g *ghostFilter) probes(h uint64) [4]uint64 {
	m := mix(h ^ 0x6a09e667f3bcc909)
	a, b := m&0xffffffff, m>>32|1
	return [4]uint64{a & g.mask, (a + b) & g.mask, (a + 2*b) & g.mask, (a + 3*b) & g.mask}
}

func (g *ghostFilter) add(h uint64) {
	if g.n >= g.limit {
		g.cur, g.old = g.old, g.cur
		clear(g.cur)
		g.n = 0
	}
	for _, i := range g.probes(h) {
		g.cur[i>>6] |= 1 << (i & 63)
	}
	g.n++
}

func (g *ghostFilter) has(h uint64) bool {
	p := g.probes(h)
	in := func(f []uint64) bool {
		for _, i := range p {
			if f[i>>6]&(1<<(i&63)) == 0 {
				return false
			}
		}
		return true
	}
	return in(g.cur) || in(g.old)
}
