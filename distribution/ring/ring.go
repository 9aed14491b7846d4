// Package ring is a consistent-hash ring with virtual nodes.
//
// Every node is placed on a 64-bit ring at VirtualNodes x Weight points
// derived from its name alone, so every process that builds a ring from the
// same nodes gets the same ring, and a node's share of the keys follows its
// weight.
//
// A key is looked up at Probes positions on the ring (the first is the key's
// hash, the others are derived from it); from each position the nearest point
// clockwise is found, and the key belongs to the owner of the nearest of
// those points. With Probes = 1 this is the textbook ring. More probes even
// out the shares (multi-probe consistent hashing, Appleton and O'Reilly,
// 2015): with 3 nodes of 128 points, one probe leaves the busiest node up to
// 20% above the mean for some sets of names, five keep it under 10%.
//
// Either way the ring stays consistent: adding a node moves only the keys
// that now fall to it (about 1/N of them), and removing a node moves only its
// own keys. Find and GetN give the failover order: the node a key goes to
// when the earlier nodes are gone, exactly what a ring built without them
// would answer.
//
// A Ring is immutable and safe for concurrent use. It uses only the standard
// library.
package ring

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Defaults for Options.
const (
	DefaultVirtualNodes = 128 // points per unit of weight
	DefaultProbes       = 5   // lookup positions per key
)

// Limits.
const (
	MaxPoints = 1 << 22 // VirtualNodes x total weight
	MaxProbes = 64
)

// Options shape a ring. Every process that must agree on key placement has
// to use the same Options and nodes.
type Options struct {
	VirtualNodes int // points per unit of weight; 0 means DefaultVirtualNodes
	Probes       int // lookup positions per key; 0 means DefaultProbes, 1 is the classic ring
}

// Node is a member of the ring. Weight follows capacity: a node of weight 2
// gets twice the points, and so about twice the keys, of a node of weight 1.
// Zero means 1.
type Node struct {
	Name   string
	Weight int
}

// Ring maps keys to nodes.
type Ring struct {
	hashes []uint64 // point positions, sorted
	owners []int32  // owners[i] is the node index of hashes[i]
	nodes  []Node   // in the order given to New, weights normalized
	probes int
}

// New builds a ring of nodes. Names must be distinct and non-empty, weights
// at least 0.
func New(opts Options, nodes ...Node) (*Ring, error) {
	vnodes, probes := opts.VirtualNodes, opts.Probes
	if vnodes == 0 {
		vnodes = DefaultVirtualNodes
	}
	if probes == 0 {
		probes = DefaultProbes
	}
	if vnodes < 0 || vnodes > MaxPoints {
		return nil, fmt.Errorf("ring: virtual nodes must be between 1 and %d, got %d", MaxPoints, vnodes)
	}
	if probes < 0 || probes > MaxProbes {
		return nil, fmt.Errorf("ring: probes must be between 1 and %d, got %d", MaxProbes, probes)
	}
	r := &Ring{nodes: make([]Node, len(nodes)), probes: probes}
	seen := make(map[string]bool, len(nodes))
	total := 0
	for i, n := range nodes {
		switch {
		case n.Name == "":
			return nil, fmt.Errorf("ring: node %d has no name", i)
		case seen[n.Name]:
			return nil, fmt.Errorf("ring: duplicate node %q", n.Name)
		case n.Weight < 0:
			return nil, fmt.Errorf("ring: node %q: negative weight %d", n.Name, n.Weight)
		}
		seen[n.Name] = true
		if n.Weight == 0 {
			n.Weight = 1
		}
		if n.Weight > MaxPoints/vnodes || total+n.Weight*vnodes > MaxPoints {
			return nil, errors.New("ring: more than " + strconv.Itoa(MaxPoints) + " points; lower the weights or virtual nodes")
		}
		total += n.Weight * vnodes
		r.nodes[i] = n
	}
	type point struct {
		h    uint64
		node int32
	}
	points := make([]point, 0, total)
	for i, n := range r.nodes {
		seed := String(n.Name)
		for v := 0; v < n.Weight*vnodes; v++ {
			points = append(points, point{h: pointHash(seed, v), node: int32(i)})
		}
	}
	// Ties (vanishingly rare) break by name so every process agrees.
	slices.SortFunc(points, func(a, b point) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		if r.nodes[a.node].Name < r.nodes[b.node].Name {
			return -1
		}
		return 1
	})
	r.hashes = make([]uint64, len(points))
	r.owners = make([]int32, len(points))
	for i, p := range points {
		r.hashes[i], r.owners[i] = p.h, p.node
	}
	return r, nil
}

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

// Node returns node i, as given to New (a zero weight reads as 1).
func (r *Ring) Node(i int) Node { return r.nodes[i] }

// Nodes returns a copy of the nodes, in the order given to New.
func (r *Ring) Nodes() []Node { return slices.Clone(r.nodes) }

// Points returns the number of points on the ring.
func (r *Ring) Points() int { return len(r.hashes) }

// search returns the index of the first point at or after h, wrapping.
func (r *Ring) search(h uint64) int {
	lo, hi := 0, len(r.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		return 0
	}
	return lo
}

