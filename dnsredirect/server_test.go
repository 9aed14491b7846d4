package dnsredirect

import (
	"context"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rrs renders a section as "owner ttl type rdata" lines, fields joined by
// single spaces.
func rrs(section []dns.RR) []string {
	var out []string
	for _, rr := range section {
		f := strings.Fields(rr.String())
		// owner ttl class type rdata...: drop the class
		out = append(out, strings.Join(append(f[:2:2], f[3:]...), " "))
	}
	return out
}

func TestAnswers(t *testing.T) {
	_, addr := startServer(t, testConfig(t), Options{})
	soa := "cdn.example.test. 30 SOA ns1.cdn.example.test. hostmaster.cdn.example.test. 7 3600 600 604800 30"
	cases := []struct {
		name   string
		q      ask
		rcode  int
		aa     bool
		answer []string
		ns     []string
	}{
		{"geo by resolver address", ask{name: "www.cdn.example.test.", qtype: dns.TypeA}, dns.RcodeSuccess, true,
			[]string{"www.cdn.example.test. 60 A 10.102.0.1", "www.cdn.example.test. 60 A 10.102.0.2"}, nil},
		{"geo AAAA skips edges without IPv6", ask{name: "www.cdn.example.test.", qtype: dns.TypeAAAA, ecs: "192.0.2.0/24"}, dns.RcodeSuccess, true,
			[]string{"www.cdn.example.test. 60 AAAA fd00:101::1", "www.cdn.example.test. 60 AAAA fd00:101::2"}, nil},
		{"apex is a CDN host", ask{name: "cdn.example.test.", qtype: dns.TypeA, ecs: "203.0.113.0/24"}, dns.RcodeSuccess, true,
			[]string{"cdn.example.test. 60 A 10.103.0.1"}, nil},
		{"question case is kept", ask{name: "WwW.CDN.example.TEST.", qtype: dns.TypeA, ecs: "203.0.113.0/24"}, dns.RcodeSuccess, true,
			[]string{"WwW.CDN.example.TEST. 60 A 10.103.0.1"}, nil},
		{"AAAA answers only edges with IPv6", ask{name: "img.cdn.example.test.", qtype: dns.TypeAAAA, ecs: "198.51.100.0/24"}, dns.RcodeSuccess, true,
			[]string{"img.cdn.example.test. 60 AAAA fd00:102::1"}, nil},
		{"SOA", ask{name: "cdn.example.test.", qtype: dns.TypeSOA}, dns.RcodeSuccess, true,
			[]string{"cdn.example.test. 3600 SOA ns1.cdn.example.test. hostmaster.cdn.example.test. 7 3600 600 604800 30"}, nil},
		{"NS", ask{name: "cdn.example.test.", qtype: dns.TypeNS}, dns.RcodeSuccess, true,
			[]string{"cdn.example.test. 3600 NS ns1.cdn.example.test.", "cdn.example.test. 3600 NS ns2.example.net."}, nil},
		{"static A", ask{name: "ns1.cdn.example.test.", qtype: dns.TypeA}, dns.RcodeSuccess, true,
			[]string{"ns1.cdn.example.test. 3600 A 127.0.0.1"}, nil},
		{"static TXT with its own TTL", ask{name: "txt.cdn.example.test.", qtype: dns.TypeTXT}, dns.RcodeSuccess, true,
			[]string{`txt.cdn.example.test. 300 TXT "hello"`}, nil},
		{"CNAME to a CDN host carries the geo answer", ask{name: "shop.cdn.example.test.", qtype: dns.TypeA, ecs: "203.0.113.0/24"}, dns.RcodeSuccess, true,
			[]string{"shop.cdn.example.test. 3600 CNAME www.cdn.example.test.", "www.cdn.example.test. 60 A 10.103.0.1"}, nil},
		{"CNAME chain", ask{name: "alias.cdn.example.test.", qtype: dns.TypeAAAA, ecs: "203.0.113.0/24"}, dns.RcodeSuccess, true,
			[]string{"alias.cdn.example.test. 3600 CNAME shop.cdn.example.test.", "shop.cdn.example.test. 3600 CNAME www.cdn.example.test.", "www.cdn.example.test. 60 AAAA fd00:103::1"}, nil},
		{"customer zone CNAME into the CDN zone", ask{name: "www.customer.test.", qtype: dns.TypeA, ecs: "203.0.113.0/24"}, dns.RcodeSuccess, true,
			[]string{"www.customer.test. 3600 CNAME www.cdn.example.test.", "www.cdn.example.test. 60 A 10.103.0.1"}, nil},
		{"CNAME asked for itself", ask{name: "shop.cdn.example.test.", qtype: dns.TypeCNAME}, dns.RcodeSuccess, true,
			[]string{"shop.cdn.example.test. 3600 CNAME www.cdn.example.test."}, nil},
		{"CNAME to a missing name in our zone: NXDOMAIN", ask{name: "broken.cdn.example.test.", qtype: dns.TypeA}, dns.RcodeNameError, true,
			[]string{"broken.cdn.example.test. 3600 CNAME missing.cdn.example.test."}, []string{soa}},
		{"CNAME out of our zones stops there", ask{name: "outside.cdn.example.test.", qtype: dns.TypeA}, dns.RcodeSuccess, true,
			[]string{"outside.cdn.example.test. 3600 CNAME www.example.org."}, nil},
		{"CNAME to a host without that type: NODATA", ask{name: "shop.cdn.example.test.", qtype: dns.TypeMX}, dns.RcodeSuccess, true,
			[]string{"shop.cdn.example.test. 3600 CNAME www.cdn.example.test."}, []string{soa}},
		{"unknown name: NXDOMAIN with SOA", ask{name: "nope.cdn.example.test.", qtype: dns.TypeA}, dns.RcodeNameError, true, nil, []string{soa}},
		{"NXDOMAIN deep below the apex", ask{name: "x.y.z.cdn.example.test.", qtype: dns.TypeAAAA}, dns.RcodeNameError, true, nil, []string{soa}},
		{"type not served: NODATA with SOA", ask{name: "www.cdn.example.test.", qtype: dns.TypeMX}, dns.RcodeSuccess, true, nil, []string{soa}},
		{"empty non-terminal: NODATA", ask{name: "b.deep.cdn.example.test.", qtype: dns.TypeA}, dns.RcodeSuccess, true, nil, []string{soa}},
		{"ANY gets one small record (RFC 8482)", ask{name: "www.cdn.example.test.", qtype: dns.TypeANY}, dns.RcodeSuccess, true,
			[]string{`www.cdn.example.test. 3600 HINFO "RFC8482" ""`}, nil},
		{"other zone: REFUSED", ask{name: "www.example.org.", qtype: dns.TypeA}, dns.RcodeRefused, false, nil, nil},
		{"root: REFUSED", ask{name: ".", qtype: dns.TypeNS}, dns.RcodeRefused, false, nil, nil},
		{"zone transfer: REFUSED", ask{name: "cdn.example.test.", qtype: dns.TypeAXFR, tcp: true}, dns.RcodeRefused, false, nil, nil},
		{"TCP", ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "2001:db8:a::/48", tcp: true}, dns.RcodeSuccess, true,
			[]string{"www.cdn.example.test. 60 A 10.103.0.1"}, nil},
		{"no EDNS", ask{name: "www.cdn.example.test.", qtype: dns.TypeA, noEDNS: true}, dns.RcodeSuccess, true,
			[]string{"www.cdn.example.test. 60 A 10.102.0.1", "www.cdn.example.test. 60 A 10.102.0.2"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := exchange(t, addr, c.q)
			if r.Rcode != c.rcode || r.Authoritative != c.aa || r.Truncated || r.RecursionAvailable {
				t.Fatalf("rcode %s aa %v tc %v ra %v, want %s aa %v\n%v", dns.RcodeToString[r.Rcode], r.Authoritative, r.Truncated, r.RecursionAvailable,
					dns.RcodeToString[c.rcode], c.aa, r)
			}
			if got := rrs(r.Answer); !slices.Equal(got, c.answer) {
				t.Errorf("answer\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.answer, "\n"))
			}
			if got := rrs(r.Ns); !slices.Equal(got, c.ns) {
				t.Errorf("authority\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.ns, "\n"))
			}
			if len(r.Question) != 1 || r.Question[0].Name != c.q.name || r.Question[0].Qtype != c.q.qtype {
				t.Errorf("question %v", r.Question)
			}
			if opt := r.IsEdns0(); (opt != nil) == c.q.noEDNS {
				t.Errorf("OPT in reply: %v, in query: %v", opt != nil, !c.q.noEDNS)
			}
			if n := len(r.Extra); n > 1 {
				t.Errorf("additional section has %d records; want at most the OPT", n)
			}
		})
	}
}

func TestGeoSelection(t *testing.T) {
	_, addr := startServer(t, testConfig(t), Options{})
	cases := []struct {
		ecs   string
		want  string
		scope uint8
	}{
		{"192.0.2.0/24", "10.101.0.1 10.101.0.2", 24},    // DE: nearest is eu
		{"198.51.100.0/24", "10.102.0.1 10.102.0.2", 24}, // US
		{"203.0.113.0/24", "10.103.0.1", 24},             // JP: apac
		{"10.1.2.0/24", "10.101.0.1 10.101.0.2", 16},     // GB, answer holds for the database's /16
		{"10.2.0.0/16", "10.102.0.1 10.102.0.2", 16},     // BR: us is nearer than eu
		{"10.3.0.0/16", "10.103.0.1", 16},                // AU
		{"10.4.0.0/16", "10.103.0.1", 16},                // NZ has no coordinates: the country override
		{"10.5.0.0/16", "10.101.0.1 10.101.0.2", 16},     // continent AF only: the continent override
		{"10.6.0.0/24", "10.101.0.1 10.101.0.2", 28},     // the database's network is smaller than the query's
		{"2001:db8:e::/48", "10.101.0.1 10.101.0.2", 48}, // FR over IPv6
		{"2001:db8:a:100::/56", "10.103.0.1", 48},        // SG
		{"::1/128", "10.102.0.1 10.102.0.2", 128},        // US
		{"81.2.69.0/24", "10.102.0.1 10.102.0.2", 0},     // not in the database: the default order (scope checked below)
	}
	for _, c := range cases {
		t.Run(c.ecs, func(t *testing.T) {
			r := exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: c.ecs, id: 3})
			if got := join(addrs(r)); got != c.want {
				t.Errorf("answers %q, want %q", got, c.want)
			}
			e := ecsOf(r)
			if e == nil {
				t.Fatal("no ECS option in the reply")
			}
			want := strings.SplitN(c.ecs, "/", 2)
			if e.Address.String() != want[0] || e.SourceNetmask != uint8(atoi(want[1])) {
				t.Errorf("echoed %s/%d, want %s", e.Address, e.SourceNetmask, c.ecs)
			}
			if c.scope != 0 && e.SourceScope != c.scope {
				t.Errorf("scope %d, want %d", e.SourceScope, c.scope)
			}
			if c.scope == 0 && (e.SourceScope == 0 || e.SourceScope > 24) {
				t.Errorf("scope %d for a miss: want the empty network around it (1..24)", e.SourceScope)
			}
		})
	}
	// SOURCE PREFIX-LENGTH 0: locate by the resolver (127.0.0.1: us), scope 0.
	r := exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "0.0.0.0/0"})
	if e := ecsOf(r); e == nil || e.SourceScope != 0 || e.SourceNetmask != 0 || join(addrs(r)) != "10.102.0.1 10.102.0.2" {
		t.Errorf("ECS /0: %v", r)
	}
	// No ECS in the query: none in the reply.
	if e := ecsOf(exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA})); e != nil {
		t.Errorf("ECS %v in reply to a query without one", e)
	}
	// A non-geo answer echoes ECS with scope 0: it is the same for everyone.
	r = exchange(t, addr, ask{name: "cdn.example.test.", qtype: dns.TypeSOA, ecs: "192.0.2.0/24"})
	if e := ecsOf(r); e == nil || e.SourceScope != 0 {
		t.Errorf("SOA with ECS: %v", r)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// Three eu edges share the lowest load and two are answered: which two
// rotates with the query ID, so ties spread across resolvers.
func TestTiesRotate(t *testing.T) {
	_, addr := startServer(t, testConfig(t), Options{})
	want := map[uint16]string{3: "10.101.0.1 10.101.0.2", 4: "10.101.0.2 10.101.0.3", 5: "10.101.0.3 10.101.0.1"}
	for id, w := range want {
		if got := join(addrs(exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "192.0.2.0/24", id: id}))); got != w {
			t.Errorf("id %d: %q, want %q", id, got, w)
		}
	}
}

