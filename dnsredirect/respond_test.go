package dnsredirect

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/miekg/dns"
)

func newTestServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	cfg := testConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, Options{Geo: testDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wireQuery packs a query the way a resolver sends it.
func wireQuery(t testing.TB, name string, qtype uint16, ecs string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	m.SetEdns0(1232, false)
	if ecs != "" {
		p := netip.MustParsePrefix(ecs)
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
		if p.Addr().Is6() {
			e.Family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var loopback = netip.MustParseAddr("127.0.0.1")

// The responder allocates nothing once the geo cache holds the client.
func TestRespondAllocs(t *testing.T) {
	s := newTestServer(t, nil)
	sc := newScratch(0)
	for _, q := range []struct {
		name  string
		qtype uint16
		ecs   string
	}{
		{"www.cdn.example.test.", dns.TypeA, "192.0.2.0/24"},
		{"www.cdn.example.test.", dns.TypeAAAA, "2001:db8:e::/48"},
		{"www.cdn.example.test.", dns.TypeA, ""},
		{"alias.cdn.example.test.", dns.TypeA, "203.0.113.0/24"},
		{"n42.cdn.example.test.", dns.TypeA, "10.9.9.0/24"},
		{"www.example.org.", dns.TypeA, ""},
		{"cdn.example.test.", dns.TypeSOA, ""},
	} {
		pkt := wireQuery(t, q.name, q.qtype, q.ecs)
		s.respond(sc, s.shared, pkt, loopback, true) // fill the cache
		if n := testing.AllocsPerRun(100, func() { s.respond(sc, s.shared, pkt, loopback, true) }); n != 0 {
			t.Errorf("%s %s ecs=%s: %v allocations per query", q.name, dns.TypeToString[q.qtype], q.ecs, n)
		}
	}
}

// Every reply unpacks, carries the query's ID and question, and fits the
// transport.
func checkReply(t *testing.T, s *Server, pkt []byte, udp bool) {
	t.Helper()
	sc := newScratch(0)
	resp := s.respond(sc, s.shared, pkt, loopback, udp)
	if resp == nil {
		if len(pkt) >= headerLen && pkt[2]&0x80 == 0 {
			t.Fatalf("no reply to a query: %x", pkt)
		}
		return
	}
	r := new(dns.Msg)
	if err := r.Unpack(resp); err != nil {
		t.Fatalf("reply does not unpack: %v\nquery %x\nreply %x", err, pkt, resp)
	}
	if !r.Response || r.Id != binary.BigEndian.Uint16(pkt) {
		t.Fatalf("reply header %v", r.MsgHdr)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers:
	default:
		t.Fatalf("rcode %d", r.Rcode)
	}
	if udp {
		limit := minUDP
		if sc.q.edns {
			limit = min(max(int(sc.q.udpSize), minUDP), s.maxUDP)
		}
		if len(resp) > limit {
			t.Fatalf("UDP reply of %d bytes, limit %d", len(resp), limit)
		}
		// Without a valid DNS cookie, a UDP reply is at most 10x the query.
		var q query
		q.parse(pkt)
		valid := false
		if q.cookie && q.serverLen > 0 {
			valid, _ = s.cookies.verify(&q.clientCookie, q.serverCookie[:q.serverLen], loopback, uint32(s.now().Unix()))
		}
		if !valid && len(resp) > maxAmplification*len(pkt) {
			t.Fatalf("UDP reply of %d bytes to a %d-byte query without a valid cookie", len(resp), len(pkt))
		}
	}
	if len(r.Question) == 1 {
		// The question is echoed byte for byte.
		q := pkt[headerLen:sc.q.qdEnd]
		if string(resp[headerLen:headerLen+len(q)]) != string(q) {
			t.Fatalf("question not echoed: %x vs %x", resp[headerLen:headerLen+len(q)], q)
		}
	}
	// Nothing is offered beyond the answer: an OPT at most in additional.
	if len(r.Extra) > 1 || (len(r.Extra) == 1 && r.Extra[0].Header().Rrtype != dns.TypeOPT) {
		t.Fatalf("additional section %v", r.Extra)
	}
}

func TestMalformedReplies(t *testing.T) {
	s := newTestServer(t, nil)
	for _, c := range malformedCases() {
		t.Run(c.name, func(t *testing.T) {
			checkReply(t, s, c.pkt, true)
			checkReply(t, s, c.pkt, false)
		})
	}
}

func FuzzRespond(f *testing.F) {
	s := newTestServer(f, func(c *Config) { c.Answers = 40 })
	for _, q := range []struct {
		name  string
		qtype uint16
		ecs   string
	}{
		{"www.cdn.example.test.", dns.TypeA, "192.0.2.0/24"},
		{"www.cdn.example.test.", dns.TypeAAAA, "2001:db8:e::/48"},
		{"alias.cdn.example.test.", dns.TypeANY, "0.0.0.0/0"},
		{"broken.cdn.example.test.", dns.TypeA, ""},
		{"b.deep.cdn.example.test.", dns.TypeTXT, ""},
		{"www.customer.test.", dns.TypeAAAA, "10.4.0.0/16"},
		{"cdn.example.test.", dns.TypeNS, ""},
	} {
		f.Add(wireQuery(f, q.name, q.qtype, q.ecs), true)
	}
	for _, c := range malformedCases() {
		f.Add(c.pkt, false)
	}
	for _, c := range []string{"0102030405060708", "0102030405060708010000005cf79f111f8130c3eee29480", "010203040506070809"} {
		f.Add(cookieQuery(f, c), true)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, udp bool) {
		checkReply(t, s, pkt, udp)
	})
}

// benchQueries is a query mix: the bench's data/queries.bin when it is
// here (dnsperf's input: 50% A with a mapped /24, 30% A with a random /24,
// 10% AAAA, 5% A without ECS, 5% NXDOMAIN), else a small built-in mix.
func benchQueries(b *testing.B) [][]byte {
	data, err := os.ReadFile("../../shared/bench/dns/data/queries.bin")
	var out [][]byte
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data))
		if 2+n > len(data) {
			break
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	if err != nil || len(out) == 0 {
		b.Logf("bench query file not found (%v); using a built-in mix", err)
		for _, e := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "10.9.9.0/24", "2001:db8:a::/48"} {
			out = append(out, wireQuery(b, "www.cdn.example.test.", dns.TypeA, e))
		}
		out = append(out, wireQuery(b, "n1.cdn.example.test.", dns.TypeA, ""))
	}
	return out
}

func BenchmarkRespond(b *testing.B) {
	cases := []struct {
		name, qname string
		qtype       uint16
		ecs         string
		nocache     bool
	}{
		{"A-ecs", "www.cdn.example.test.", dns.TypeA, "192.0.2.0/24", false},
		{"A-ecs-nocache", "www.cdn.example.test.", dns.TypeA, "192.0.2.0/24", true},
		{"AAAA-ecs6", "www.cdn.example.test.", dns.TypeAAAA, "2001:db8:e::/48", false},
		{"A-resolver-addr", "www.cdn.example.test.", dns.TypeA, "", false},
		{"CNAME-chain", "alias.cdn.example.test.", dns.TypeA, "203.0.113.0/24", false},
		{"NXDOMAIN", "n42.cdn.example.test.", dns.TypeA, "", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := newTestServer(b, func(cfg *Config) {
				if c.nocache {
					cfg.GeoCache = 0
				}
			})
			pkt := wireQuery(b, c.qname, c.qtype, c.ecs)
			sc := newScratch(0)
			b.ReportAllocs()
			for b.Loop() {
				s.respond(sc, s.shared, pkt, loopback, true)
			}
		})
	}
}

