package storage

import "github.com/hashicorp/golang-lru/v2/simplelru"

// tinyLFUPolicy is W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A
// Highly Efficient Cache Admission Policy") in bytes, on golang-lru lists:
//
//   - window: an LRU that every new object enters (1% of the budget at first);
//   - main: a segmented LRU, probation (20%) and protected (80%); a hit in
//     probation moves an object to protected, protected's overflow goes back
//     to probation;
//   - admission: an object pushed out of the window enters main only if the
//     frequency sketch rates it above main's victim (probation's LRU end), so
//     a scan of cold objects washes through the window and leaves main alone;
//   - adaptive window: two small ghost filters remember the keys admission
//     rejected lately and the keys main evicted lately. A miss on a rejected
//     key says a larger window would have hit, and grows the window; a miss
//     on an evicted victim says a larger main would have, and shrinks it
//     (the idea of ARC's ghost lists). Traffic where recency is everything
//     drives the window toward the whole budget, that is, toward plain LRU;
//     skewed traffic keeps it near zero, toward pure frequency.
type tinyLFUPolicy struct {
	window, probation, protected *simplelru.LRU[uint64, entry]
	winB, probB, protB           int64
	budget                       int64
	winMax                       int64 // window budget, moved by adapt
	sketch                       *frequency
	ghostRejected, ghostVictims  *ghostFilter
	nrejected                    uint64
	rnd                          uint64    // xorshift state for the hash-flooding guard
	_                            [152]byte // a whole number of 128-byte blocks: no false sharing between shards
}

const (
	tlfuInitialWindow = 0.01
	tlfuProtected     = 0.80 // of main
	// Each ghost filter remembers the last entries/ghostDepth keys it was
	// given: shallow, so a ghost hit says what a small change of the window
	// would have done (deep ghosts compare far-off sizes and let the window
	// run away).
	ghostDepth = 8
	// adaptStep is how far one ghost hit moves the window, in average entries.
	adaptStep = 2
	admitWarm = 6 // candidates at least this warm may be admitted at random
)

func newTinyLFU(budget int64) *tinyLFUPolicy {
	return &tinyLFUPolicy{
		window:        newList[entry](),
		probation:     newList[entry](),
		protected:     newList[entry](),
		budget:        budget,
		winMax:        max(int64(float64(budget)*tlfuInitialWindow), 1),
		sketch:        newFrequency(0),
		ghostRejected: newGhostFilter(sketchMinEntries / ghostDepth),
		ghostVictims:  newGhostFilter(sketchMinEntries / ghostDepth),
		rnd:           0x9e3779b97f4a7c15,
	}
}

func (p *tinyLFUPolicy) bytes() int64     { return p.winB + p.probB + p.protB }
func (p *tinyLFUPolicy) len() int         { return p.window.Len() + p.probation.Len() + p.protected.Len() }
func (p *tinyLFUPolicy) rejected() uint64 { return p.nrejected }
func (p *tinyLFUPolicy) mainMax() int64   { return p.budget - p.winMax }
func (p *tinyLFUPolicy) protMax() int64   { return int64(float64(p.mainMax()) * tlfuProtected) }

func (p *tinyLFUPolicy) get(h uint64) (entry, bool) {
	p.sketch.increment(h)
	e, ok := p.lookup(h)
	if !ok {
		p.adapt(h)
	}
	return e, ok
}

func (p *tinyLFUPolicy) lookup(h uint64) (entry, bool) {
	if e, ok := p.window.Get(h); ok {
		return e, true
	}
	if e, ok := p.probation.Peek(h); ok {
		p.probation.Remove(h)
		p.probB -= e.size
		p.protected.Add(h, e)
		p.protB += e.size
		p.demote()
		return e, true
	}
	return p.protected.Get(h)
}

func (p *tinyLFUPolicy) peek(h uint64) (entry, bool) {
	if e, ok := p.window.Peek(h); ok {
		return e, true
	}
	if e, ok := p.probation.Peek(h); ok {
		return e, true
	}
	return p.protected.Peek(h)
}

// adapt moves the window size on a miss for a key the policy pushed out
// recently: a key that admission rejected says the window was too small; a
// key evicted from main to admit another says main was too small.
func (p *tinyLFUPolicy) adapt(h uint64) {
	n := p.len()
	if n == 0 {
		return
	}
	step := p.bytes() / int64(n) * adaptStep
	r, v := p.ghostRejected.has(h), p.ghostVictims.has(h)
	if r && !v {
		p.resize(step)
	} else if v && !r {
		p.resize(-step)
	}
}

// demote moves protected's overflow to probation's MRU end.
func (p *tinyLFUPolicy) demote() {
	for p.protB > p.protMax() {
		k, v, ok := p.protected.RemoveOldest()
		if !ok {
			return
		}
		p.protB -= v.size
		p.probation.Add(k, v)
		p.probB += v.size
	}
}

