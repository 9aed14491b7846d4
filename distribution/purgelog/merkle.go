package purgelog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// The summary tree. Level 0 nodes (leaves) cover Bucket consecutive sequence
// numbers: leaf i covers [i*Bucket, (i+1)*Bucket). A node at level L covers
// Fanout nodes of level L-1: node i has children i*Fanout .. i*Fanout+15.
// A node that covers no record hashes to zero; a leaf hashes the canonical
// encodings of its records in order; any other node hashes its children's
// hashes. Two logs with the same records have the same hashes everywhere,
// whatever their lengths.
const (
	Bucket   = 1 << bucketBits // sequence numbers per leaf
	Fanout   = 1 << fanBits    // children per node
	MaxLevel = (64 - bucketBits) / fanBits

	bucketBits = 6
	fanBits    = 4
)

// Hash is a tree node's hash; the zero Hash is an empty range's.
type Hash [sha256.Size]byte

// String is the hash in hex, or "" for the zero hash (how the protocol
// writes it).
func (h Hash) String() string {
	if h == (Hash{}) {
		return ""
	}
	return hex.EncodeToString(h[:])
}

// MarshalText writes String.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	*h = v
	return err
}

// ParseHash reads what String writes.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if s == "" {
		return h, nil
	}
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("hash %q: want %d hex digits or empty", trunc(s), 2*len(h))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q: %v", trunc(s), err)
	}
	if h == (Hash{}) {
		return h, errors.New("hash: the zero hash is written empty")
	}
	return h, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

type nodeKey struct {
	level int
	index uint64
}

func shift(level int) uint { return uint(bucketBits + fanBits*level) }

// span returns the first and last sequence numbers node (level, index)
// covers; ok is false for a node past the end of the number space.
func span(level int, index uint64) (lo, hi uint64, ok bool) {
	s := shift(level)
	if level < 0 || level > MaxLevel || index > math.MaxUint64>>s {
		return 0, 0, false
	}
	lo = index << s
	return lo, lo + (1<<s - 1), true
}

// Leaf returns the leaf index of seq.
func Leaf(seq uint64) uint64 { return seq >> bucketBits }

// topLevel is the lowest level at which [0, last] fits in at most Fanout
// nodes.
func topLevel(last uint64) int {
	level := 0
	for level < MaxLevel && last>>shift(level) >= Fanout {
		level++
	}
	return level
}

// Hash returns the hash of tree node (level, index).
func (l *Log) Hash(level int, index uint64) Hash {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hashLocked(level, index)
}

func (l *Log) hashLocked(level int, index uint64) Hash {
	lo, hi, ok := span(level, index)
	if !ok {
		return Hash{}
	}
	i, _ := l.find(lo)
	if i == len(l.recs) || l.recs[i].Seq > hi {
		return Hash{} // nothing in range: the common case for most of the space
	}
	k := nodeKey{level, index}
	if h, ok := l.tree[k]; ok {
		return h
	}
	var h Hash
	if level == 0 {
		d := sha256.New()
		for ; i < len(l.recs) && l.recs[i].Seq <= hi; i++ {
			l.buf = appendPayload(l.buf[:0], l.recs[i])
			d.Write(l.buf)
		}
		d.Sum(h[:0])
	} else {
		var children [Fanout * sha256.Size]byte
		for c := range uint64(Fanout) {
			ch := l.hashLocked(level-1, index<<fanBits|c)
			copy(children[c*sha256.Size:], ch[:])
		}
		h = sha256.Sum256(children[:])
	}
	l.tree[k] = h
	return h
}

// invalidate forgets the cached hashes of every node above seq.
func (l *Log) invalidate(seq uint64) {
	for level := 0; level <= MaxLevel; level++ {
		delete(l.tree, nodeKey{level, seq >> shift(level)})
	}
}

// Summary is the top of a log's tree: what a peer compares first.
type Summary struct {
	Last  uint64 `json:"last"`  // highest sequence number
	Count int    `json:"count"` // records
	Level int    `json:"level"` // level of Hashes: the lowest at which [0, Last] fits in Fanout nodes
	// Hashes are the nodes 0 .. Last>>shift(Level) of Level; none for an
	// empty log.
	Hashes []Hash `json:"hashes"`
}

// Summary returns the top of the tree.
func (l *Log) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Summary{Last: l.lastLocked(), Count: len(l.recs)}
	if s.Count == 0 {
		return s
	}
	s.Level = topLevel(s.Last)
	for i := range s.Last>>shift(s.Level) + 1 {
		s.Hashes = append(s.Hashes, l.hashLocked(s.Level, i))
	}
	return s
}

// Children returns the hashes of the Fanout children of node (level, index),
// level >= 1.
func (l *Log) Children(level int, index uint64) [Fanout]Hash {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [Fanout]Hash
	if level < 1 || level > MaxLevel || index > math.MaxUint64>>shift(level) {
		return out
	}
	for c := range uint64(Fanout) {
		out[c] = l.hashLocked(level-1, index<<fanBits|c)
	}
	return out
}
