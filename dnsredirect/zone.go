package dnsredirect

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/miekg/dns"

	"github.com/vergecdn/verge/configs"
)

// zoneSet is every name the server answers for, compiled for lookups by
// lower-case wire-format name.
type zoneSet struct {
	zones map[string]*zone // apex -> zone
	nodes map[string]*node // owner name -> node; includes apexes and empty non-terminals
}

// zone is one authoritative zone. Records are kept as packed "tails": the
// wire bytes of a resource record after its owner name (type, class, TTL,
// RDLENGTH, RDATA), so a reply writes a compression pointer for the owner
// and copies the tail.
type zone struct {
	name   string // presentation form, "cdn.example.com."
	apex   []byte // wire form, lower case
	soa    []byte // SOA tail with the zone TTL
	negSOA []byte // SOA tail with the negative-caching TTL, for NXDOMAIN and NODATA
	ns     [][]byte
	hinfo  []byte // RFC 8482 reply to ANY queries
}

// node is the data held at one owner name.
type node struct {
	zone   *zone
	apex   bool
	geo    bool    // A and AAAA come from edge selection
	cname  []byte  // CNAME tail, nil if none
	target []byte  // the CNAME's target, wire form, lower case
	sets   []rrset // static records by type
	name   string  // presentation form, for errors
}

type rrset struct {
	typ uint16
	rrs [][]byte // tails
}

func (n *node) set(typ uint16) *rrset {
	for i := range n.sets {
		if n.sets[i].typ == typ {
			return &n.sets[i]
		}
	}
	return nil
}

// empty reports whether n holds no data (an empty non-terminal, or an apex
// is never empty because of SOA and NS).
func (n *node) empty() bool { return !n.apex && !n.geo && n.cname == nil && len(n.sets) == 0 }

// seconds converts a configured duration to a TTL.
func seconds(d configs.Duration) uint32 { return uint32(d.D().Seconds()) }