func (p *tinyLFUPolicy) add(h uint64, e entry, ev []entry) ([]entry, bool) {
	switch {
	case p.window.Contains(h):
		old, _ := p.window.Peek(h)
		p.window.Add(h, e)
		p.winB += e.size - old.size
	case p.probation.Contains(h):
		old, _ := p.probation.Peek(h)
		p.probation.Add(h, e)
		p.probB += e.size - old.size
	case p.protected.Contains(h):
		old, _ := p.protected.Peek(h)
		p.protected.Add(h, e)
		p.protB += e.size - old.size
	default:
		p.window.Add(h, e)
		p.winB += e.size
		if n := p.len(); n > p.sketch.cap {
			p.sketch.fit(n)
			p.ghostRejected.reset(max(p.sketch.cap/ghostDepth, 8))
			p.ghostVictims.reset(max(p.sketch.cap/ghostDepth, 8))
		}
	}
	ev = p.evict(ev)
	return ev, p.window.Contains(h) || p.probation.Contains(h) || p.protected.Contains(h)
}

// evict moves the window's overflow to main through admission, then trims
// main if it is still over the budget.
func (p *tinyLFUPolicy) evict(ev []entry) []entry {
	for p.winB > p.winMax {
		k, c, ok := p.window.RemoveOldest()
		if !ok {
			break
		}
		p.winB -= c.size
		ev = p.admit(k, c, ev)
	}
	for p.bytes() > p.budget {
		var v entry
		var ok bool
		if _, v, ok = p.probation.RemoveOldest(); ok {
			p.probB -= v.size
		} else if _, v, ok = p.protected.RemoveOldest(); ok {
			p.protB -= v.size
		} else if _, v, ok = p.window.RemoveOldest(); ok {
			p.winB -= v.size
		} else {
			break
		}
		ev = append(ev, v)
	}
	p.demote()
	return ev
}

// admit lets candidate c (key k) into main if it beats each victim it must
// displace; otherwise c leaves the cache.
func (p *tinyLFUPolicy) admit(k uint64, c entry, ev []entry) []entry {
	if c.size > p.mainMax() {
		p.nrejected++
		p.ghostRejected.add(k)
		return append(ev, c)
	}
	for p.probB+p.protB+c.size > p.mainMax() {
		list, used := p.probation, &p.probB
		if list.Len() == 0 {
			list, used = p.protected, &p.protB
		}
		vk, v, ok := list.GetOldest()
		if !ok {
			break
		}
		if !p.prefer(k, vk) {
			p.nrejected++
			p.ghostRejected.add(k)
			return append(ev, c)
		}
		p.ghostVictims.add(vk)
		list.RemoveOldest()
		*used -= v.size
		ev = append(ev, v)
	}
	p.probation.Add(k, c)
	p.probB += c.size
	return ev
}

// prefer reports whether the candidate should displace the victim. A warm
// candidate that does not beat the victim still wins one time in 128, so an
// attacker who keeps a victim's count high cannot pin it (Caffeine's guard).
func (p *tinyLFUPolicy) prefer(cand, victim uint64) bool {
	fc, fv := p.sketch.estimate(cand), p.sketch.estimate(victim)
	if fc > fv {
		return true
	}
	if fc < admitWarm {
		return false
	}
	p.rnd ^= p.rnd << 13
	p.rnd ^= p.rnd >> 7
	p.rnd ^= p.rnd << 17
	return p.rnd&127 == 0
}

// resize moves the window budget by delta bytes and moves entries between
// window and main so that each stays within its share.
func (p *tinyLFUPolicy) resize(delta int64) {
	p.winMax = min(max(p.winMax+delta, 0), p.budget)
	if delta > 0 {
		// main shrinks: its LRU entries move to the window's MRU end
		for p.probB+p.protB > p.mainMax() {
			var k uint64
			var v entry
			var ok bool
			if k, v, ok = p.probation.RemoveOldest(); ok {
				p.probB -= v.size
			} else if k, v, ok = p.protected.RemoveOldest(); ok {
				p.protB -= v.size
			} else {
				break
			}
			p.window.Add(k, v)
			p.winB += v.size
		}
	} else {
		// the window shrinks: its LRU entries move to probation
		for p.winB > p.winMax {
			k, v, ok := p.window.RemoveOldest()
			if !ok {
				break
			}
			p.winB -= v.size
			p.probation.Add(k, v)
			p.probB += v.size
		}
	}
	p.demote()
}

func (p *tinyLFUPolicy) remove(h uint64) (entry, bool) {
	for _, l := range [...]struct {
		l    *simplelru.LRU[uint64, entry]
		used *int64
	}{{p.window, &p.winB}, {p.probation, &p.probB}, {p.protected, &p.protB}} {
		if e, ok := l.l.Peek(h); ok {
			l.l.Remove(h)
			*l.used -= e.size
			return e, true
		}
	}
	return entry{}, false
}

func (p *tinyLFUPolicy) values(dst []entry) []entry {
	dst = append(dst, p.window.Values()...)
	dst = append(dst, p.probation.Values()...)
	return append(dst, p.protected.Values()...)
}
