// Package storage holds cached responses: the Object type every tier stores,
// and the tiers themselves. The RAM tier is an LRU bounded in bytes, sharded
// so that concurrent hits do not queue on one lock.
//
// Objects are immutable once stored: a tier never modifies one, and a reader
// may keep using an object after it was evicted or replaced.
package storage

import (
	"net/http"
	"time"
)

// Object is one stored response, or a Vary marker that points at variants.
type Object struct {
	Key string // storage key

	// Vary marker fields: a marker is stored at a URL's primary key when its
	// responses vary; each variant is stored under VariantKey.
	VaryNames []string // canonical request field names; nil for a response
	VaryGen   uint64   // generation, so variants of a purged marker never resurface

	Status int
	Header http.Header // as served: hop-by-hop fields removed, without Age
	Body   []byte      // the whole body

	RequestTime  time.Time // when the upstream request was sent
	ResponseTime time.Time // when its response arrived
	Lifetime     time.Duration
	InitialAge   time.Duration
	SWR          time.Duration // stale-while-revalidate
	SIE          time.Duration // stale-if-error
	NoCache      bool          // validate before every use
	NoStale      bool          // never serve stale

	SurrogateKeys []string // from Surrogate-Key / Cache-Tag, for purge by tag

	// HitStatus is the Cache-Status value served on a fresh hit, prepared by
	// the cache engine when it stores the object so a hit builds nothing.
	HitStatus []string
}

// IsMarker reports whether o is a Vary marker rather than a response.
func (o *Object) IsMarker() bool { return o.VaryNames != nil }

// objectOverhead approximates the bytes an Object costs beyond its strings,
// header and body: the struct itself and the index entry holding it.
const objectOverhead = 256

// Size is the number of bytes o is charged against a byte budget.
func (o *Object) Size() int64 {
	n := int64(objectOverhead + len(o.Key) + len(o.Body))
	for k, vs := range o.Header {
		n += int64(len(k)) + 16
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	for _, s := range o.VaryNames {
		n += int64(len(s)) + 16
	}
	for _, s := range o.SurrogateKeys {
		n += int64(len(s)) + 16
	}
	return n
}
