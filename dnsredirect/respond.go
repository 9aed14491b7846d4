package dnsredirect

import (
	"encoding/binary"
	"net/netip"
)

// The responder turns one query message into one reply message, in wire
// format, without allocating: the UDP and TCP serving loops and ServeDNS
// all go through respond, so every transport gives the same answers.
//
// Replies compress owner names with pointers: to the question name at
// offset 12, to a suffix of it for the zone apex, or to a CNAME target
// written earlier in the reply. Record data is copied from tails packed by
// miekg/dns when the zones were compiled.

// scratch is the responder's working state for one serving goroutine.
type scratch struct {
	q   query
	buf []byte // the reply is built at buf[pre:]
	pre int    // bytes reserved in front of the reply (2 for a TCP length prefix)
}

func newScratch(pre int) *scratch {
	return &scratch{buf: make([]byte, pre, pre+4096), pre: pre}
}

// maxChase bounds the CNAME chain followed inside our zones.
const maxChase = 8

// builder accumulates the answer and authority sections.
type builder struct {
	b      []byte
	base   int // offset of the message in b
	an, ns uint16
	rcode  int
	aa     bool
	site   int // index of the site answered from, -1 when none
	scope  int // ECS SCOPE PREFIX-LENGTH to echo
}

func (w *builder) off() int { return len(w.b) - w.base }

// rr writes a record whose owner is the name at message offset owner.
func (w *builder) rr(owner int, tail []byte) {
	w.b = append(w.b, 0xC0|byte(owner>>8), byte(owner))
	w.b = append(w.b, tail...)
}

// authority writes the SOA that goes with a negative answer.
func (w *builder) authority(owner int, tail []byte) {
	w.rr(owner, tail)
	w.ns++
}

// respond answers message m from src. It returns the reply, a slice of
// sc.buf valid until the next call, or nil when m gets no reply. udp selects
// the UDP size limits and truncation.
func (s *Server) respond(sc *scratch, ctr *counters, m []byte, src netip.Addr, udp bool) []byte {
	q := &sc.q
	switch q.parse(m) {
	case vDrop:
		ctr.dropped.Add(1)
		return nil
	case vFormErr:
		return s.bare(sc, ctr, m, rcodeFormErr)
	case vNotImp:
		return s.bare(sc, ctr, m, rcodeNotImp)
	case vBadVers:
		return s.bare(sc, ctr, m, rcodeBadVers)
	}

	w := builder{b: sc.buf[:sc.pre], base: sc.pre, site: -1}
	w.b = append(w.b, make([]byte, headerLen)...) // filled in last
	w.b = append(w.b, m[headerLen:q.qdEnd]...)    // the question as asked, case and all
	qEnd := len(w.b)
	s.answer(&w, q, src, ctr)

	// The cookie for the reply: the client's own when valid and fresh,
	// else a new one. Only a valid cookie lifts the amplification cap.
	cookieOK := false
	if q.cookie {
		src := src.Unmap()
		now := uint32(s.now().Unix())
		renew := true
		if q.serverLen > 0 {
			cookieOK, renew = s.cookies.verify(&q.clientCookie, q.serverCookie[:q.serverLen], src, now)
			renew = renew || !cookieOK
		}
		if renew {
			var c [serverCookieLen]byte
			s.cookies.issue(&c, &q.clientCookie, src, now)
			q.serverLen = copy(q.serverCookie[:], c[:])
		}
	}
	optLen := 0
	if q.edns {
		optLen = 11
		if q.ecs {
			optLen += 8 + q.ecsAddrLen
		}
		if q.cookie {
			optLen += 4 + clientCookieLen + q.serverLen
		}
	}
	limit := maxTCP
	if udp {
		limit = minUDP
		if q.edns {
			limit = min(max(int(q.udpSize), minUDP), s.maxUDP)
		}
		if !cookieOK {
			limit = min(limit, maxAmplification*len(m))
		}
	}
	tc := false
	if w.off()+optLen > limit {
		// Too big for the transport (or, without a valid cookie, for the
		// amplification cap): header, question and OPT with TC set, so the
		// client asks again over TCP (RFC 7766) or with the cookie.
		w.b, w.an, w.ns, tc = w.b[:qEnd], 0, 0, true
		ctr.truncated.Add(1)
	}
	ar := 0
	if q.edns {
		w.b = s.appendOPT(w.b, q, w.rcode, w.scope)
		ar = 1
	}
	flags := uint16(flagQR) | q.flags&(flagRD|flagCD) | uint16(w.rcode&0xF)
	if w.aa {
		flags |= flagAA
	}
	if tc {
		flags |= flagTC
	}
	putHeader(w.b[w.base:], q.id, flags, 1, w.an, w.ns, uint16(ar))
	ctr.count(q.qtype, w.rcode, w.site)
	return w.b[w.base:]
}

