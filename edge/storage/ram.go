package storage

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// RAM is the in-memory tier: objects bounded in bytes, split into shards by
// key hash. Each shard has its own lock, an equal share of the budget and its
// own eviction policy (lru, 2q, arc or tinylfu), so concurrent hits on
// different keys do not queue on one lock.
//
// A shard indexes objects by a 64-bit hash of their key (from a per-process
// seed) and checks the stored object's key on every hit, so a hash collision
// is a miss, never a wrong object.
type RAM struct {
	seed   maphash.Seed
	shards []ramShard
	shift  uint // a key's shard is its hash >> shift
	policy Policy
	bytes  atomic.Int64
	count  atomic.Int64
	evicts atomic.Uint64
	// OnEvict, when set before use, is called for every object that leaves
	// the tier to make room or that the policy did not admit (not for Delete
	// or replacement), outside the shard's lock.
	OnEvict func(*Object)
}

type ramShard struct {
	mu     sync.Mutex // guards pol, hits and misses
	pol    policy
	hits   uint64
	misses uint64
	budget int64
	_      [128 - 48]byte // one shard per pair of cache lines: no false sharing
}

// NewRAM returns a RAM tier of the default policy holding at most budget
// bytes in n shards (n is rounded up to a power of two; 0 means 32).
func NewRAM(budget int64, n int) *RAM {
	r, err := NewRAMPolicy(budget, n, DefaultPolicy)
	if err != nil {
		panic(err) // the default policy always exists
	}
	return r
}

// NewRAMPolicy is NewRAM with an eviction policy ("" means DefaultPolicy).
func NewRAMPolicy(budget int64, n int, p Policy) (*RAM, error) {
	if n <= 0 {
		n = 32
	}
	if p == "" {
		p = DefaultPolicy
	}
	shift := uint(64)
	size := 1
	for size < n {
		size <<= 1
		shift--
	}
	r := &RAM{seed: maphash.MakeSeed(), shards: make([]ramShard, size), shift: shift, policy: p}
	for i := range r.shards {
		pol, err := newPolicy(p, budget/int64(size))
		if err != nil {
			return nil, err
		}
		r.shards[i].pol = pol
		r.shards[i].budget = budget / int64(size)
	}
	return r, nil
}

func (r *RAM) hash(key string) uint64 { return maphash.String(r.seed, key) }

func (r *RAM) shard(h uint64) *ramShard { return &r.shards[h>>r.shift] }

// MaxObject is the largest object (by Object.Size) a shard can hold.
func (r *RAM) MaxObject() int64 { return r.shards[0].budget }

// Policy is the tier's eviction policy.
func (r *RAM) Policy() Policy { return r.policy }

// Get returns the object stored under key and records the access (a miss
// counts too: the tinylfu policy learns from misses what to admit later).
func (r *RAM) Get(key string) (*Object, bool) {
	h := r.hash(key)
	s := r.shard(h)
	s.mu.Lock()
	e, ok := s.pol.get(h)
	ok = ok && e.o.Key == key
	if ok {
		s.hits++
	} else {
		s.misses++
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	return e.o, true
}

// Peek returns the object under key without recording an access.
func (r *RAM) Peek(key string) (*Object, bool) {
	h := r.hash(key)
	s := r.shard(h)
	s.mu.Lock()
	e, ok := s.pol.peek(h)
	s.mu.Unlock()
	if !ok || e.o.Key != key {
		return nil, false
	}
	return e.o, true
}

// Put stores o under o.Key, replacing any object there, and evicts what the
// policy chooses until the shard fits its budget. It reports whether o is
// stored afterwards (tinylfu may turn a new object away at once when it is
// larger than the window). An object larger than a shard's budget is not
// stored, and the object it would have replaced is removed.
func (r *RAM) Put(o *Object) bool {
	stored, evicted := r.put(o)
	if r.OnEvict != nil {
		for _, e := range evicted {
			r.OnEvict(e.o)
		}
	}
	return stored
}

// put is Put returning what left the tier instead of calling OnEvict.
func (r *RAM) put(o *Object) (stored bool, evicted []entry) {
	size := o.Size()
	h := r.hash(o.Key)
	s := r.shard(h)
	if size > s.budget {
		r.Delete(o.Key)
		return false, nil
	}
	s.mu.Lock()
	b0, n0 := s.pol.bytes(), s.pol.len()
	evicted, stored = s.pol.add(h, entry{o: o, size: size}, nil)
	db, dn := s.pol.bytes()-b0, s.pol.len()-n0
	s.mu.Unlock()
	r.bytes.Add(db)
	r.count.Add(int64(dn))
	r.evicts.Add(uint64(len(evicted)))
	return stored, evicted
}

// Delete removes the object under key and reports whether there was one.
func (r *RAM) Delete(key string) bool {
	h := r.hash(key)
	s := r.shard(h)
	s.mu.Lock()
	e, ok := s.pol.peek(h)
	ok = ok && e.o.Key == key
	if ok {
		s.pol.remove(h)
	}
	s.mu.Unlock()
	if ok {
		r.bytes.Add(-e.size)
		r.count.Add(-1)
	}
	return ok
}

// Range calls fn for every object until fn returns false. It works on a
// snapshot of each shard in turn, so fn may call Put or Delete.
func (r *RAM) Range(fn func(*Object) bool) {
	var entries []entry
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		entries = s.pol.values(entries[:0])
		s.mu.Unlock()
		for _, e := range entries {
			if !fn(e.o) {
				return
			}
		}
	}
}

// Stats describes one tier.
type Stats struct {
	Objects   int64
	Bytes     int64
	Evictions uint64 // objects removed to make room (and, in RAM, not admitted)
	Capacity  int64  // the byte budget
	Hits      uint64 // lookups answered by this tier
	Misses    uint64 // lookups it could not answer
	Rejected  uint64 // RAM: objects the policy did not admit (included in Evictions)
}

// Stats returns the tier's counters.
func (r *RAM) Stats() Stats {
	st := Stats{Objects: r.count.Load(), Bytes: r.bytes.Load(), Evictions: r.evicts.Load()}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Rejected += s.pol.rejected()
		s.mu.Unlock()
		st.Capacity += s.budget
	}
	return st
}
