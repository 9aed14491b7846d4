package storage

import (
	"fmt"
	"math"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Policy names the eviction policy of the RAM tier.
type Policy string

const (
	// PolicyLRU evicts the least recently used object.
	PolicyLRU Policy = "lru"
	// Policy2Q is golang-lru's 2Q (a recent queue, a frequent queue and a
	// ghost list of recently evicted keys), counted in bytes.
	Policy2Q Policy = "2q"
	// PolicyARC is golang-lru's adaptive replacement cache, counted in bytes.
	PolicyARC Policy = "arc"
	// PolicyTinyLFU is W-TinyLFU: new objects enter a small LRU window; an
	// object leaving the window enters the main segmented LRU only if a
	// frequency sketch (with a doorkeeper) rates it above the object it
	// would evict. Ghost filters of recently rejected and recently evicted
	// keys size the window, so recency-heavy traffic gets a large window.
	PolicyTinyLFU Policy = "tinylfu"
)

// DefaultPolicy is the policy chosen by the trace simulation (README.md).
const DefaultPolicy = PolicyTinyLFU

// Policies lists the policies a config may name.
var Policies = []Policy{PolicyLRU, Policy2Q, PolicyARC, PolicyTinyLFU}

// entry is what a policy holds for one object: the object and the bytes it
// is charged.
type entry struct {
	o    *Object
	size int64
}

// policy is the replacement policy of one RAM shard, bounded in bytes. Keys
// are 64-bit hashes of cache keys. A policy is not safe for concurrent use:
// its shard's lock guards it. Every list is a golang-lru simplelru.LRU whose
// entry count is unbounded; the policy evicts by bytes.
type policy interface {
	// get looks h up and records the access, hit or miss.
	get(h uint64) (entry, bool)
	// peek looks h up without recording anything.
	peek(h uint64) (entry, bool)
	// add stores e under h, replacing what h held, evicts to fit the
	// budget, and appends what left the cache to evicted (e itself when
	// it was not admitted). e.size must not exceed the budget.
	add(h uint64, e entry, evicted []entry) (_ []entry, stored bool)
	remove(h uint64) (entry, bool)
	bytes() int64
	len() int
	// values appends every stored entry to dst.
	values(dst []entry) []entry
	// rejected counts objects the policy refused to admit.
	rejected() uint64
}

func newPolicy(p Policy, budget int64) (policy, error) {
	switch p {
	case PolicyLRU:
		return &lruPolicy{l: newList[entry](), budget: budget}, nil
	case Policy2Q:
		return new2Q(budget), nil
	case PolicyARC:
		return newARC(budget), nil
	case PolicyTinyLFU, "":
		return newTinyLFU(budget), nil
	}
	return nil, fmt.Errorf("storage: unknown policy %q (want lru, 2q, arc or tinylfu)", p)
}

// newList returns an LRU list whose entry count is unbounded.
func newList[V any]() *simplelru.LRU[uint64, V] {
	l, _ := simplelru.NewLRU[uint64, V](math.MaxInt, nil)
	return l
}

// lruPolicy is plain LRU.
type lruPolicy struct {
	l      *simplelru.LRU[uint64, entry]
	used   int64
	budget int64
}

func (p *lruPolicy) get(h uint64) (entry, bool)  { return p.l.Get(h) }
func (p *lruPolicy) peek(h uint64) (entry, bool) { return p.l.Peek(h) }
func (p *lruPolicy) bytes() int64                { return p.used }
func (p *lruPolicy) len() int                    { return p.l.Len() }
func (p *lruPolicy) rejected() uint64            { return 0 }

func (p *lruPolicy) add(h uint64, e entry, ev []entry) ([]entry, bool) {
	if old, ok := p.l.Peek(h); ok {
		p.used -= old.size
	}
	p.l.Add(h, e)
	p.used += e.size
	for p.used > p.budget {
		_, v, ok := p.l.RemoveOldest()
		if !ok {
			break
		}
		p.used -= v.size
		ev = append(ev, v)
	}
	return ev, p.l.Contains(h)
}

func (p *lruPolicy) remove(h uint64) (entry, bool) {
	e, ok := p.l.Peek(h)
	if ok {
		p.l.Remove(h)
		p.used -= e.size
	}
	return e, ok
}

func (p *lruPolicy) values(dst []entry) []entry { return append(dst, p.l.Values()...) }

// ghostList is a list of recently evicted keys with the sizes they had,
// bounded in bytes.
type ghostList struct {
	l      *simplelru.LRU[uint64, int64]
	used   int64
	budget int64
}

func newGhost(budget int64) ghostList { return ghostList{l: newList[int64](), budget: budget} }

func (g *ghostList) add(h uint64, size int64) {
	if old, ok := g.l.Peek(h); ok {
		g.used -= old
	}
	g.l.Add(h, size)
	g.used += size
	for g.used > g.budget {
		g.removeOldest()
	}
}

func (g *ghostList) removeOldest() {
	if _, s, ok := g.l.RemoveOldest(); ok {
		g.used -= s
	}
}

func (g *ghostList) remove(h uint64) bool {
	s, ok := g.l.Peek(h)
	if ok {
		g.l.Remove(h)
		g.used -= s
	}
	return ok
}

// twoQPolicy is golang-lru's TwoQueueCache algorithm with every size in
// bytes: new objects enter the recent queue (a quarter of the budget); a
// second access moves one to the frequent queue; keys evicted from the recent
// queue are remembered in a ghost list (half the budget) so that their return
// goes straight to the frequent queue. With equal sizes it makes exactly the
// decisions golang-lru's 2Q makes (a test checks this).
type twoQPolicy struct {
	recent, frequent *simplelru.LRU[uint64, entry]
	ghost            ghostList
	recentB, freqB   int64
	budget           int64
	recentTarget     int64
}

func new2Q(budget int64) *twoQPolicy {
	return &twoQPolicy{
		recent:       newList[entry](),
		frequent:     newList[entry](),
		ghost:        newGhost(int64(float64(budget) * 0.5)),
		budget:       budget,
		recentTarget: int64(float64(budget) * 0.25),
	}
}

func (p *twoQPolicy) bytes() int64     { return p.recentB + p.freqB }
func (p *twoQPolicy) len() int         { return p.recent.Len() + p.frequent.Len() }
func (p *twoQPolicy) rejected() uint64 { return 0 }

func (p *twoQPolicy) get(h uint64) (entry, bool) {
	if e, ok := p.frequent.Get(h); ok {
		return e, true
	}
	if e, ok := p.recent.Peek(h); ok {
		p.recent.Remove(h)
		p.recentB -= e.size
		p.frequent.Add(h, e)
		p.freqB += e.size
		return e, true
	}
	return entry{}, false
}

func (p *twoQPolicy) peek(h uint64) (entry, bool) {
	if e, ok := p.frequent.Peek(h); ok {
		return e, true
	}
	return p.recent.Peek(h)
}

func (p *twoQPolicy) add(h uint64, e entry, ev []entry) ([]entry, bool) {
	if old, ok := p.frequent.Peek(h); ok {
		p.frequent.Add(h, e)
		p.freqB += e.size - old.size
		return p.ensureSpace(ev, false, 0), p.has(h)
	}
	if old, ok := p.recent.Peek(h); ok {
		p.recent.Remove(h)
		p.recentB -= old.size
		p.frequent.Add(h, e)
		p.freqB += e.size
		return p.ensureSpace(ev, false, 0), p.has(h)
	}
	if p.ghost.l.Contains(h) {
		ev = p.ensureSpace(ev, true, e.size)
		p.ghost.remove(h)
		p.frequent.Add(h, e)
		p.freqB += e.size
		return ev, true
	}
	ev = p.ensureSpace(ev, false, e.size)
	p.recent.Add(h, e)
	p.recentB += e.size
	return ev, true
}

func (p *twoQPolicy) has(h uint64) bool { return p.frequent.Contains(h) || p.recent.Contains(h) }

// ensureSpace evicts until need more bytes fit.
func (p *twoQPolicy) ensureSpace(ev []entry, recentEvict bool, need int64) []entry {
	for p.recentB+p.freqB+need > p.budget {
		if p.recentB > 0 && (p.recentB > p.recentTarget || (p.recentB == p.recentTarget && !recentEvict)) || p.frequent.Len() == 0 {
			k, v, ok := p.recent.RemoveOldest()
			if !ok {
				break
			}
			p.recentB -= v.size
			p.ghost.add(k, v.size)
			ev = append(ev, v)
			continue
		}
		_, v, _ := p.frequent.RemoveOldest()
		p.freqB -= v.size
		ev = append(ev, v)
	}
	return ev
}

func (p *twoQPolicy) remove(h uint64) (entry, bool) {
	if e, ok := takeFrom(p.frequent, &p.freqB, h); ok {
		return e, true
	}
	if e, ok := takeFrom(p.recent, &p.recentB, h); ok {
		return e, true
	}
	p.ghost.remove(h)
	return entry{}, false
}

func (p *twoQPolicy) values(dst []entry) []entry {
	dst = append(dst, p.frequent.Values()...)
	return append(dst, p.recent.Values()...)
}

// arcPolicy is golang-lru's ARCCache algorithm with every size in bytes: T1
// holds objects seen once recently, T2 objects seen at least twice; B1 and
// B2 remember keys evicted from each, and a hit in a ghost list moves the
// target size p of T1 toward the list that would have kept it. With equal
// sizes it makes exactly the decisions golang-lru's ARC makes (a test checks
// this).
type arcPolicy struct {
	t1, t2   *simplelru.LRU[uint64, entry]
	b1, b2   ghostList
	t1B, t2B int64
	p        int64 // target bytes of T1
	budget   int64
}

func newARC(budget int64) *arcPolicy {
	return &arcPolicy{t1: newList[entry](), t2: newList[entry](), b1: newGhost(budget), b2: newGhost(budget), budget: budget}
}

func (p *arcPolicy) bytes() int64     { return p.t1B + p.t2B }
func (p *arcPolicy) len() int         { return p.t1.Len() + p.t2.Len() }
func (p *arcPolicy) rejected() uint64 { return 0 }

func (p *arcPolicy) get(h uint64) (entry, bool) {
	if e, ok := p.t1.Peek(h); ok {
		p.t1.Remove(h)
		p.t1B -= e.size
		p.t2.Add(h, e)
		p.t2B += e.size
		return e, true
	}
	return p.t2.Get(h)
}

func (p *arcPolicy) peek(h uint64) (entry, bool) {
	if e, ok := p.t1.Peek(h); ok {
		return e, true
	}
	return p.t2.Peek(h)
}

func (p *arcPolicy) add(h uint64, e entry, ev []entry) ([]entry, bool) {
	if old, ok := p.t1.Peek(h); ok {
		p.t1.Remove(h)
		p.t1B -= old.size
		p.t2.Add(h, e)
		p.t2B += e.size
		return p.makeRoom(ev, 0, false), p.has(h)
	}
	if old, ok := p.t2.Peek(h); ok {
		p.t2.Add(h, e)
		p.t2B += e.size - old.size
		return p.makeRoom(ev, 0, false), p.has(h)
	}
	if p.b1.l.Contains(h) {
		// T1 was too small: grow its target.
		delta := e.size
		if p.b2.used > p.b1.used && p.b1.used > 0 {
			delta = e.size * (p.b2.used / p.b1.used)
		}
		p.p = min(p.p+delta, p.budget)
		ev = p.makeRoom(ev, e.size, false)
		p.b1.remove(h)
		p.t2.Add(h, e)
		p.t2B += e.size
		return ev, true
	}
	if p.b2.l.Contains(h) {
		// T2 was too small: shrink T1's target.
		delta := e.size
		if p.b1.used > p.b2.used && p.b2.used > 0 {
			delta = e.size * (p.b1.used / p.b2.used)
		}
		p.p = max(p.p-delta, 0)
		ev = p.makeRoom(ev, e.size, true)
		p.b2.remove(h)
		p.t2.Add(h, e)
		p.t2B += e.size
		return ev, true
	}
	ev = p.makeRoom(ev, e.size, false)
	// keep the ghost lists trim, one key per insertion as golang-lru does
	if p.b1.used > p.budget-p.p {
		p.b1.removeOldest()
	}
	if p.b2.used > p.p {
		p.b2.removeOldest()
	}
	p.t1.Add(h, e)
	p.t1B += e.size
	return ev, true
}

func (p *arcPolicy) has(h uint64) bool { return p.t1.Contains(h) || p.t2.Contains(h) }

// makeRoom replaces entries until need more bytes fit.
func (p *arcPolicy) makeRoom(ev []entry, need int64, b2ContainsKey bool) []entry {
	for p.t1B+p.t2B+need > p.budget {
		if p.t1B > 0 && (p.t1B > p.p || (p.t1B == p.p && b2ContainsKey)) || p.t2.Len() == 0 {
			k, v, ok := p.t1.RemoveOldest()
			if !ok {
				break
			}
			p.t1B -= v.size
			p.b1.add(k, v.size)
			ev = append(ev, v)
			continue
		}
		k, v, _ := p.t2.RemoveOldest()
		p.t2B -= v.size
		p.b2.add(k, v.size)
		ev = append(ev, v)
	}
	return ev
}

func (p *arcPolicy) remove(h uint64) (entry, bool) {
	if e, ok := takeFrom(p.t1, &p.t1B, h); ok {
		return e, true
	}
	if e, ok := takeFrom(p.t2, &p.t2B, h); ok {
		return e, true
	}
	if !p.b1.remove(h) {
		p.b2.remove(h)
	}
	return entry{}, false
}

func (p *arcPolicy) values(dst []entry) []entry {
	dst = append(dst, p.t1.Values()...)
	return append(dst, p.t2.Values()...)
}

// takeFrom removes h from one of a policy's lists and takes its size off
// that list's byte count.
func takeFrom(l *simplelru.LRU[uint64, entry], bytes *int64, h uint64) (entry, bool) {
	e, ok := l.Peek(h)
	if ok {
		l.Remove(h)
		*bytes -= e.size
	}
	return e, ok
}