// compileZones builds the zone set from the configuration. serial replaces
// a zero SOA serial. Errors are configs.FieldErrors naming the key.
func compileZones(c *Config, serial uint32) (*zoneSet, error) {
	zs := &zoneSet{zones: map[string]*zone{}, nodes: map[string]*node{}}
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, configs.Errorf(key, format, args...)) }
	buf := make([]byte, dns.MaxMsgSize)

	for zi := range c.Zones {
		zc := c.Zones[zi].withDefaults()
		key := configs.Index("zones", zi)
		origin, ok := zoneName(zc.Name)
		if !ok {
			bad(configs.Key(key, "name"), "want a domain name like cdn.example.com, got %q", zc.Name)
			continue
		}
		apex := wireName(origin)
		if zs.zones[string(apex)] != nil {
			bad(configs.Key(key, "name"), "zone %s is configured twice", origin)
			continue
		}
		for _, other := range zs.zones {
			if dns.IsSubDomain(other.name, origin) || dns.IsSubDomain(origin, other.name) {
				bad(configs.Key(key, "name"), "zone %s overlaps zone %s (delegations are not supported)", origin, other.name)
			}
		}
		z := &zone{name: origin, apex: apex}
		zs.zones[string(apex)] = z
		zs.nodes[string(apex)] = &node{zone: z, apex: true, name: origin}
		ttl := seconds(zc.TTL)
		if zc.TTL.D().Seconds() != float64(ttl) || ttl == 0 {
			bad(configs.Key(key, "ttl"), "must be whole seconds, at least 1s")
		}

		// NS and SOA.
		if len(zc.NS) == 0 {
			bad(configs.Key(key, "ns"), "list at least one name server")
		}
		var nsNames []string
		for i, ns := range zc.NS {
			name, err := absName(origin, ns)
			if err != nil {
				bad(configs.Index(configs.Key(key, "ns"), i), "%v", err)
				continue
			}
			nsNames = append(nsNames, name)
			rr := &dns.NS{Hdr: hdr(origin, dns.TypeNS, ttl), Ns: name}
			z.ns = append(z.ns, mustTail(rr, buf))
		}
		mname := zc.SOA.MName
		if mname == "" && len(nsNames) > 0 {
			mname = nsNames[0]
		}
		if mname != "" {
			var err error
			if mname, err = absName(origin, mname); err != nil {
				bad(configs.Key(key, "soa.mname"), "%v", err)
			}
		}
		rname := zc.SOA.RName
		if rname == "" {
			rname = "hostmaster"
		}
		rname, err := absName(origin, rname)
		if err != nil {
			bad(configs.Key(key, "soa.rname"), "%v (a mailbox is written as a name: hostmaster.example.com.)", err)
		}
		soaSerial := zc.SOA.Serial
		if soaSerial == 0 {
			soaSerial = serial
		}
		times := []struct {
			k string
			d configs.Duration
		}{{"refresh", zc.SOA.Refresh}, {"retry", zc.SOA.Retry}, {"expire", zc.SOA.Expire}, {"minimum", zc.SOA.Minimum}}
		for _, t := range times {
			if t.d.D() < 1e9 || t.d.D().Seconds() > float64(^uint32(0)>>1) {
				bad(configs.Key(key, "soa."+t.k), "must be between 1s and 68 years, got %v", t.d)
			}
		}
		soa := &dns.SOA{
			Hdr: hdr(origin, dns.TypeSOA, ttl), Ns: dns.Fqdn(mname), Mbox: rname, Serial: soaSerial,
			Refresh: seconds(zc.SOA.Refresh), Retry: seconds(zc.SOA.Retry), Expire: seconds(zc.SOA.Expire), Minttl: seconds(zc.SOA.Minimum),
		}
		z.soa = mustTail(soa, buf)
		soa.Hdr.Ttl = min(ttl, soa.Minttl) // RFC 2308 section 5
		z.negSOA = mustTail(soa, buf)
		z.hinfo = mustTail(&dns.HINFO{Hdr: hdr(origin, dns.TypeHINFO, ttl), Cpu: "RFC8482"}, buf)

		// Geo hosts.
		for i, h := range zc.Hosts {
			hkey := configs.Index(configs.Key(key, "hosts"), i)
			name, err := absName(origin, h)
			if err == nil && !dns.IsSubDomain(origin, name) {
				err = fmt.Errorf("%s is not in zone %s", name, origin)
			}
			if err != nil {
				bad(hkey, "%v", err)
				continue
			}
			n := zs.node(z, name)
			if n.geo {
				bad(hkey, "host %s listed twice", name)
			}
			n.geo = true
		}

		// Static records.
		for i, text := range zc.Records {
			rkey := configs.Index(configs.Key(key, "records"), i)
			rr, err := parseRecord(origin, text, ttl)
			if err != nil {
				bad(rkey, "%v", err)
				continue
			}
			name := dns.CanonicalName(rr.Header().Name)
			n := zs.node(z, name)
			typ := rr.Header().Rrtype
			tail := mustTail(rr, buf)
			if typ == dns.TypeCNAME {
				if n.cname != nil {
					bad(rkey, "%s has more than one CNAME", name)
					continue
				}
				n.cname = tail
				n.target = wireName(dns.CanonicalName(rr.(*dns.CNAME).Target))
				continue
			}
			if s := n.set(typ); s != nil {
				s.rrs = append(s.rrs, tail)
			} else {
				n.sets = append(n.sets, rrset{typ: typ, rrs: [][]byte{tail}})
			}
		}
	}

	// Rules that hold across the whole set.
	for _, n := range zs.nodes {
		switch {
		case n.cname != nil && (n.apex || n.geo || len(n.sets) > 0):
			errs = append(errs, configs.Errorf("zones", "%s has a CNAME and other data (a CNAME must be alone at its name)", n.name))
		case n.geo && (n.set(dns.TypeA) != nil || n.set(dns.TypeAAAA) != nil):
			errs = append(errs, configs.Errorf("zones", "%s is a CDN host and also has static A/AAAA records", n.name))
		}
	}
	// Empty non-terminals: a name between a node and its apex exists (NODATA,
	// not NXDOMAIN) even though it holds nothing.
	for w, n := range maps.Clone(zs.nodes) {
		for !n.apex {
			w = w[1+int(w[0]):] // drop the first label
			if w == string(n.zone.apex) || len(w) <= 1 {
				break
			}
			if zs.nodes[w] == nil {
				name, _, _ := dns.UnpackDomainName([]byte(w), 0)
				zs.nodes[w] = &node{zone: n.zone, name: name}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return zs, nil
}

// node returns the node for name (presentation form, in zone z), creating an
// empty one.
func (zs *zoneSet) node(z *zone, name string) *node {
	w := string(wireName(name))
	n := zs.nodes[w]
	if n == nil {
		n = &node{zone: z, name: name}
		zs.nodes[w] = n
	}
	return n
}

// zoneName canonicalises a zone name ("Example.COM" -> "example.com.").
func zoneName(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "." || strings.ContainsAny(s, " \t@") {
		return "", false
	}
	s = dns.CanonicalName(s)
	if _, ok := dns.IsDomainName(s); !ok || len(wireName(s)) > 255 {
		return "", false
	}
	return s, true
}

// absName resolves a name the zone-file way: "@" is the origin, a name
// ending in "." is absolute, anything else is relative to origin.
func absName(origin, s string) (string, error) {
	s = strings.TrimSpace(s)
	var out string
	switch {
	case s == "":
		return "", errors.New("empty name")
	case s == "@":
		out = origin
	case strings.HasSuffix(s, "."):
		out = s
	default:
		bare := strings.TrimSuffix(origin, ".")
		if strings.EqualFold(s, bare) || strings.HasSuffix(strings.ToLower(s), "."+strings.ToLower(bare)) {
			return "", fmt.Errorf("%q is relative, so it means %s.%s; write %q (absolute names end with a dot) or the part before the zone", s, s, origin, s+".")
		}
		out = s + "." + origin
	}
	if strings.ContainsAny(out, " \t@") {
		return "", fmt.Errorf("bad name %q", s)
	}
	if _, ok := dns.IsDomainName(out); !ok || len(wireName(out)) > 255 {
		return "", fmt.Errorf("bad name %q", s)
	}
	return dns.CanonicalName(out), nil
}

// wireName packs a presentation-form name (assumed valid and absolute) into
// wire form with ASCII letters lower-cased; nil if it does not pack.
func wireName(s string) []byte {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(s), buf, 0, nil, false)
	if err != nil {
		return nil
	}
	buf = buf[:n]
	lowerName(buf)
	return buf
}

// lowerName lower-cases the ASCII letters of an uncompressed wire-form name
// in place (label length bytes are below 64, so never letters).
func lowerName(b []byte) {
	for i := 0; i < len(b); {
		l := int(b[i])
		i++
		for j := i; j < i+l && j < len(b); j++ {
			if c := b[j]; c >= 'A' && c <= 'Z' {
				b[j] = c + 'a' - 'A'
			}
		}
		i += l
	}
}

func hdr(name string, typ uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
}

// mustTail packs rr and returns the bytes after its owner name. rr comes
// from the configuration code above, already checked, so a failure is a bug.
func mustTail(rr dns.RR, buf []byte) []byte {
	off, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		panic(fmt.Sprintf("dnsredirect: pack %s: %v", rr, err))
	}
	ownerLen, err := dns.PackDomainName(rr.Header().Name, buf[off:], 0, nil, false)
	if err != nil {
		panic(fmt.Sprintf("dnsredirect: pack %s: %v", rr.Header().Name, err))
	}
	return append([]byte(nil), buf[ownerLen:off]...)
}

