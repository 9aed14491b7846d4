// Package buckets keeps one rate-limiting bucket per source in a table of
// fixed capacity, so a flood that rotates through many source addresses
// cannot grow memory past the cap.
//
// A bucket is the generic cell rate algorithm (GCRA) form of a token bucket:
// instead of a token count and a refill time it stores one "theoretical
// arrival time" (TAT) in nanoseconds. A request at time now is conforming when
// max(TAT, now) + interval <= now + burst*interval, which admits exactly what a
// token bucket of the same rate and burst admits (x/time/rate's Limiter with
// AllowN(now, 1); a test checks the two side by side). Integer arithmetic
// keeps the decision exact and the entry small.
//
// Two behaviours (Params.Penalty):
//
//   - token bucket (Penalty == 0): a source gets its rate plus its burst;
//     excess requests are limited, nothing else happens (nginx limit_req with
//     burst and nodelay behaves the same way).
//   - penalty box (Penalty > 0): the first non-conforming request puts the
//     source in the box for Penalty; while it is boxed every request is
//     refused and still charged to the bucket, and a request that would have
//     been non-conforming extends the box. A source that keeps sending faster
//     than its rate therefore gets nothing at all; one that slows to its rate
//     is released Penalty after its last excess request.
//
// The table is split in shards, each a mutex, an open-addressing index of
// 32-bit slots (linear probing, backward-shift deletion: no tombstones, so
// churn never grows it) and a slab of 40-byte entries linked in LRU order.
// When a shard is full, its least recently used entry is reused for the new
// source. Memory is bounded by Capacity: the index is allocated up front, the
// slab in chunks of 256 entries as sources arrive.
//
// Time is an int64 of nanoseconds on any monotonic scale chosen by the caller
// (the scrubber uses nanoseconds since it started); the table never reads a
// clock, so tests are deterministic.
package buckets

import (
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Key identifies a source: an IPv6 address or prefix, or an IPv4 one in its
// IPv4-mapped IPv6 form (netip.Addr.As16 of the masked address).
type Key [16]byte

// Params are the bucket settings shared by every entry of a table. They can
// be swapped at run time (SetParams); entries keep their state across a swap.
type Params struct {
	Interval int64 // nanoseconds per token (1/rate); > 0
	Burst    int64 // bucket size in tokens; >= 1
	Penalty  int64 // nanoseconds in the penalty box; 0 = plain token bucket
}

// NewParams returns Params for rate tokens per second, burst tokens and a
// penalty (0 for a plain token bucket). rate must be > 0 and burst >= 1.
func NewParams(rate float64, burst int, penaltyNanos int64) Params {
	iv := int64(math.Round(1e9 / rate))
	if iv < 1 {
		iv = 1
	}
	return Params{Interval: iv, Burst: int64(max(burst, 1)), Penalty: max(penaltyNanos, 0)}
}

// Verdict is the outcome of Take.
type Verdict uint8

const (
	Allowed Verdict = iota // the request conforms; one token was taken
	Limited                // token bucket: no token left
	Boxed                  // penalty box: the source is (now) in the box
)

func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case Limited:
		return "limited"
	case Boxed:
		return "boxed"
	}
	return "unknown"
}

// entry is one source's state: 40 bytes.
type entry struct {
	key        Key
	tat        int64  // theoretical arrival time; <= now means a full bucket
	boxedUntil int64  // penalty box end; only read when Params.Penalty > 0
	prev, next uint32 // LRU links: slab index + 1, 0 = none
}

const (
	chunkBits = 8
	chunkSize = 1 << chunkBits
	maxShards = 16
	minShard  = 256 // entries per shard below which fewer shards are used
)

// Table is a fixed-capacity set of buckets keyed by Key. It is safe for
// concurrent use.
type Table struct {
	seed      maphash.Seed
	shardBits uint // shard = top shardBits bits of the hash
	shards    []shard
	params    atomic.Pointer[Params]
	capacity  int
}

type shard struct {
	mu sync.Mutex // guards every field below
	// index maps hash slots to slab positions + 1 (0 = empty slot); its
	// length is a power of two at least twice the shard's capacity.
	index      []uint32
	mask       uint32
	chunks     [][]entry // slab, allocated a chunk at a time
	n          uint32    // entries in use
	cap        uint32    // entries allowed
	head, tail uint32    // most and least recently used, slab index + 1
	evictions  uint64
	_          [64]byte // keep neighbouring shards' locks off one cache line
}

// New returns a table holding at most capacity sources (at least 1).
func New(capacity int, p Params) *Table {
	capacity = max(capacity, 1)
	nshards := 1
	for nshards < maxShards && capacity/(nshards*2) >= minShard {
		nshards *= 2
	}
	t := &Table{seed: maphash.MakeSeed(), shards: make([]shard, nshards), capacity: capacity}
	t.shardBits = uint(bits.TrailingZeros(uint(nshards)))
	per := (capacity + nshards - 1) / nshards
	slots := 1
	for slots < 2*per {
		slots *= 2
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.cap = uint32(per)
		s.index = make([]uint32, slots)
		s.mask = uint32(slots - 1)
		s.chunks = make([][]entry, 0, (per+chunkSize-1)/chunkSize)
	}
	t.SetParams(p)
	return t
}

// SetParams replaces the bucket settings for every later Take.
func (t *Table) SetParams(p Params) {
	p.Interval = max(p.Interval, 1)
	p.Burst = max(p.Burst, 1)
	p.Penalty = max(p.Penalty, 0)
	t.params.Store(&p)
}

