package dnsredirect

import (
	"encoding/binary"
	"net/netip"
)

// Wire-format constants (RFC 1035, RFC 6891, RFC 7871).
const (
	headerLen = 12
	maxName   = 255

	classIN  = 1
	classANY = 255

	typeA     = 1
	typeNS    = 2
	typeCNAME = 5
	typeSOA   = 6
	typeAAAA  = 28
	typeOPT   = 41
	typeIXFR  = 251
	typeAXFR  = 252
	typeANY   = 255

	optECS = 8

	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagCD = 1 << 4

	rcodeNoError  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
	rcodeBadVers  = 16 // extended: the upper 8 bits travel in the OPT record

	familyIPv4 = 1
	familyIPv6 = 2

	// minUDP is what a client without EDNS can take (RFC 1035).
	minUDP = 512
	// maxTCP is the largest message a TCP length prefix can carry.
	maxTCP = 65535
)

// verdict is what parse makes of a message.
type verdict uint8

const (
	vQuery   verdict = iota // a well-formed standard query
	vDrop                   // no reply: shorter than a header, or a response
	vFormErr                // malformed: FORMERR
	vNotImp                 // an opcode other than QUERY: NOTIMP
	vBadVers                // EDNS version other than 0: BADVERS
)

// query is a parsed DNS query. One is reused per serving goroutine, so it
// holds its name in an array rather than a slice.
type query struct {
	id       uint16
	flags    uint16
	opcode   uint8
	question bool // the question parsed; the reply echoes it
	qdEnd    int  // offset just past the question
	qtype    uint16
	qclass   uint16

	name    [maxName]byte // question name in wire form, ASCII lower-cased
	nameLen int
	labels  [128]uint8 // offset of each label in name
	nLabels int

	edns    bool // a valid OPT record was present
	version uint8
	do      bool
	udpSize uint16

	ecs        bool // a valid EDNS Client Subnet option was present
	ecsFamily  uint16
	ecsSource  uint8
	ecsAddrLen int
	ecsAddr    [16]byte // the address octets as sent, zero-padded

	cookie       bool // a COOKIE option was present (RFC 7873)
	clientCookie [clientCookieLen]byte
	serverLen    int // bytes of serverCookie the client sent; 0: none
	serverCookie [maxServerCookie]byte
}

// parse reads a message. It never reads outside m and never allocates.
func (q *query) parse(m []byte) verdict {
	q.question, q.edns, q.ecs, q.cookie = false, false, false, false
	if len(m) < headerLen {
		return vDrop
	}
	q.id = binary.BigEndian.Uint16(m)
	q.flags = binary.BigEndian.Uint16(m[2:])
	if q.flags&flagQR != 0 {
		return vDrop // never answer a response: that is how reflection loops start
	}
	q.opcode = uint8(q.flags>>11) & 0xF
	qd := binary.BigEndian.Uint16(m[4:])
	an := int(binary.BigEndian.Uint16(m[6:]))
	ns := int(binary.BigEndian.Uint16(m[8:]))
	ar := int(binary.BigEndian.Uint16(m[10:]))
	// Read every section before judging, so that any reply, even NOTIMP,
	// can carry an OPT record when the query had one (RFC 6891 section 7).
	off := headerLen
	for i := 0; i < int(qd); i++ {
		var ok bool
		if i == 0 {
			off, ok = q.parseName(m, off)
		} else {
			off, ok = skipName(m, off)
		}
		if !ok || off+4 > len(m) {
			return q.malformed()
		}
		off += 4
		if i == 0 {
			q.qtype = binary.BigEndian.Uint16(m[off-4:])
			q.qclass = binary.BigEndian.Uint16(m[off-2:])
			q.qdEnd = off
			q.question = true
		}
	}
	var ok bool
	for i := 0; i < an+ns; i++ {
		if off, ok = skipRR(m, off); !ok {
			return q.malformed()
		}
	}
	for i := 0; i < ar; i++ {
		nameStart := off
		if off, ok = skipName(m, off); !ok || off+10 > len(m) {
			return q.malformed()
		}
		typ := binary.BigEndian.Uint16(m[off:])
		rdStart := off + 10
		end := rdStart + int(binary.BigEndian.Uint16(m[off+8:]))
		if end > len(m) {
			return q.malformed()
		}
		if typ == typeOPT {
			// One OPT, owned by the root (RFC 6891 section 6.1.1).
			if q.edns || off != nameStart+1 || m[nameStart] != 0 || !q.parseOPT(m[off:end]) {
				q.edns, q.ecs, q.cookie = false, false, false
				return q.malformed()
			}
		}
		off = end
	}
	if q.opcode != 0 {
		return vNotImp
	}
	if qd != 1 {
		q.question = false
		return vFormErr
	}
	if q.edns && q.version != 0 {
		return vBadVers
	}
	if q.qtype == typeOPT {
		return vFormErr // a meta type that cannot be asked for
	}
	return vQuery
}