func TestLoadAndAttack(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	s, addr := startServer(t, testConfig(t), Options{Now: clock})
	q := ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "192.0.2.0/24", id: 3}

	for edge, load := range map[string]float64{"eu-1": 0.9, "eu-2": 0.5, "eu-3": 0.1} {
		if err := s.SetLoad(edge, load); err != nil {
			t.Fatal(err)
		}
	}
	if got := join(addrs(exchange(t, addr, q))); got != "10.101.0.3 10.101.0.2" {
		t.Errorf("least loaded first: got %q", got)
	}

	// Under attack: the scrubber answers for the edge, in its place.
	if err := s.SetUnderAttack("eu-3", true); err != nil {
		t.Fatal(err)
	}
	if got := join(addrs(exchange(t, addr, q))); got != "10.101.255.1 10.101.0.2" {
		t.Errorf("under attack: got %q", got)
	}
	q6 := q
	q6.qtype = dns.TypeAAAA
	if err := s.SetUnderAttack("eu-2", true); err != nil {
		t.Fatal(err)
	}
	// eu-3 has no IPv6; eu-2 is replaced by the scrubber, which appears once.
	if got := join(addrs(exchange(t, addr, q6))); got != "fd00:101:ff::1 fd00:101::1" {
		t.Errorf("AAAA under attack: got %q", got)
	}
	s.SetUnderAttack("eu-2", false)
	s.SetUnderAttack("eu-3", false)
	if got := join(addrs(exchange(t, addr, q))); got != "10.101.0.3 10.101.0.2" {
		t.Errorf("attack over: got %q", got)
	}

	// A pushed load expires after pushed_load_ttl (30s): back to ties.
	now = now.Add(31 * time.Second)
	s.Refresh()
	if got := join(addrs(exchange(t, addr, q))); got != "10.101.0.1 10.101.0.2" {
		t.Errorf("after expiry: got %q", got)
	}

	for _, bad := range []struct {
		edge string
		load float64
	}{{"nope", 1}, {"eu-1", -1}, {"eu-1", nan()}} {
		if err := s.SetLoad(bad.edge, bad.load); err == nil {
			t.Errorf("SetLoad(%q, %v) accepted", bad.edge, bad.load)
		}
	}
	if err := s.SetUnderAttack("nope", true); err == nil {
		t.Error("SetUnderAttack of an unknown edge accepted")
	}
	st := s.Stats()
	if len(st.Edges) != 6 || st.FailOpen {
		t.Fatalf("stats %+v", st)
	}
}

