package dnsredirect

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vergecdn/verge/dnsredirect/geo"
)

// Selection in two steps (seed section 2.2): the client's location ranks
// the sites (overrides first, then great-circle distance), and the first
// site with a healthy edge answers with its least-loaded edges.
//
// The hot path reads two immutable things: a ranking from the geo cache and
// the current snapshot of edge state. Health, load and attack changes build
// a new snapshot under Server.mu and publish it with one atomic store.

// site is a configured region.
type site struct {
	name     string
	lat, lon float64
	scrubber Addrs
	edges    []int // indexes into Server.edges
}

// edge is a configured edge node.
type edge struct {
	name  string
	site  int
	addrs Addrs
	probe string
}

// edgeState is what is known about an edge now. Guarded by Server.mu.
type edgeState struct {
	up          bool
	probeLoad   float64 // from the health probe's Verge-Load header
	hasProbe    bool
	pushedLoad  float64 // from SetLoad (management)
	pushedAt    time.Time
	hasPushed   bool
	underAttack bool
}

// load is the edge's effective load: a pushed load while it is fresh, else
// the probe's, else 0.
func (st *edgeState) load(now time.Time, ttl time.Duration) float64 {
	if st.hasPushed && (ttl == 0 || now.Sub(st.pushedAt) < ttl) {
		return st.pushedLoad
	}
	if st.hasProbe {
		return st.probeLoad
	}
	return 0
}

// snapshot is the immutable answer state the hot path reads.
type snapshot struct {
	sites    []sitePools
	failOpen bool // no edge anywhere is healthy: health is ignored
}

type sitePools struct {
	alive   bool // has a healthy edge (false for every site while failing open)
	a, aaaa pool
}

// pool is the ordered answer set of one site for one address family.
type pool struct {
	addrs []netip.Addr // least loaded first; scrubber in place of edges under attack; no duplicates
	tied  int          // how many leading addrs share the lowest load
	all   bool         // answer with every address (failing open)
}

// size is how many addresses one reply names when want are asked for:
// every address while failing open.
func (p *pool) size(want int) int {
	if k := len(p.addrs); p.all || want > k {
		return k
	}
	return want
}

// at is the i-th of the n addresses of a reply: the n least loaded, except
// that when more than n share the lowest load, n of those are taken in turn
// starting at rot (the query ID), so ties spread over resolvers.
func (p *pool) at(i, n int, rot uint16) netip.Addr {
	if p.tied > n {
		return p.addrs[(int(rot)%p.tied+i)%p.tied]
	}
	return p.addrs[i]
}

type candidate struct {
	edge int
	load float64
}

// buildPool orders the candidates' addresses of one family.
func buildPool(cands []candidate, edges []edge, states []edgeState, scrubber netip.Addr, v6 bool) pool {
	var p pool
	var loads []float64
	for _, c := range cands {
		a := edges[c.edge].addrs.IPv4
		if v6 {
			a = edges[c.edge].addrs.IPv6
		}
		if !a.IsValid() {
			continue
		}
		if states[c.edge].underAttack && scrubber.IsValid() {
			a = scrubber
		}
		if slices.Contains(p.addrs, a) {
			continue
		}
		p.addrs = append(p.addrs, a)
		loads = append(loads, c.load)
	}
	for p.tied < len(loads) && loads[p.tied] == loads[0] {
		p.tied++
	}
	return p
}

