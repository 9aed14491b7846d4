// Package balance holds the load-balancing policies for a plain pool of
// backends (several origin servers behind one property, the scrubber's pool
// of edges): round robin, smooth weighted round robin, least connections,
// least response time (EWMA), IP hash and URL hash.
//
// A policy is built once for a fixed list of backends and refers to them by
// index. Pick chooses among the backends an ok function accepts (the healthy
// ones not yet tried for this request) and returns -1 when it accepts none;
// ok must not call back into the policy. Policies that learn from traffic
// also implement Tracker, which the caller feeds: Begin when a request goes
// to a backend, Observe when its response headers arrive, Done when it is
// over (body closed or failed).
//
// Every policy is safe for concurrent use. Pick does not allocate.
package balance

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vergecdn/verge/distribution/ring"
)

// Request is what a policy may look at to choose a backend.
type Request struct {
	Key      string // hashed by url_hash: the cache key, or host + path and query
	ClientIP string // hashed by ip_hash
}

// Picker chooses a backend for a request among those ok accepts.
type Picker interface {
	Pick(r *Request, ok func(backend int) bool) int
}

// Tracker is implemented by policies that learn from traffic.
type Tracker interface {
	Begin(backend int)                      // a request was sent to backend
	Observe(backend int, rtt time.Duration) // its response headers came after rtt
	Done(backend int)                       // the request is over
}

// Backend is what a policy knows of a backend.
type Backend struct {
	Name   string
	Weight int // capacity share; zero means 1
}

// Policy names, as written in configuration.
const (
	RoundRobinName         = "round_robin"
	WeightedRoundRobinName = "weighted_round_robin"
	LeastConnName          = "least_conn"
	LeastTimeName          = "least_time"
	IPHashName             = "ip_hash"
	URLHashName            = "url_hash"
)

// Names lists the policy names New accepts.
var Names = []string{RoundRobinName, WeightedRoundRobinName, LeastConnName, LeastTimeName, IPHashName, URLHashName}

// DefaultDecay is how long least_time takes to forget most of an idle
// backend's average.
const DefaultDecay = 10 * time.Second

// Options tune the policies that have knobs.
type Options struct {
	VirtualNodes int              // ip_hash and url_hash ring points per unit of weight; 0 means 128
	Decay        time.Duration    // least_time; 0 means DefaultDecay
	Now          func() time.Time // least_time's clock; nil means time.Now
}

// Compile-time checks that each policy implements what the pool calls.
var (
	_ Picker  = (*RoundRobin)(nil)
	_ Picker  = (*WeightedRoundRobin)(nil)
	_ Picker  = (*LeastConn)(nil)
	_ Tracker = (*LeastConn)(nil)
	_ Picker  = (*LeastTime)(nil)
	_ Tracker = (*LeastTime)(nil)
	_ Picker  = (*Hash)(nil)
)

// New returns the policy called name for backends.
func New(name string, backends []Backend, opts Options) (Picker, error) {
	if len(backends) == 0 {
		return nil, fmt.Errorf("balance: %s: no backends", name)
	}
	w := make([]int64, len(backends))
	for i, b := range backends {
		if b.Weight < 0 {
			return nil, fmt.Errorf("balance: backend %q: negative weight %d", b.Name, b.Weight)
		}
		w[i] = int64(max(b.Weight, 1))
	}
	switch name {
	case RoundRobinName:
		return NewRoundRobin(len(backends)), nil
	case WeightedRoundRobinName:
		return &WeightedRoundRobin{weights: w, current: make([]int64, len(w))}, nil
	case LeastConnName:
		return &LeastConn{weights: w, inflight: make([]atomic.Int64, len(w))}, nil
	case LeastTimeName:
		return NewLeastTime(w, opts.Decay, opts.Now), nil
	case IPHashName, URLHashName:
		nodes := make([]ring.Node, len(backends))
		for i, b := range backends {
			nodes[i] = ring.Node{Name: b.Name, Weight: int(w[i])}
		}
		r, err := ring.New(ring.Options{VirtualNodes: opts.VirtualNodes}, nodes...)
		if err != nil {
			return nil, fmt.Errorf("balance: %s: %w", name, err)
		}
		return &Hash{ring: r, byClient: name == IPHashName}, nil
	}
	return nil, fmt.Errorf("balance: unknown policy %q (want one of %s)", name, strings.Join(Names, ", "))
}

// Valid reports whether name is a policy New accepts.
func Valid(name string) bool { return slices.Contains(Names, name) }

// RoundRobin takes the backends in turn, skipping those ok refuses.
type RoundRobin struct {
	n    uint64
	next atomic.Uint64
}

// NewRoundRobin returns round robin over n backends.
func NewRoundRobin(n int) *RoundRobin { return &RoundRobin{n: uint64(n)} }

func (p *RoundRobin) Pick(_ *Request, ok func(int) bool) int {
	start := p.next.Add(1) - 1
	for k := uint64(0); k < p.n; k++ {
		if i := int((start + k) % p.n); ok(i) {
			return i
		}
	}
	return -1
}