func nan() float64 { return math.NaN() }

func TestTruncation(t *testing.T) {
	cfg := testConfig(t)
	cfg.Answers = 40
	cfg.Sites[1].Edges = nil // us, where 127.0.0.1 and 198.51.100.0/24 are
	for i := range 40 {
		cfg.Sites[1].Edges = append(cfg.Sites[1].Edges, EdgeConfig{Name: "big-" + itoa(i), Addrs: Addrs{
			IPv4: netip.MustParseAddr("10.111.0." + itoa(i+1)), IPv6: netip.MustParseAddr("fd00:111::" + itoa(i+1))}})
	}
	_, addr := startServer(t, cfg, Options{})
	base := ask{name: "www.cdn.example.test.", qtype: dns.TypeAAAA, ecs: "198.51.100.0/24"}

	// 40 AAAA records (about 1.2 KB) fit the default 1232-byte EDNS buffer,
	// but not the amplification cap of a query without a valid DNS cookie
	// (10 x 66 bytes): TC, and a server cookie to come back with.
	base.cookie = "0102030405060708"
	r := exchange(t, addr, base)
	if !r.Truncated || len(r.Answer) != 0 || cookieOf(r) == "" {
		t.Fatalf("without a server cookie: tc %v, %d answers, cookie %q", r.Truncated, len(r.Answer), cookieOf(r))
	}
	base.cookie = cookieOf(r)
	if r := exchange(t, addr, base); r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("1232-byte buffer: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	// A client without EDNS gets 512 bytes: TC, no records, retry over TCP.
	for _, q := range []ask{{name: base.name, qtype: base.qtype, noEDNS: true}, {name: base.name, qtype: base.qtype, ecs: base.ecs, bufsz: 600}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if !q.noEDNS {
			m.SetEdns0(q.bufsz, false)
		}
		c := &dns.Client{Net: "udp", UDPSize: 65535, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		limit := 512
		if !q.noEDNS {
			limit = int(q.bufsz)
		}
		if !r.Truncated || len(r.Answer) != 0 || r.Len() > limit {
			t.Fatalf("bufsize %d: tc %v, %d answers, %d bytes", limit, r.Truncated, len(r.Answer), r.Len())
		}
		if !q.noEDNS && r.IsEdns0() == nil {
			t.Fatal("truncated EDNS reply lost its OPT")
		}
	}
	tcp := base
	tcp.tcp, tcp.noEDNS = true, true
	if r := exchange(t, addr, tcp); r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("TCP: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	// The reply is never bigger than the buffer we advertise, whatever the
	// client's.
	big := base
	big.bufsz = 4096
	cfg.MaxUDPSize = 512
	_, addr2 := startServer(t, cfg, Options{})
	if r := exchange(t, addr2, big); !r.Truncated || r.Len() > 512 {
		t.Fatalf("max_udp_size 512: tc %v len %d", r.Truncated, r.Len())
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestEDNSAndErrors(t *testing.T) {
	_, addr := startServer(t, testConfig(t), Options{})
	c := &dns.Client{Net: "udp", UDPSize: 65535, Timeout: 5 * time.Second}
	send := func(m *dns.Msg) *dns.Msg {
		t.Helper()
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// EDNS version 1: BADVERS, with an OPT of version 0.
	m := new(dns.Msg)
	m.SetQuestion("www.cdn.example.test.", dns.TypeA)
	m.SetEdns0(1232, true)
	m.IsEdns0().SetVersion(1)
	r := send(m)
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || len(r.Answer) != 0 {
		t.Fatalf("BADVERS: %v", r)
	}

	// The DO bit is copied (RFC 3225); we advertise our own buffer size.
	m = new(dns.Msg)
	m.SetQuestion("www.cdn.example.test.", dns.TypeA)
	m.SetEdns0(4000, true)
	r = send(m)
	if opt := r.IsEdns0(); opt == nil || !opt.Do() || opt.UDPSize() != 1232 {
		t.Fatalf("OPT %v", r.IsEdns0())
	}

	// NOTIFY is not implemented; the reply still carries OPT.
	m = new(dns.Msg)
	m.SetNotify("cdn.example.test.")
	m.SetEdns0(1232, false)
	if r = send(m); r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeNotify || r.IsEdns0() == nil {
		t.Fatalf("NOTIFY: %v", r)
	}

	// Class CHAOS: REFUSED.
	m = new(dns.Msg)
	m.SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	if r = send(m); r.Rcode != dns.RcodeRefused {
		t.Fatalf("CH: %v", r)
	}
}

// Raw packets a miekg client will not build: FORMERR, or silence where a
// reply could be abused.
func TestMalformedPackets(t *testing.T) {
	_, addr := startServer(t, testConfig(t), Options{})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, c := range malformedCases() {
		t.Run(c.name, func(t *testing.T) {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(c.pkt); err != nil {
				t.Fatal(err)
			}
			if c.rcode < 0 {
				// No reply expected; prove the server is still there.
				ok := append([]byte(nil), queryPacket(0x4242, "www.cdn.example.test.", dns.TypeA)...)
				conn.Write(ok)
			}
			buf := make([]byte, 65535)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not unpack: %v", err)
			}
			if c.rcode < 0 {
				if r.Id != 0x4242 {
					t.Fatalf("got a reply to a packet that should get none: %v", r)
				}
				return
			}
			if r.Rcode != c.rcode || !r.Response || r.Id != 0xBEEF {
				t.Fatalf("rcode %s id %x, want %s\n%v", dns.RcodeToString[r.Rcode], r.Id, dns.RcodeToString[c.rcode], r)
			}
		})
	}
}

type malformed struct {
	name  string
	pkt   []byte
	rcode int // -1: no reply
}

// queryPacket builds a query for name/qtype with ID id and no EDNS.
func queryPacket(id uint16, name string, qtype uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	b, _ := m.Pack()
	return b
}

// withOptions builds a query with an OPT record holding raw options, each
// given as code followed by data.
func withOptions(opts ...[]byte) []byte {
	b := queryPacket(0xBEEF, "www.cdn.example.test.", dns.TypeA)
	b[11] = 1 // ARCOUNT
	var rdata []byte
	for _, o := range opts {
		code, data := o[:2], o[2:]
		rdata = append(append(rdata, code...), byte(len(data)>>8), byte(len(data)))
		rdata = append(rdata, data...)
	}
	b = append(b, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, byte(len(rdata)>>8), byte(len(rdata)))
	return append(b, rdata...)
}

func withOption(code uint16, data []byte) []byte {
	return withOptions(append([]byte{byte(code >> 8), byte(code)}, data...))
}

func malformedCases() []malformed {
	q := queryPacket(0xBEEF, "www.cdn.example.test.", dns.TypeA)
	response := append([]byte(nil), q...)
	response[2] |= 0x80
	noQuestion := append([]byte(nil), q[:12]...)
	noQuestion[5] = 0
	twoQuestions := append(append([]byte(nil), q...), q[12:]...)
	twoQuestions[5] = 2
	truncatedName := append([]byte(nil), q[:20]...)
	pointerName := append(append([]byte(nil), q[:12]...), 0xC0, 0x0C, 0, 1, 0, 1)
	longLabel := append(append([]byte(nil), q[:12]...), 64)
	longLabel = append(longLabel, make([]byte, 70)...)
	arOverrun := append([]byte(nil), q...)
	arOverrun[11] = 3
	twoOPT := withOption(10, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	twoOPT[11] = 2
	twoOPT = append(twoOPT, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0)
	qtypeOPT := queryPacket(0xBEEF, "www.cdn.example.test.", dns.TypeOPT)
	return []malformed{
		{"shorter than a header", []byte{0xBE, 0xEF, 1}, -1},
		{"a response", response, -1},
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"name runs off the end", truncatedName, dns.RcodeFormatError},
		{"compression pointer in the question", pointerName, dns.RcodeFormatError},
		{"label longer than 63", longLabel, dns.RcodeFormatError},
		{"ARCOUNT larger than the records", arOverrun, dns.RcodeFormatError},
		{"two OPT records", twoOPT, dns.RcodeFormatError},
		{"question for type OPT", qtypeOPT, dns.RcodeFormatError},
		{"ECS family 3", withOption(8, []byte{0, 3, 0, 0}), dns.RcodeFormatError},
		{"ECS IPv4 source 33", withOption(8, []byte{0, 1, 33, 0, 1, 2, 3, 4, 5}), dns.RcodeFormatError},
		{"ECS too many address octets", withOption(8, []byte{0, 1, 16, 0, 10, 1, 2}), dns.RcodeFormatError},
		{"ECS too few address octets", withOption(8, []byte{0, 1, 24, 0, 10, 1}), dns.RcodeFormatError},
		{"ECS bits set past the source prefix", withOption(8, []byte{0, 1, 23, 0, 10, 1, 3}), dns.RcodeFormatError},
		{"ECS shorter than its header", withOption(8, []byte{0, 1}), dns.RcodeFormatError},
		{"option runs past the OPT", append(withOption(10, nil)[:len(withOption(10, nil))-2], 0, 9), dns.RcodeFormatError},
		{"two ECS options", withOptions([]byte{0, 8, 0, 1, 8, 0, 10}, []byte{0, 8, 0, 1, 8, 0, 10}), dns.RcodeFormatError},
		{"cookie and ECS are fine", withOptions([]byte{0, 10, 1, 2, 3, 4, 5, 6, 7, 8}, []byte{0, 8, 0, 1, 8, 0, 10}), dns.RcodeSuccess},
	}
}

// ServeDNS gives the same answers behind any miekg/dns server.
func TestServeDNSHandler(t *testing.T) {
	s, err := New(testConfig(t), Options{Geo: testDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	defer srv.Shutdown()
	r := exchange(t, pc.LocalAddr().String(), ask{name: "shop.cdn.example.test.", qtype: dns.TypeA, ecs: "203.0.113.0/24"})
	if got := rrs(r.Answer); len(got) != 2 || got[1] != "www.cdn.example.test. 60 A 10.103.0.1" || !r.Authoritative {
		t.Fatalf("%v", r)
	}
	if e := ecsOf(r); e == nil || e.SourceScope != 24 {
		t.Fatalf("ECS %v", e)
	}
}

// One TCP connection carries several queries; the limit closes it.
func TestTCPConnection(t *testing.T) {
	cfg := testConfig(t)
	cfg.TCPMaxQueries = 3
	_, addr := startServer(t, cfg, Options{})
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 3 {
		m := new(dns.Msg)
		m.SetQuestion("www.cdn.example.test.", dns.TypeA)
		r, _, err := c.ExchangeWithConn(m, conn)
		if err != nil || len(r.Answer) != 2 {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("www.cdn.example.test.", dns.TypeA)
	if _, _, err := c.ExchangeWithConn(m, conn); err == nil {
		t.Fatal("a fourth query on a connection limited to three got an answer")
	}
}

func TestMetricsAndStats(t *testing.T) {
	cfg := testConfig(t)
	s, addr := startServer(t, cfg, Options{})
	exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "192.0.2.0/24"})
	exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "192.0.2.0/24"})
	exchange(t, addr, ask{name: "nope.cdn.example.test.", qtype: dns.TypeAAAA})
	exchange(t, addr, ask{name: "www.example.org.", qtype: dns.TypeA, tcp: true})
	// An answer's time is recorded after its reply is sent, so the client
	// can see the reply a moment before the server has counted it.
	st := s.Stats()
	for i := 0; i < 1000 && st.AnswerCount < 4; i++ {
		time.Sleep(time.Millisecond)
		st = s.Stats()
	}
	want := map[QueryCount]bool{
		{Type: "A", Rcode: "NOERROR", Site: "eu", Count: 2}:       true,
		{Type: "AAAA", Rcode: "NXDOMAIN", Site: "none", Count: 1}: true,
		{Type: "A", Rcode: "REFUSED", Site: "none", Count: 1}:     true,
	}
	for _, q := range st.Queries {
		if !want[q] {
			t.Errorf("unexpected count %+v", q)
		}
		delete(want, q)
	}
	if len(want) > 0 {
		t.Errorf("missing counts %v", want)
	}
	if st.GeoLookups != 1 || st.GeoCacheHits != 1 || st.AnswerCount != 4 || st.AnswerTimeMean <= 0 {
		t.Errorf("stats %+v", st)
	}
	if err := s.Healthz(); err != nil {
		t.Errorf("Healthz while serving: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	s, err := New(testConfig(t), Options{Geo: testDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Healthz() == nil {
		t.Fatal("healthy after shutdown")
	}
	// The port is free again.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held: %v", err)
	}
	ln.Close()
}

// A socket bound to every address answers from the address the query came
// to (miekg/dns session handling), over IPv4 and IPv6 loopback.
func TestWildcardListen(t *testing.T) {
	cfg := testConfig(t)
	cfg.Listen = "[::]:0"
	s, _ := startServer(t, cfg, Options{})
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, host := range []string{"127.0.0.1", "::1"} {
		conn, err := net.ListenUDP("udp", nil)
		if err != nil {
			t.Fatal(err)
		}
		dst, _ := net.ResolveUDPAddr("udp", net.JoinHostPort(host, port))
		if dst.IP.To4() == nil {
			if conn6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
				conn.Close()
				conn = conn6
			} else {
				conn.Close()
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			}
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.WriteToUDP(queryPacket(7, "www.cdn.example.test.", dns.TypeA), dst); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, from, err := conn.ReadFromUDP(buf)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !from.IP.Equal(dst.IP) {
			t.Errorf("reply from %s, query sent to %s", from.IP, dst.IP)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil || len(r.Answer) != 2 {
			t.Fatalf("%s: %v %v", host, r, err)
		}
	}
}
