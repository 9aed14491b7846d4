// Package storage holds cached responses: the Object type every tier stores,
// and the tiers themselves.
//
//   - RAM: objects bounded in bytes, sharded by key hash so concurrent hits
//     do not queue on one lock, each shard under an eviction policy built on
//     golang-lru lists (lru, 2q, arc, or the default tinylfu: W-TinyLFU with
//     a frequency sketch and doorkeeper in front of a segmented LRU).
//   - disk: SSD spillover. Objects RAM evicts are written to files named by
//     a hash of their key, atomically (temporary file, then rename); every
//     read checks the file's length and header block checksum, so a torn or
//     corrupt file is dropped, never served. Bodies are served from the file
//     (Object.OpenBody, sendfile). The index is checkpointed and rebuilt on
//     start, so a restart finds the cache warm.
//   - Tiered: both, as one store (Get, Put, Delete, Range, TierStats), with
//     a streaming write (Create) for bodies too large to hold in memory.
//
// Objects are immutable once stored: a tier never modifies one, and a reader
// may keep using an object after it was evicted or replaced.
package storage

import (
	"errors"
	"net/http"
	"os"
	"time"
	"unsafe"
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
	// Body is the whole body when it is in memory. An object read from the
	// disk tier has a nil Body until it is promoted to RAM: its body is in a
	// file, served with OpenBody; BodyLen is its length either way.
	Body []byte

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

	// disk locates the body in the disk tier; nil for an object that was
	// never on disk. Copies of an Object keep it.
	disk *diskRef
}

// diskRef is where an object's body is on disk: file path, the write that
// produced the file, and the body's length and checksum.
type diskRef struct {
	path    string
	id      fileID
	writeID uint64
	bodyLen int64
	bodyCRC uint32
	fs      fileSystem
}

// ErrNoDiskBody is returned by OpenBody for an object without a body on disk.
var ErrNoDiskBody = errors.New("storage: object has no body on disk")

// ErrGone is returned by OpenBody when the file no longer holds this object:
// it was evicted, purged or replaced since the object was read. Treat it as
// a miss.
var ErrGone = errors.New("storage: object left the disk tier")

// BodyLen is the length of the body: len(Body), or the length of the body
// on disk when Body is nil.
func (o *Object) BodyLen() int64 {
	if o.Body == nil && o.disk != nil {
		return o.disk.bodyLen
	}
	return int64(len(o.Body))
}

// HasDiskBody reports whether the body is in a file (OpenBody works). An
// object promoted to RAM has both a Body and a file.
func (o *Object) HasDiskBody() bool { return o.disk != nil }

// OpenBody opens the file holding the body, positioned at the body's first
// byte, and returns it with the body's length n. The caller reads at most n
// bytes and closes f. Copying io.LimitReader(f, n) to an http.ResponseWriter
// (or a *net.TCPConn) lets the kernel send the file without copying it
// through user space (sendfile). For a byte range, f.Seek(start,
// io.SeekCurrent) first.
//
// The file is checked against the object (its length and the write that
// made it) so that a file replaced since Get is never served for this
// object: that case, and a file evicted or purged since, return ErrGone.
func (o *Object) OpenBody() (f *os.File, n int64, err error) {
	d := o.disk
	if d == nil {
		return nil, 0, ErrNoDiskBody
	}
	f, err = d.fs.Open(d.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, ErrGone
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	var buf [footerSize]byte
	if fi.Size() < footerSize {
		f.Close()
		return nil, 0, ErrGone
	}
	if _, err := f.ReadAt(buf[:], fi.Size()-footerSize); err != nil {
		f.Close()
		return nil, 0, err
	}
	ft, err := decodeFooter(buf[:], fi.Size())
	if err != nil || ft.writeID != d.writeID || ft.bodyLen != d.bodyLen {
		f.Close()
		return nil, 0, ErrGone
	}
	return f, d.bodyLen, nil
}

// IsMarker reports whether o is a Vary marker rather than a response.
func (o *Object) IsMarker() bool { return o.VaryNames != nil }

// objectOverhead is what an Object costs beyond its strings, header and
// body: the struct itself and the RAM tier's index entry holding it (118
// bytes measured with the tinylfu policy, 103 with lru; see TestIndexOverhead).
const objectOverhead = int64(unsafe.Sizeof(Object{})) + 120

// Size is the number of bytes o is charged against a byte budget.
func (o *Object) Size() int64 {
	n := objectOverhead + int64(len(o.Key)+len(o.Body))
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
	for _, s := range o.HitStatus {
		n += int64(len(s)) + 16
	}
	if o.disk != nil {
		n += int64(unsafe.Sizeof(diskRef{})) + int64(len(o.disk.path))
	}
	return n
}