// malformed is the verdict on a message that does not parse: FORMERR, or
// NOTIMP for an opcode we do not implement anyway.
func (q *query) malformed() verdict {
	if q.opcode != 0 {
		return vNotImp
	}
	return vFormErr
}

// parseName reads the question name (no compression is possible there) into
// q.name, lower-casing ASCII letters, and returns the offset after it.
func (q *query) parseName(m []byte, off int) (int, bool) {
	n, labels := 0, 0
	for {
		if off >= len(m) {
			return 0, false
		}
		l := int(m[off])
		if l == 0 {
			if n+1 > maxName {
				return 0, false
			}
			q.name[n] = 0
			q.nameLen = n + 1
			q.nLabels = labels
			return off + 1, true
		}
		if l&0xC0 != 0 || off+1+l > len(m) || n+1+l+1 > maxName {
			return 0, false
		}
		q.labels[labels] = uint8(n)
		labels++
		q.name[n] = byte(l)
		for i, c := range m[off+1 : off+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			q.name[n+1+i] = c
		}
		n += 1 + l
		off += 1 + l
	}
}

// parseOPT reads an OPT record from its TYPE field on: rr is TYPE, CLASS,
// TTL, RDLENGTH and RDATA.
func (q *query) parseOPT(rr []byte) bool {
	q.udpSize = binary.BigEndian.Uint16(rr[2:])
	ttl := binary.BigEndian.Uint32(rr[4:])
	q.version = uint8(ttl >> 16)
	q.do = ttl&0x8000 != 0
	opts := rr[10:]
	for len(opts) > 0 {
		if len(opts) < 4 {
			return false
		}
		code := binary.BigEndian.Uint16(opts)
		olen := int(binary.BigEndian.Uint16(opts[2:]))
		if 4+olen > len(opts) {
			return false
		}
		if code == optECS && !q.parseECS(opts[4:4+olen]) {
			return false
		}
		if code == optCookie && !q.parseCookie(opts[4:4+olen]) {
			return false
		}
		opts = opts[4+olen:]
	}
	q.edns = true
	return true
}

// parseECS checks an EDNS Client Subnet option the way RFC 7871 section 6
// asks: a known family, a source prefix that fits it, exactly the octets the
// prefix needs and no bits set past it. Anything else is FORMERR. SCOPE
// PREFIX-LENGTH must be 0 in queries; another value is ignored.
func (q *query) parseECS(d []byte) bool {
	if q.ecs || len(d) < 4 {
		return false // at most one ECS option per query
	}
	family := binary.BigEndian.Uint16(d)
	source := int(d[2])
	addr := d[4:]
	switch {
	case family == familyIPv4 && source <= 32:
	case family == familyIPv6 && source <= 128:
	default:
		return false
	}
	if len(addr) != (source+7)/8 {
		return false
	}
	if rem := source % 8; rem != 0 && addr[len(addr)-1]&(0xFF>>rem) != 0 {
		return false
	}
	q.ecs = true
	q.ecsFamily = family
	q.ecsSource = uint8(source)
	q.ecsAddrLen = copy(q.ecsAddr[:], addr)
	clear(q.ecsAddr[q.ecsAddrLen:])
	return true
}

// ecsPrefix returns the client subnet of the query's ECS option.
func (q *query) ecsPrefix() netip.Addr {
	if q.ecsFamily == familyIPv4 {
		return netip.AddrFrom4([4]byte(q.ecsAddr[:4]))
	}
	return netip.AddrFrom16(q.ecsAddr)
}

// skipName returns the offset after a possibly compressed name at off.
func skipName(m []byte, off int) (int, bool) {
	for {
		if off >= len(m) {
			return 0, false
		}
		l := int(m[off])
		switch l & 0xC0 {
		case 0x00:
			if l == 0 {
				return off + 1, true
			}
			off += 1 + l
		case 0xC0:
			if off+2 > len(m) {
				return 0, false
			}
			return off + 2, true
		default:
			return 0, false // extended label types (RFC 6891 section 5) are not in use
		}
	}
}

// skipRR returns the offset after the resource record at off.
func skipRR(m []byte, off int) (int, bool) {
	off, ok := skipName(m, off)
	if !ok || off+10 > len(m) {
		return 0, false
	}
	end := off + 10 + int(binary.BigEndian.Uint16(m[off+8:]))
	if end > len(m) {
		return 0, false
	}
	return end, true
}