// filter says which nodes a lookup may return: not excluded, and accepted by
// ok when ok is set. Answers of ok are cached for the first 64 nodes so ok is
// called at most once per node and lookup.
type filter struct {
	ok          func(int) bool
	excl        uint64 // excluded nodes < 64
	exclBig     []bool // excluded nodes, for rings of more than 64 nodes
	known, good uint64 // cached answers of ok for nodes < 64
}

func (f *filter) accept(o int) bool {
	if o < 64 {
		bit := uint64(1) << uint(o)
		if f.excl&bit != 0 {
			return false
		}
		if f.ok == nil {
			return true
		}
		if f.known&bit == 0 {
			f.known |= bit
			if f.ok(o) {
				f.good |= bit
			}
		}
		return f.good&bit != 0
	}
	if f.exclBig != nil && f.exclBig[o] {
		return false
	}
	return f.ok == nil || f.ok(o)
}

// find returns the node for key hash h among the nodes f accepts, or -1.
func (r *Ring) find(h uint64, f *filter) int {
	n := len(r.hashes)
	if n == 0 {
		return -1
	}
	best, bestD := -1, uint64(0)
	for j := 0; j < r.probes; j++ {
		hj := probeHash(h, j)
		i := r.search(hj)
		for k := 0; k < n; k++ {
			// Distance clockwise from the probe; it only grows along the walk,
			// so once it reaches the best so far this probe cannot win.
			d := r.hashes[i] - hj
			if best >= 0 && d >= bestD {
				break
			}
			if o := int(r.owners[i]); f.accept(o) {
				best, bestD = o, d
				break
			}
			if i++; i == n {
				i = 0
			}
		}
		if best < 0 {
			return -1 // the first probe walked the whole ring: no node is acceptable
		}
	}
	return best
}

// Owner returns the index of the node that owns key, or -1 on an empty ring.
func (r *Ring) Owner(key string) int {
	var f filter
	return r.find(String(key), &f)
}

// Get returns the name of the node that owns key, or "" on an empty ring.
func (r *Ring) Get(key string) string {
	i := r.Owner(key)
	if i < 0 {
		return ""
	}
	return r.nodes[i].Name
}

// Find returns the node key belongs to among the nodes ok accepts (what a
// ring built from only those nodes would answer), or -1 when ok accepts none.
// ok is called at most once per node for rings of up to 64 nodes. Find does
// not allocate.
func (r *Ring) Find(key string, ok func(node int) bool) int {
	f := filter{ok: ok}
	return r.find(String(key), &f)
}

// AppendN appends to dst the indexes of up to n distinct nodes in failover
// order for key: the owner, then the node that owns key once the owner is
// gone, and so on. With dst of enough capacity and a ring of at most 64 nodes
// it does not allocate.
func (r *Ring) AppendN(dst []int, key string, n int) []int {
	n = min(n, len(r.nodes))
	if n <= 0 {
		return dst
	}
	var f filter
	if len(r.nodes) > 64 {
		f.exclBig = make([]bool, len(r.nodes))
	}
	h := String(key)
	for found := 0; found < n; found++ {
		o := -1
		if found == len(r.nodes)-1 {
			// One node left: it is the answer, no need to walk.
			for i := range r.nodes {
				if (i < 64 && f.excl&(1<<uint(i)) == 0) || (i >= 64 && !f.exclBig[i]) {
					o = i
					break
				}
			}
		} else {
			o = r.find(h, &f)
		}
		if o < 0 {
			break
		}
		dst = append(dst, o)
		if o < 64 {
			f.excl |= 1 << uint(o)
		}
		if f.exclBig != nil {
			f.exclBig[o] = true
		}
	}
	return dst
}

// GetN returns the names of up to n distinct nodes in failover order for
// key: the owner first, then the node to use when it fails, and so on.
func (r *Ring) GetN(key string, n int) []string {
	n = min(n, len(r.nodes))
	if n <= 0 {
		return nil
	}
	idx := r.AppendN(make([]int, 0, n), key, n)
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = r.nodes[j].Name
	}
	return out
}

// FNV-1a 64 constants.
const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
	golden   = 0x9e3779b97f4a7c15 // 2^64 / phi, the SplitMix64 increment
)

// String hashes s: FNV-1a 64 followed by a 64-bit finalizer so that keys
// differing in one byte land far apart on the ring. The value is the same in
// every process and on every platform.
func String(s string) uint64 {
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return mix(h)
}

// pointHash is the position of a node's v-th point: a SplitMix64 step from
// the hash of its name, so a node's points do not depend on other nodes and
// raising a weight keeps the existing points.
func pointHash(seed uint64, v int) uint64 {
	return mix(seed + uint64(v+1)*golden)
}

// probeHash is a key's j-th lookup position; the first is the key's hash.
func probeHash(h uint64, j int) uint64 {
	if j == 0 {
		return h
	}
	return mix(h ^ uint64(j)*golden)
}

// mix is the SplitMix64 / MurmurHash3 fmix64 finalizer.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