// rebuildLocked publishes a new snapshot from s.state. s.mu must be held.
func (s *Server) rebuildLocked() {
	now := s.now()
	anyUp := false
	for i := range s.state {
		if s.state[i].up {
			anyUp = true
			break
		}
	}
	snap := &snapshot{sites: make([]sitePools, len(s.sites)), failOpen: !anyUp}
	var cands []candidate
	for si := range s.sites {
		st := &s.sites[si]
		cands = cands[:0]
		for _, ei := range st.edges {
			if !anyUp || s.state[ei].up {
				cands = append(cands, candidate{ei, s.state[ei].load(now, s.pushedTTL)})
			}
		}
		slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(a.load, b.load) })
		sp := &snap.sites[si]
		sp.alive = anyUp && len(cands) > 0
		sp.a = buildPool(cands, s.edges, s.state, st.scrubber.IPv4, false)
		sp.aaaa = buildPool(cands, s.edges, s.state, st.scrubber.IPv6, true)
		sp.a.all, sp.aaaa.all = !anyUp, !anyUp

		if old := s.snap.Load(); old != nil && old.sites[si].alive != sp.alive && anyUp {
			if sp.alive {
				s.log.Info("site back up", "site", st.name)
			} else {
				s.log.Warn("site down: every edge failed its health checks; its clients go to the next-nearest site", "site", st.name)
			}
		}
		s.m.siteUp.WithLabelValues(st.name).Set(b2f(sp.alive))
	}
	old := s.snap.Load()
	s.snap.Store(snap)
	if (old == nil || !old.failOpen) && snap.failOpen {
		s.log.Error("every edge is down: failing open, answering with all edges of each client's nearest site")
	} else if old != nil && old.failOpen && !snap.failOpen {
		s.log.Info("an edge is healthy again: no longer failing open")
	}
	s.m.failOpen.Set(b2f(snap.failOpen))
	for i, e := range s.edges {
		st := &s.state[i]
		site := s.sites[e.site].name
		s.m.edgeUp.WithLabelValues(site, e.name).Set(b2f(st.up))
		s.m.edgeLoad.WithLabelValues(site, e.name).Set(st.load(now, s.pushedTTL))
		s.m.edgeAttack.WithLabelValues(site, e.name).Set(b2f(st.underAttack))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ranking is an order of sites (indexes), best first. Rankings are shared
// and never modified.
type ranking []uint16

// ranker turns a client location into a ranking.
type ranker struct {
	sites      []site
	def        ranking            // for clients with no location
	continents map[string]ranking // overrides, listed sites only
	countries  map[string]ranking

	mu   sync.Mutex // guards memo
	memo map[geo.Location]ranking
}

const maxMemo = 1 << 14

func newRanker(sites []site, r RoutingConfig) *ranker {
	idx := map[string]uint16{}
	for i, s := range sites {
		idx[s.name] = uint16(i)
	}
	toRanking := func(names []string) ranking {
		out := make(ranking, 0, len(names))
		for _, n := range names {
			out = append(out, idx[n])
		}
		return out
	}
	rk := &ranker{sites: sites, continents: map[string]ranking{}, countries: map[string]ranking{}, memo: map[geo.Location]ranking{}}
	rk.def = toRanking(r.Default)
	for i := range sites {
		if !slices.Contains(rk.def, uint16(i)) {
			rk.def = append(rk.def, uint16(i))
		}
	}
	for k, v := range r.Continents {
		rk.continents[k] = toRanking(v)
	}
	for k, v := range r.Countries {
		rk.countries[k] = toRanking(v)
	}
	return rk
}

// rank orders the sites for a client at loc.
func (rk *ranker) rank(loc geo.Location) ranking {
	if !loc.Known() {
		return rk.def
	}
	rk.mu.Lock()
	defer rk.mu.Unlock()
	if r, ok := rk.memo[loc]; ok {
		return r
	}
	first, ok := rk.countries[loc.Country]
	if !ok {
		first = rk.continents[loc.Continent]
	}
	out := make(ranking, 0, len(rk.sites))
	out = append(out, first...)
	rest := make(ranking, 0, len(rk.sites))
	for _, i := range rk.def {
		if !slices.Contains(first, i) {
			rest = append(rest, i)
		}
	}
	if loc.HasCoords {
		dist := func(i uint16) float64 { return geo.Distance(loc.Lat, loc.Lon, rk.sites[i].lat, rk.sites[i].lon) }
		slices.SortStableFunc(rest, func(a, b uint16) int { return cmp.Compare(dist(a), dist(b)) })
	}
	out = append(out, rest...)
	if len(rk.memo) >= maxMemo {
		clear(rk.memo)
	}
	rk.memo[loc] = out
	return out
}

// geoCache maps client networks to rankings without locks: a fixed array
// of slots, each an atomic pointer to an immutable entry. A slot is chosen
// by the client's /24 (IPv4) or /56 (IPv6); an entry answers for every
// address in its network, the database's network for the address, so a hit
// is exact and a collision is only a miss.
type geoCache struct {
	slots []atomic.Pointer[geoEntry]
	shift uint
}

type geoEntry struct {
	net  netip.Prefix
	rank ranking
}

func newGeoCache(size int) *geoCache {
	if size == 0 {
		return nil
	}
	shift := uint(64)
	for n := size; n > 1; n >>= 1 {
		shift--
	}
	return &geoCache{slots: make([]atomic.Pointer[geoEntry], size), shift: shift}
}

func (c *geoCache) slot(a netip.Addr) *atomic.Pointer[geoEntry] {
	var k uint64
	if a.Is4() {
		b := a.As4()
		k = uint64(binary.BigEndian.Uint32(b[:]) >> 8)
	} else {
		b := a.As16()
		k = binary.BigEndian.Uint64(b[:8])>>8 | 1<<63
	}
	return &c.slots[(k*0x9E3779B97F4A7C15)>>c.shift]
}

func (c *geoCache) get(a netip.Addr) *geoEntry {
	if e := c.slot(a).Load(); e != nil && e.net.Contains(a) {
		return e
	}
	return nil
}

func (c *geoCache) put(a netip.Addr, e *geoEntry) { c.slot(a).Store(e) }

// Locator finds where an address is; *geo.DB is one.
type Locator interface {
	Lookup(a netip.Addr) (geo.Location, netip.Prefix, error)
}

// locate returns the ranking for client address a and the prefix length
// the answer holds for (the ECS scope); -1 when the database failed, so the
// answer holds for the client's own subnet only.
func (s *Server) locate(a netip.Addr, ctr *counters) (ranking, int) {
	if s.cache != nil {
		if e := s.cache.get(a); e != nil {
			ctr.geoHit.Add(1)
			return e.rank, e.net.Bits()
		}
	}
	loc, network, err := s.geo.Lookup(a)
	if err != nil || !network.IsValid() || !network.Contains(a) {
		ctr.geoErr.Add(1)
		return s.ranker.def, -1
	}
	ctr.geoMiss.Add(1)
	r := s.ranker.rank(loc)
	if s.cache != nil {
		s.cache.put(a, &geoEntry{net: network, rank: r})
	}
	return r, network.Bits()
}
