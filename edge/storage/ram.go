package storage

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// RAM is an in-memory LRU tier bounded in bytes, split into shards by key
// hash; each shard is an LRU with its own lock and an equal share of the budget.
type RAM struct {
	seed   maphash.Seed
	shards []ramShard
	bytes  atomic.Int64
	count  atomic.Int64
	evicts atomic.Uint64
	// OnEvict, when set before use, is called for every object evicted to
	// make room (not for Delete or replacement), outside the shard's lock.
	OnEvict func(*Object)
}

// ramEntry is an object with its size, computed once when it is stored.
type ramEntry struct {
	o    *Object
	size int64
}

type ramShard struct {
	mu     sync.Mutex // guards lru and bytes
	lru    *simplelru.LRU[string, ramEntry]
	bytes  int64
	budget int64
}

// NewRAM returns a RAM tier holding at most budget bytes in n shards
// (n is rounded up to a power of two; 0 means 32).
func NewRAM(budget int64, n int) *RAM {
	if n <= 0 {
		n = 32
	}
	p := 1
	for p < n {
		p <<= 1
	}
	r := &RAM{seed: maphash.MakeSeed(), shards: make([]ramShard, p)}
	for i := range r.shards {
		// Entry count is unbounded here: the byte budget evicts.
		l, _ := simplelru.NewLRU[string, ramEntry](1<<62, nil)
		r.shards[i] = ramShard{lru: l, budget: budget / int64(p)}
	}
	return r
}

func (r *RAM) shard(key string) *ramShard {
	h := maphash.String(r.seed, key)
	return &r.shards[h&uint64(len(r.shards)-1)]
}

// MaxObject is the largest object a shard can hold.
func (r *RAM) MaxObject() int64 { return r.shards[0].budget }

// Get returns the object stored under key and marks it recently used.
func (r *RAM) Get(key string) (*Object, bool) {
	s := r.shard(key)
	s.mu.Lock()
	e, ok := s.lru.Get(key)
	s.mu.Unlock()
	return e.o, ok
}

// Peek returns the object under key without changing its recency.
func (r *RAM) Peek(key string) (*Object, bool) {
	s := r.shard(key)
	s.mu.Lock()
	e, ok := s.lru.Peek(key)
	s.mu.Unlock()
	return e.o, ok
}

// Put stores o under o.Key, replacing any object there, and evicts the least
// recently used objects of its shard until the shard fits its budget. An
// object larger than a shard's budget is not stored.
func (r *RAM) Put(o *Object) bool {
	size := o.Size()
	s := r.shard(o.Key)
	if size > s.budget {
		return false
	}
	var evicted []*Object
	s.mu.Lock()
	if old, ok := s.lru.Peek(o.Key); ok {
		s.bytes -= old.size
		r.bytes.Add(-old.size)
		r.count.Add(-1)
	}
	s.lru.Add(o.Key, ramEntry{o, size})
	s.bytes += size
	r.bytes.Add(size)
	r.count.Add(1)
	for s.bytes > s.budget {
		_, old, ok := s.lru.RemoveOldest()
		if !ok {
			break
		}
		s.bytes -= old.size
		r.bytes.Add(-old.size)
		r.count.Add(-1)
		evicted = append(evicted, old.o)
	}
	s.mu.Unlock()
	if len(evicted) > 0 {
		r.evicts.Add(uint64(len(evicted)))
		if r.OnEvict != nil {
			for _, e := range evicted {
				r.OnEvict(e)
			}
		}
	}
	return true
}

// Delete removes the object under key and reports whether there was one.
func (r *RAM) Delete(key string) bool {
	s := r.shard(key)
	s.mu.Lock()
	e, ok := s.lru.Peek(key)
	if ok {
		s.lru.Remove(key)
		s.bytes -= e.size
		r.bytes.Add(-e.size)
		r.count.Add(-1)
	}
	s.mu.Unlock()
	return ok
}

// Range calls fn for every object until fn returns false. It works on a
// snapshot of each shard in turn, so fn may call Put or Delete.
func (r *RAM) Range(fn func(*Object) bool) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		entries := s.lru.Values()
		s.mu.Unlock()
		for _, e := range entries {
			if !fn(e.o) {
				return
			}
		}
	}
}

// Stats reports the tier's size.
type Stats struct {
	Objects   int64
	Bytes     int64
	Evictions uint64
}

// Stats returns the current object count, bytes and evictions so far.
func (r *RAM) Stats() Stats {
	return Stats{Objects: r.count.Load(), Bytes: r.bytes.Load(), Evictions: r.evicts.Load()}
}
