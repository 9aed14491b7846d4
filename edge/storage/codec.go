package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"time"
)

// A disk file holds one object: its body first (so a body starts at offset 0
// and streams straight from the file), then the header block (the object's
// metadata, encoded by encodeMeta), then a fixed-size footer:
//
//	offset  size  field
//	0       8     magic "VRGOBJ\x00\x01"
//	8       8     write ID (random per write: tells two versions of a key apart)
//	16      8     body length
//	24      4     header block length
//	28      4     CRC-32C of the header block
//	32      4     CRC-32C of the body
//	36      4     CRC-32C of footer bytes 0..35
//
// All integers are little-endian. A file is accepted only if its length is
// body + header block + footer and all three checksums of the header block
// and footer match; the body checksum is checked whenever a body is read into
// memory and on the first read of a file left by an earlier process.

const (
	footerSize   = 40
	footerMagic  = "VRGOBJ\x00\x01"
	maxMetaBytes = 1 << 20 // largest header block accepted
	metaVersion  = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt reports a file or header block that fails its checks.
var errCorrupt = errors.New("storage: corrupt object file")

// footer is the decoded fixed trailer of an object file.
type footer struct {
	writeID uint64
	bodyLen int64
	metaLen int64
	metaCRC uint32
	bodyCRC uint32
}

func (f *footer) fileSize() int64 { return f.bodyLen + f.metaLen + footerSize }

func (f *footer) encode(b []byte) {
	copy(b[0:8], footerMagic)
	binary.LittleEndian.PutUint64(b[8:], f.writeID)
	binary.LittleEndian.PutUint64(b[16:], uint64(f.bodyLen))
	binary.LittleEndian.PutUint32(b[24:], uint32(f.metaLen))
	binary.LittleEndian.PutUint32(b[28:], f.metaCRC)
	binary.LittleEndian.PutUint32(b[32:], f.bodyCRC)
	binary.LittleEndian.PutUint32(b[36:], crc32.Checksum(b[:36], castagnoli))
}

// decodeFooter parses the last footerSize bytes of b and checks them against
// the file's size.
func decodeFooter(b []byte, fileSize int64) (footer, error) {
	var f footer
	if len(b) < footerSize {
		return f, fmt.Errorf("%w: short footer", errCorrupt)
	}
	b = b[len(b)-footerSize:]
	if string(b[:8]) != footerMagic {
		return f, fmt.Errorf("%w: bad magic", errCorrupt)
	}
	if crc32.Checksum(b[:36], castagnoli) != binary.LittleEndian.Uint32(b[36:]) {
		return f, fmt.Errorf("%w: footer checksum", errCorrupt)
	}
	f.writeID = binary.LittleEndian.Uint64(b[8:])
	bl := binary.LittleEndian.Uint64(b[16:])
	f.metaLen = int64(binary.LittleEndian.Uint32(b[24:]))
	f.metaCRC = binary.LittleEndian.Uint32(b[28:])
	f.bodyCRC = binary.LittleEndian.Uint32(b[32:])
	if bl > 1<<62 || f.metaLen > maxMetaBytes {
		return f, fmt.Errorf("%w: lengths out of range", errCorrupt)
	}
	f.bodyLen = int64(bl)
	if f.fileSize() != fileSize {
		return f, fmt.Errorf("%w: length %d, footer says %d", errCorrupt, fileSize, f.fileSize())
	}
	return f, nil
}

// parseTail decodes an object from the tail of its file: tail holds the last
// len(tail) bytes of a file of fileSize bytes. It returns the footer, and
// meta when tail holds the whole header block (need > 0 says how many tail
// bytes are needed otherwise).
func parseTail(tail []byte, fileSize int64) (f footer, meta *Object, need int, err error) {
	f, err = decodeFooter(tail, fileSize)
	if err != nil {
		return f, nil, 0, err
	}
	n := int(f.metaLen) + footerSize
	if len(tail) < n {
		return f, nil, n, nil
	}
	mb := tail[len(tail)-n : len(tail)-footerSize]
	if crc32.Checksum(mb, castagnoli) != f.metaCRC {
		return f, nil, 0, fmt.Errorf("%w: header block checksum", errCorrupt)
	}
	meta, err = decodeMeta(mb)
	return f, meta, 0, err
}

// encodeMeta appends the header block of o (everything but the body) to b.
func encodeMeta(b []byte, o *Object) []byte {
	b = append(b, metaVersion)
	b = appendString(b, o.Key)
	b = binary.AppendUvarint(b, uint64(o.Status))
	var flags byte
	if o.NoCache {
		flags |= 1
	}
	if o.NoStale {
		flags |= 2
	}
	if o.VaryNames != nil {
		flags |= 4
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, o.VaryGen)
	b = appendStrings(b, o.VaryNames)
	b = binary.AppendUvarint(b, uint64(len(o.Header)))
	for k, vs := range o.Header {
		b = appendString(b, k)
		b = appendStrings(b, vs)
	}
	b = appendTime(b, o.RequestTime)
	b = appendTime(b, o.ResponseTime)
	for _, d := range [...]time.Duration{o.Lifetime, o.InitialAge, o.SWR, o.SIE} {
		b = binary.AppendVarint(b, int64(d))
	}
	b = appendStrings(b, o.SurrogateKeys)
	b = appendStrings(b, o.HitStatus)
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// metaReader decodes a header block; the first error sticks.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: header block: %s", errCorrupt, what)
	}
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *metaReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail("string past the end")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a list length; every element takes at least one byte, so a
// count beyond the bytes left is corrupt (and never allocates).
func (r *metaReader) count() int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail("count past the end")
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

// strings reads a list; an empty list decodes as nil unless keepEmpty.
func (r *metaReader) strings(keepEmpty bool) []string {
	n := r.count()
	if r.err != nil || (n == 0 && !keepEmpty) {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.string()
	}
	return ss
}

func (r *metaReader) time() time.Time {
	sec := r.varint()
	nsec := r.uvarint()
	if r.err == nil && nsec >= 1e9 {
		r.fail("bad nanoseconds")
	}
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// decodeMeta decodes a header block produced by encodeMeta. It never panics
// and allocates in proportion to len(b).
func decodeMeta(b []byte) (*Object, error) {
	r := &metaReader{b: b}
	if v := r.byte(); r.err == nil && v != metaVersion {
		return nil, fmt.Errorf("%w: header block version %d", errCorrupt, v)
	}
	o := &Object{}
	o.Key = r.string()
	status := r.uvarint()
	if r.err == nil && status > 999 {
		r.fail("bad status")
	}
	o.Status = int(status)
	flags := r.byte()
	if r.err == nil && flags&^7 != 0 {
		r.fail("unknown flags")
	}
	o.NoCache, o.NoStale = flags&1 != 0, flags&2 != 0
	o.VaryGen = r.uvarint()
	o.VaryNames = r.strings(flags&4 != 0)
	if r.err == nil && flags&4 == 0 && o.VaryNames != nil {
		r.fail("vary names without the marker flag")
	}
	nh := r.count()
	if r.err == nil && nh > 0 {
		o.Header = make(http.Header, nh)
		for range nh {
			k := r.string()
			vs := r.strings(true)
			if r.err != nil {
				break
			}
			if _, dup := o.Header[k]; dup {
				r.fail("duplicate header field")
				break
			}
			o.Header[k] = vs
		}
	}
	o.RequestTime = r.time()
	o.ResponseTime = r.time()
	o.Lifetime = time.Duration(r.varint())
	o.InitialAge = time.Duration(r.varint())
	o.SWR = time.Duration(r.varint())
	o.SIE = time.Duration(r.varint())
	o.SurrogateKeys = r.strings(false)
	o.HitStatus = r.strings(false)
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	if o.Key == "" {
		return nil, fmt.Errorf("%w: header block: empty key", errCorrupt)
	}
	return o, nil
}