// bare writes a reply with no records: FORMERR, NOTIMP or BADVERS.
func (s *Server) bare(sc *scratch, ctr *counters, m []byte, rcode int) []byte {
	q := &sc.q
	b := append(sc.buf[:sc.pre], make([]byte, headerLen)...)
	qd, ar := 0, 0
	if q.question {
		b = append(b, m[headerLen:q.qdEnd]...)
		qd = 1
	}
	if q.edns {
		b = s.appendOPT(b, q, rcode, 0)
		ar = 1
	}
	flags := uint16(flagQR) | uint16(q.opcode)<<11 | q.flags&(flagRD|flagCD) | uint16(rcode&0xF)
	putHeader(b[sc.pre:], q.id, flags, uint16(qd), 0, 0, uint16(ar))
	qtype := uint16(0)
	if q.question {
		qtype = q.qtype
	}
	ctr.count(qtype, rcode, -1)
	return b[sc.pre:]
}

func putHeader(b []byte, id, flags, qd, an, ns, ar uint16) {
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], qd)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	binary.BigEndian.PutUint16(b[10:], ar)
}

// appendOPT writes the reply's OPT record: our UDP size, the upper bits of
// an extended rcode, version 0, the DO bit copied (RFC 3225), and the
// client's ECS option echoed with its scope (RFC 7871 section 7.2.1).
func (s *Server) appendOPT(b []byte, q *query, rcode, scope int) []byte {
	var do byte
	if q.do {
		do = 0x80
	}
	rdlen := 0
	ecs := q.ecs && rcode != rcodeFormErr && rcode != rcodeBadVers
	if ecs {
		rdlen = 8 + q.ecsAddrLen
	}
	cookie := q.cookie && rcode != rcodeFormErr && rcode != rcodeBadVers && q.serverLen == serverCookieLen
	if cookie {
		rdlen += 4 + clientCookieLen + serverCookieLen
	}
	b = append(b, 0, 0, typeOPT, byte(s.maxUDP>>8), byte(s.maxUDP), byte(rcode>>4), 0, do, 0, byte(rdlen>>8), byte(rdlen))
	if ecs {
		olen := 4 + q.ecsAddrLen
		b = append(b, 0, optECS, byte(olen>>8), byte(olen), byte(q.ecsFamily>>8), byte(q.ecsFamily), q.ecsSource, byte(scope))
		b = append(b, q.ecsAddr[:q.ecsAddrLen]...)
	}
	if cookie {
		b = append(b, 0, optCookie, 0, clientCookieLen+serverCookieLen)
		b = append(b, q.clientCookie[:]...)
		b = append(b, q.serverCookie[:serverCookieLen]...)
	}
	return b
}

// answer fills the answer and authority sections for a well-formed query.
func (s *Server) answer(w *builder, q *query, src netip.Addr, ctr *counters) {
	if q.qclass != classIN && q.qclass != classANY {
		w.rcode = rcodeRefused
		return
	}
	n := s.zones.nodes[string(q.name[:q.nameLen])]
	if n == nil {
		z, apex := s.zoneOf(q)
		if z == nil {
			w.rcode = rcodeRefused // not our zone: we are not a resolver
			return
		}
		w.aa = true
		w.rcode = rcodeNXDomain
		w.authority(apex, z.negSOA)
		return
	}
	if q.qtype == typeAXFR || q.qtype == typeIXFR {
		w.rcode = rcodeRefused // zone transfers are not offered
		return
	}
	w.aa = true
	owner, ownerLen := headerLen, q.nameLen
	for hops := 1; ; hops++ {
		if n.cname != nil && q.qtype != typeCNAME {
			// Answer with the CNAME, then follow it while it stays in our zones.
			rdata := w.off() + 2 + 10
			w.rr(owner, n.cname)
			w.an++
			next := s.zones.nodes[string(n.target)]
			if next == nil {
				if z := s.zoneOfWire(n.target); z != nil {
					w.rcode = rcodeNXDomain // RFC 6604: the rcode of the last name in the chain
					w.authority(rdata+len(n.target)-len(z.apex), z.negSOA)
				}
				return
			}
			if hops == maxChase {
				return
			}
			owner, ownerLen, n = rdata, len(n.target), next
			continue
		}
		before := w.an
		s.data(w, q, n, owner, src, ctr)
		if w.an == before {
			w.authority(owner+ownerLen-len(n.zone.apex), n.zone.negSOA) // NODATA
		}
		return
	}
}