// WeightedRoundRobin is smooth weighted round robin, as nginx does it: each
// pick adds every eligible backend's weight to its current value, takes the
// highest and subtracts the eligible total from it. Over a cycle of
// sum(weights) picks each backend gets exactly its weight, interleaved
// (weights 5, 1, 1 give a a b a c a a).
type WeightedRoundRobin struct {
	weights []int64
	mu      sync.Mutex // guards current
	current []int64
}

func (p *WeightedRoundRobin) Pick(_ *Request, ok func(int) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	best, total := -1, int64(0)
	for i, w := range p.weights {
		if !ok(i) {
			continue
		}
		p.current[i] += w
		total += w
		if best < 0 || p.current[i] > p.current[best] {
			best = i
		}
	}
	if best >= 0 {
		p.current[best] -= total
	}
	return best
}

// LeastConn picks the backend with the fewest requests in flight relative to
// its weight; ties go round robin so idle backends share the load.
type LeastConn struct {
	weights  []int64
	inflight []atomic.Int64
	rr       atomic.Uint64
}

func (p *LeastConn) Pick(_ *Request, ok func(int) bool) int {
	n := uint64(len(p.weights))
	start := p.rr.Add(1) - 1
	best, bestConns := -1, int64(0)
	for k := uint64(0); k < n; k++ {
		i := int((start + k) % n)
		if !ok(i) {
			continue
		}
		c := p.inflight[i].Load()
		// c/w < bestConns/w[best], without division.
		if best < 0 || c*p.weights[best] < bestConns*p.weights[i] {
			best, bestConns = i, c
		}
	}
	return best
}

func (p *LeastConn) Begin(i int)                { p.inflight[i].Add(1) }
func (p *LeastConn) Observe(int, time.Duration) {}
func (p *LeastConn) Done(i int)                 { p.inflight[i].Add(-1) }
func (p *LeastConn) InFlight(i int) int64       { return p.inflight[i].Load() }

// LeastTime picks the backend with the lowest expected response time: an
// exponentially weighted moving average of its time to response headers,
// times its requests in flight plus one, over its weight. A backend with no
// sample yet goes first. The average of a backend that gets no traffic fades
// toward zero (by e every Decay), so a backend that was slow once is tried
// again later instead of never.
type LeastTime struct {
	weights  []int64
	decay    float64 // seconds
	now      func() time.Time
	inflight []atomic.Int64
	rr       atomic.Uint64

	mu   sync.Mutex  // guards ewma, at and seen
	ewma []float64   // seconds
	at   []time.Time // time of the last sample
	seen []bool
}

// Alpha is the weight of a new sample in least_time's average.
const Alpha = 0.3

// NewLeastTime returns least_time over backends of the given weights.
func NewLeastTime(weights []int64, decay time.Duration, now func() time.Time) *LeastTime {
	if decay <= 0 {
		decay = DefaultDecay
	}
	if now == nil {
		now = time.Now
	}
	n := len(weights)
	return &LeastTime{
		weights: weights, decay: decay.Seconds(), now: now,
		inflight: make([]atomic.Int64, n),
		ewma:     make([]float64, n), at: make([]time.Time, n), seen: make([]bool, n),
	}
}

func (p *LeastTime) Pick(_ *Request, ok func(int) bool) int {
	now := p.now()
	n := uint64(len(p.weights))
	start := p.rr.Add(1) - 1
	best, bestScore := -1, 0.0
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := uint64(0); k < n; k++ {
		i := int((start + k) % n)
		if !ok(i) {
			continue
		}
		score := 0.0
		if p.seen[i] {
			idle := max(now.Sub(p.at[i]).Seconds(), 0)
			score = p.ewma[i] * math.Exp(-idle/p.decay) * float64(p.inflight[i].Load()+1) / float64(p.weights[i])
		}
		if best < 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

func (p *LeastTime) Begin(i int) { p.inflight[i].Add(1) }
func (p *LeastTime) Done(i int)  { p.inflight[i].Add(-1) }

func (p *LeastTime) Observe(i int, rtt time.Duration) {
	now := p.now()
	s := max(rtt.Seconds(), 0)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen[i] {
		p.ewma[i], p.seen[i] = s, true
	} else {
		// The old average weighs 1-Alpha, less when it is old: after a long
		// idle spell the new sample counts for nearly everything.
		idle := max(now.Sub(p.at[i]).Seconds(), 0)
		w := (1 - Alpha) * math.Exp(-idle/p.decay)
		p.ewma[i] = w*p.ewma[i] + (1-w)*s
	}
	p.at[i] = now
}

// Average returns backend i's current average response time and whether it
// has one.
func (p *LeastTime) Average(i int) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(p.ewma[i] * float64(time.Second)), p.seen[i]
}

// Hash sends each key (URL hash) or client address (IP hash) to the same
// backend, on a consistent-hash ring over the backends: when a backend is
// down only its keys move, and they come back when it does.
type Hash struct {
	ring     *ring.Ring
	byClient bool
}

func (p *Hash) Pick(r *Request, ok func(int) bool) int {
	if p.byClient {
		return p.ring.Find(r.ClientIP, ok)
	}
	return p.ring.Find(r.Key, ok)
}