// Params returns the settings in force.
func (t *Table) Params() Params { return *t.params.Load() }

// Capacity is the most sources the table holds.
func (t *Table) Capacity() int { return t.capacity }

func (t *Table) hash(k *Key) uint64 { return maphash.Bytes(t.seed, k[:]) }

func (t *Table) shardOf(h uint64) *shard {
	if t.shardBits == 0 {
		return &t.shards[0]
	}
	return &t.shards[h>>(64-t.shardBits)]
}

// Take charges one request from source k at time now and reports whether it
// may pass. A source not in the table starts with a full bucket, evicting the
// least recently used source of its shard when the shard is full.
func (t *Table) Take(k Key, now int64) Verdict {
	p := t.params.Load()
	h := t.hash(&k)
	s := t.shardOf(h)
	s.mu.Lock()
	e := s.getOrInsert(t, &k, uint32(h), now)
	v := p.apply(e, now)
	s.mu.Unlock()
	return v
}

// InBox reports whether source k is in the penalty box at time now, without
// charging it or changing its place in the LRU order. It is false when the
// table is not in penalty-box mode.
func (t *Table) InBox(k Key, now int64) bool {
	p := t.params.Load()
	if p.Penalty == 0 {
		return false
	}
	h := t.hash(&k)
	s := t.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.find(&k, uint32(h)); i != 0 {
		return s.at(i).boxedUntil > now
	}
	return false
}

// apply is the GCRA step, with the penalty box when p.Penalty > 0.
func (p *Params) apply(e *entry, now int64) Verdict {
	next := max(e.tat, now) + p.Interval
	limit := now + p.Burst*p.Interval
	if p.Penalty > 0 && e.boxedUntil > now {
		if next > limit {
			// Still sending faster than the rate: stay in the box, and
			// count the bucket as empty rather than ever deeper in debt.
			e.boxedUntil = now + p.Penalty
			next = limit
		}
		e.tat = next
		return Boxed
	}
	if next <= limit {
		e.tat = next
		return Allowed
	}
	if p.Penalty > 0 {
		e.boxedUntil = now + p.Penalty
		return Boxed
	}
	return Limited
}

// Len returns the number of sources tracked.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += int(s.n)
		s.mu.Unlock()
	}
	return n
}

// Evictions returns how many sources were dropped to make room for others.
func (t *Table) Evictions() uint64 {
	var n uint64
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.evictions
		s.mu.Unlock()
	}
	return n
}

// at returns the entry at slab position i-1 (i is 1-based).
func (s *shard) at(i uint32) *entry {
	i--
	return &s.chunks[i>>chunkBits][i&(chunkSize-1)]
}

// find returns the slab position + 1 of k, or 0.
func (s *shard) find(k *Key, h uint32) uint32 {
	for j := h & s.mask; ; j = (j + 1) & s.mask {
		i := s.index[j]
		if i == 0 {
			return 0
		}
		if s.at(i).key == *k {
			return i
		}
	}
}

// getOrInsert returns k's entry, most recently used first.
func (s *shard) getOrInsert(t *Table, k *Key, h uint32, now int64) *entry {
	j := h & s.mask
	for {
		i := s.index[j]
		if i == 0 {
			break
		}
		if e := s.at(i); e.key == *k {
			s.touch(i, e)
			return e
		}
		j = (j + 1) & s.mask
	}
	// Not found; j is the empty slot where k belongs.
	var i uint32
	if s.n < s.cap {
		if s.n%chunkSize == 0 {
			s.chunks = append(s.chunks, make([]entry, chunkSize))
		}
		s.n++
		i = s.n
	} else {
		i = s.tail
		s.unlink(i, s.at(i))
		s.remove(t, i)
		// Removal emptied a slot, perhaps between k's home and j: probe
		// again so k lands where a lookup will find it.
		j = h & s.mask
		for s.index[j] != 0 {
			j = (j + 1) & s.mask
		}
		s.evictions++
	}
	s.index[j] = i
	e := s.at(i)
	*e = entry{key: *k, tat: now}
	s.pushFront(i, e)
	return e
}

// remove deletes slab position i from the index by backward-shift deletion,
// so no probe sequence is left with a gap.
func (s *shard) remove(t *Table, i uint32) {
	e := s.at(i)
	j := uint32(t.hash(&e.key)) & s.mask
	for s.index[j] != i {
		j = (j + 1) & s.mask
	}
	hole := j
	for {
		j = (j + 1) & s.mask
		x := s.index[j]
		if x == 0 {
			break
		}
		home := uint32(t.hash(&s.at(x).key)) & s.mask
		// x may fill the hole when its home slot is not cyclically in
		// (hole, j].
		if (j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j) {
			s.index[hole] = x
			hole = j
		}
	}
	s.index[hole] = 0
}

func (s *shard) touch(i uint32, e *entry) {
	if s.head == i {
		return
	}
	s.unlink(i, e)
	s.pushFront(i, e)
}

func (s *shard) unlink(i uint32, e *entry) {
	if e.prev != 0 {
		s.at(e.prev).next = e.next
	} else if s.head == i {
		s.head = e.next
	}
	if e.next != 0 {
		s.at(e.next).prev = e.prev
	} else if s.tail == i {
		s.tail = e.prev
	}
	e.prev, e.next = 0, 0
}

func (s *shard) pushFront(i uint32, e *entry) {
	e.prev = 0
	e.next = s.head
	if s.head != 0 {
		s.at(s.head).prev = i
	}
	s.head = i
	if s.tail == 0 {
		s.tail = i
	}
}