// data writes the records of type q.qtype held at n.
func (s *Server) data(w *builder, q *query, n *node, owner int, src netip.Addr, ctr *counters) {
	switch {
	case q.qtype == typeCNAME:
		if n.cname != nil {
			w.rr(owner, n.cname)
			w.an++
		}
	case q.qtype == typeANY:
		// RFC 8482: one small record instead of everything, so ANY does not
		// amplify.
		if !n.empty() {
			w.rr(owner, n.zone.hinfo)
			w.an++
		}
	case n.geo && (q.qtype == typeA || q.qtype == typeAAAA):
		s.geoAnswer(w, q, owner, src, ctr)
	case n.apex && q.qtype == typeSOA:
		w.rr(owner, n.zone.soa)
		w.an++
	case n.apex && q.qtype == typeNS:
		for _, t := range n.zone.ns {
			w.rr(owner, t)
			w.an++
		}
	default:
		if set := n.set(q.qtype); set != nil {
			for _, t := range set.rrs {
				w.rr(owner, t)
				w.an++
			}
		}
	}
}

// geoAnswer writes the A or AAAA records of the edges chosen for the client.
func (s *Server) geoAnswer(w *builder, q *query, owner int, src netip.Addr, ctr *counters) {
	client := src
	if q.ecs && q.ecsSource > 0 {
		client = q.ecsPrefix()
	}
	mapped := client.Is4In6()
	client = client.Unmap()
	rank, scope := s.locate(client, ctr)
	if q.ecs {
		switch {
		case q.ecsSource == 0:
			w.scope = 0 // RFC 7871 section 7.1.2: no client information, an answer for everyone
		case scope < 0:
			w.scope = int(q.ecsSource)
		case mapped:
			w.scope = scope + 96
		default:
			w.scope = scope
		}
	}
	snap := s.snap.Load()
	si := int(rank[0]) // failing open: the nearest site, every edge
	for _, r := range rank {
		if snap.sites[r].alive {
			si = int(r)
			break
		}
	}
	w.site = si
	p, hdr := &snap.sites[si].a, &s.aTail
	if q.qtype == typeAAAA {
		p, hdr = &snap.sites[si].aaaa, &s.aaaaTail
	}
	n := p.size(s.answers)
	for i := range n {
		a := p.at(i, n, q.id)
		w.b = append(w.b, 0xC0|byte(owner>>8), byte(owner))
		w.b = append(w.b, hdr[:]...)
		if q.qtype == typeA {
			b := a.As4()
			w.b = append(w.b, b[:]...)
		} else {
			b := a.As16()
			w.b = append(w.b, b[:]...)
		}
	}
	w.an += uint16(n)
}

// zoneOf finds the zone holding the question name, and the message offset
// of the apex's suffix within it.
func (s *Server) zoneOf(q *query) (*zone, int) {
	for i := 0; i < q.nLabels; i++ {
		start := int(q.labels[i])
		if z := s.zones.zones[string(q.name[start:q.nameLen])]; z != nil {
			return z, headerLen + start
		}
	}
	return nil, 0
}

// zoneOfWire finds the zone holding a wire-form, lower-case name.
func (s *Server) zoneOfWire(name []byte) *zone {
	for i := 0; i < len(name) && name[i] != 0; i += 1 + int(name[i]) {
		if z := s.zones.zones[string(name[i:])]; z != nil {
			return z
		}
	}
	return nil
}