// notStatic are the types a static record may not have: the server makes
// SOA and NS itself, delegations and DNAME are not supported, and the rest
// are not data.
var notStatic = map[uint16]bool{
	dns.TypeSOA: true, dns.TypeNS: true, dns.TypeDNAME: true, dns.TypeOPT: true, dns.TypeTSIG: true,
	dns.TypeTKEY: true, dns.TypeANY: true, dns.TypeAXFR: true, dns.TypeIXFR: true, dns.TypeMAILA: true,
	dns.TypeMAILB: true, dns.TypeRRSIG: true, dns.TypeNSEC: true, dns.TypeNSEC3: true,
}

// parseRecord parses one static record in zone-file syntax relative to origin.
func parseRecord(origin, text string, ttl uint32) (dns.RR, error) {
	if strings.HasPrefix(strings.TrimSpace(text), "$") {
		return nil, fmt.Errorf("directives ($ORIGIN, $TTL, $INCLUDE) are not allowed, got %q", text)
	}
	if strings.ContainsAny(text, "\n\r") {
		return nil, errors.New("one record per entry, got several lines")
	}
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(ttl)
	rr, ok := zp.Next()
	if !ok {
		if err := zp.Err(); err != nil {
			return nil, fmt.Errorf("bad record %q: %v", text, strings.TrimPrefix(err.Error(), "dns: "))
		}
		return nil, fmt.Errorf("no record in %q", text)
	}
	if _, more := zp.Next(); more || zp.Err() != nil {
		return nil, fmt.Errorf("one record per entry, got %q", text)
	}
	h := rr.Header()
	switch {
	case h.Class != dns.ClassINET:
		return nil, fmt.Errorf("only class IN is served, got %q", text)
	case notStatic[h.Rrtype]:
		return nil, fmt.Errorf("%s records cannot be static here (SOA and NS come from the zone's soa and ns keys; delegations and DNAME are not supported)", dns.TypeToString[h.Rrtype])
	case !dns.IsSubDomain(origin, dns.CanonicalName(h.Name)):
		return nil, fmt.Errorf("%s is not in zone %s", h.Name, origin)
	case len(wireName(h.Name)) == 0:
		return nil, fmt.Errorf("bad owner name in %q", text)
	}
	if _, err := dns.PackRR(rr, make([]byte, dns.MaxMsgSize), 0, nil, false); err != nil {
		return nil, fmt.Errorf("bad record %q: %v", text, err)
	}
	if dns.Len(rr) > 4096 {
		return nil, fmt.Errorf("record %q is larger than 4096 bytes", text)
	}
	return rr, nil
}
