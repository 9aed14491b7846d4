package edge

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// result classifies how a request was answered.
type result uint8

const (
	resHit   result = iota // fresh from cache
	resStale               // stale from cache (max-stale, stale-while-revalidate, stale-if-error)
	resMiss                // from upstream through a fill (including validations)
	resPass                // forwarded without the cache (method, no-store request)
	resError               // the upstream failed
	numResults
)

var resultNames = [numResults]string{"hit", "stale", "miss", "pass", "error"}

// LatencyBuckets are the upper bounds, in seconds, of the request latency
// histogram.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Stats are a node's counters. The hot path only adds to atomics; metrics
// and reports read them.
type Stats struct {
	mu    sync.Mutex // guards props (the map, not the counters)
	props map[string]*propStats

	refused        atomic.Uint64 // unknown host, bad request target, too many fields
	collapsed      atomic.Uint64 // requests that waited on another's fill
	upstreamErrors atomic.Uint64
}

// propStats are one property's counters.
type propStats struct {
	requests         [numResults]atomic.Uint64
	status           [6]atomic.Uint64 // by class: 0 other, 1..5 = 1xx..5xx
	bytes            atomic.Uint64    // body bytes sent to clients
	upstreamRequests atomic.Uint64
	upstreamClass    [6]atomic.Uint64
	upstreamBytes    atomic.Uint64
	latency          [16]atomic.Uint64 // per LatencyBuckets, then +Inf
	latencySumNanos  atomic.Uint64
}

func newStats() *Stats { return &Stats{props: map[string]*propStats{}} }

func (s *Stats) property(name string) *propStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.props[name]
	if !ok {
		p = &propStats{}
		s.props[name] = p
	}
	return p
}

func statusClass(code int) int {
	if c := code / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

func (p *propStats) record(o outcome, d time.Duration) {
	p.requests[o.result].Add(1)
	p.status[statusClass(o.status)].Add(1)
	if o.bytes > 0 {
		p.bytes.Add(uint64(o.bytes))
	}
	sec := d.Seconds()
	i := sort.SearchFloat64s(LatencyBuckets, sec)
	p.latency[i].Add(1)
	p.latencySumNanos.Add(uint64(d))
}

func (p *propStats) upstreamStatus(code int) {
	p.upstreamClass[statusClass(code)].Add(1)
}

// PropertySnapshot is one property's counters at a moment. Counters only
// grow, so a reader computes rates and usage from differences.
type PropertySnapshot struct {
	Property         string
	Requests         map[string]uint64 // by result: hit, stale, miss, pass, error
	Status           map[string]uint64 // by class: 1xx..5xx
	Bytes            uint64            // body bytes sent
	UpstreamRequests uint64
	UpstreamBytes    uint64
	UpstreamStatus   map[string]uint64 // by class: 1xx..5xx
	// LatencyBuckets counts requests per LatencyBuckets bound (not
	// cumulative); the last element counts those above every bound.
	LatencyBuckets []uint64
	LatencySum     time.Duration
}

// Snapshot is every counter of a node.
type Snapshot struct {
	Properties     []PropertySnapshot
	Refused        uint64
	Collapsed      uint64
	UpstreamErrors uint64
}

// Snapshot reads every counter.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	names := make([]string, 0, len(s.props))
	for n := range s.props {
		names = append(names, n)
	}
	props := make([]*propStats, len(names))
	sort.Strings(names)
	for i, n := range names {
		props[i] = s.props[n]
	}
	s.mu.Unlock()
	out := Snapshot{Refused: s.refused.Load(), Collapsed: s.collapsed.Load(), UpstreamErrors: s.upstreamErrors.Load()}
	for i, p := range props {
		ps := PropertySnapshot{
			Property:         names[i],
			Requests:         map[string]uint64{},
			Status:           map[string]uint64{},
			Bytes:            p.bytes.Load(),
			UpstreamRequests: p.upstreamRequests.Load(),
			UpstreamBytes:    p.upstreamBytes.Load(),
			UpstreamStatus:   map[string]uint64{},
			LatencySum:       time.Duration(p.latencySumNanos.Load()),
		}
		for r := range numResults {
			ps.Requests[resultNames[r]] = p.requests[r].Load()
		}
		for c := 1; c <= 5; c++ {
			class := string(rune('0'+c)) + "xx"
			ps.Status[class] = p.status[c].Load()
			ps.UpstreamStatus[class] = p.upstreamClass[c].Load()
		}
		ps.LatencyBuckets = make([]uint64, len(LatencyBuckets)+1)
		for j := range ps.LatencyBuckets {
			ps.LatencyBuckets[j] = p.latency[j].Load()
		}
		out.Properties = append(out.Properties, ps)
	}
	return out
}