// BenchmarkRespondMix runs the bench's query mix through the responder,
// with and without the geo cache: the cache is kept because it measures
// faster here (see the README).
func BenchmarkRespondMix(b *testing.B) {
	qs := benchQueries(b)
	for _, size := range []int{1 << 16, 0} {
		name := "cache"
		if size == 0 {
			name = "nocache"
		}
		b.Run(name, func(b *testing.B) {
			s := newTestServer(b, func(cfg *Config) { cfg.GeoCache = size })
			sc := newScratch(0)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				s.respond(sc, s.shared, qs[i], loopback, true)
				if i++; i == len(qs) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkFixedHandler is the per-query work of the bench's fixed-answer
// miekg/dns server for comparison: unpack the query (miekg's server does
// this before calling a handler), build the fixed reply with ECS echo, pack.
func BenchmarkFixedHandler(b *testing.B) {
	qs := benchQueries(b)
	a := net.ParseIP("192.0.2.10").To4()
	aaaa := net.ParseIP("2001:db8::10")
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r := new(dns.Msg)
		if err := r.Unpack(qs[i]); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(qs) {
			i = 0
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 30}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a})
		case dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: aaaa})
		}
		if opt := r.IsEdns0(); opt != nil {
			ro := new(dns.OPT)
			ro.Hdr.Name = "."
			ro.Hdr.Rrtype = dns.TypeOPT
			ro.SetUDPSize(1232)
			for _, o := range opt.Option {
				if ecs, ok := o.(*dns.EDNS0_SUBNET); ok {
					e := *ecs
					e.SourceScope = e.SourceNetmask
					ro.Option = append(ro.Option, &e)
				}
			}
			m.Extra = append(m.Extra, ro)
		}
		if _, err := m.Pack(); err != nil {
			b.Fatal(err)
		}
	}
}
