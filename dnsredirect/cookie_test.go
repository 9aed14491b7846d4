package dnsredirect

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// cookieOf returns the COOKIE option of a reply in hex ("" when none).
func cookieOf(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func secretOf(t *testing.T, s string) cookieSecret {
	t.Helper()
	return newCookieSecret([16]byte(mustHex(t, s)))
}

func TestSipHash24(t *testing.T) {
	// The reference vectors: key 00 01 .. 0f, message 00 01 .. (n-1).
	var k [16]byte
	for i := range k {
		k[i] = byte(i)
	}
	key := newCookieSecret(k)
	msg := make([]byte, 15)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, c := range []struct {
		n    int
		want uint64
	}{{0, 0x726fdb47dd0e0e31}, {15, 0xa129ca6149be45e5}} {
		if got := siphash24(key.k0, key.k1, msg[:c.n]); got != c.want {
			t.Errorf("SipHash-2-4 of %d bytes = %#x, want %#x", c.n, got, c.want)
		}
	}
}

// TestServerCookieRFC9018 checks issue and verify against the test vectors
// of RFC 9018 appendix A.
func TestServerCookieRFC9018(t *testing.T) {
	const secret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
	for _, c := range []struct {
		client, ip string
		at         uint32
		want       string
	}{
		{"2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"}, // A.1
		{"2464c4abcf10c957", "198.51.100.100", 1559734385, "010000005cf7a871d4a564a1442aca77"}, // A.2
		{"fc93fc62807ddb86", "203.0.113.203", 1559734700, "010000005cf7a9acf73a7810aca2381e"},  // A.3
	} {
		var got [serverCookieLen]byte
		client := [8]byte(mustHex(t, c.client))
		secretOf(t, secret).issue(&got, &client, netip.MustParseAddr(c.ip), c.at)
		if hex.EncodeToString(got[:]) != c.want {
			t.Errorf("cookie for %s at %d = %x, want %s", c.ip, c.at, got, c.want)
		}
	}
	for _, c := range []struct {
		name, secret, ip, cookie string
		at                       uint32
		valid                    bool
	}{
		// A.3: reserved bytes another implementation set are hashed as sent.
		{"A.3", secret, "203.0.113.203", "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5", 1559730000, true},
		{"A.3 from another address", secret, "203.0.113.204", "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5", 1559730000, false},
		{"A.4, IPv6", "dd3bdf9344b678b185a6f5cb60fca715", "2001:db8:220:1:59de:d0f4:8769:82b8",
			"22681ab97d52c298010000005cf7c57926556bd0934c72f8", 0x5cf7c579 + 10, true},
		{"A.4 under the next secret", "445536bcd2513298075a5d379663c962", "2001:db8:220:1:59de:d0f4:8769:82b8",
			"22681ab97d52c298010000005cf7c57926556bd0934c72f8", 0x5cf7c579 + 10, false},
		{"A.1 an hour later", secret, "198.51.100.100", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 + 3600, true},
		{"A.1 an hour and a second later", secret, "198.51.100.100", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 + 3601, false},
		{"A.1 five minutes early", secret, "198.51.100.100", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 - 300, true},
		{"A.1 five minutes and a second early", secret, "198.51.100.100", "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 - 301, false},
		{"A.1 with a bit flipped", secret, "198.51.100.100", "2464c4abcf10c957010000005cf79f111f8130c3eee29481", 1559731985, false},
		{"version 2", secret, "198.51.100.100", "2464c4abcf10c957020000005cf79f111f8130c3eee29480", 1559731985, false},
		{"8-byte server cookie", secret, "198.51.100.100", "2464c4abcf10c957010000005cf79f11", 1559731985, false},
	} {
		b := mustHex(t, c.cookie)
		client := [8]byte(b[:8])
		valid, _ := secretOf(t, c.secret).verify(&client, b[8:], netip.MustParseAddr(c.ip), c.at)
		if valid != c.valid {
			t.Errorf("%s: valid %v, want %v", c.name, valid, c.valid)
		}
	}
	// Across the wrap of the 32-bit timestamp.
	var ck [serverCookieLen]byte
	client := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	s := secretOf(t, secret)
	s.issue(&ck, &client, netip.MustParseAddr("192.0.2.1"), 0xffffff00)
	if valid, renew := s.verify(&client, ck[:], netip.MustParseAddr("192.0.2.1"), 0x00000700); !valid || !renew {
		t.Errorf("a cookie 2048s old across the wrap: valid %v renew %v", valid, renew)
	}
}

// clock is a settable clock for the server's cookie timestamps.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCookieExchange(t *testing.T) {
	clk := &clock{t: time.Unix(1700000000, 0)}
	_, addr := startServer(t, testConfig(t), Options{Now: clk.now})
	q := ask{name: "www.cdn.example.test.", qtype: dns.TypeA, cookie: "0102030405060708"}

	// A client cookie alone: the reply carries it and a new server cookie.
	r := exchange(t, addr, q)
	got := cookieOf(r)
	if len(got) != 48 || !strings.HasPrefix(got, "0102030405060708"+"01000000") || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("reply cookie %q, rcode %d", got, r.Rcode)
	}
	// Coming back with it: accepted and, being fresh, echoed as it is.
	q.cookie = got
	if r := exchange(t, addr, q); cookieOf(r) != got {
		t.Errorf("valid fresh cookie answered with %q", cookieOf(r))
	}
	// Over half an hour old: still valid, replaced by a new one.
	clk.add(31 * time.Minute)
	if r := exchange(t, addr, q); cookieOf(r) == got || len(cookieOf(r)) != 48 {
		t.Errorf("a 31-minute-old cookie answered with %q", cookieOf(r))
	}
	// Over an hour: invalid; answered (capped) with a new cookie.
	clk.add(30 * time.Minute)
	if r := exchange(t, addr, q); cookieOf(r) == got || r.Rcode != dns.RcodeSuccess {
		t.Errorf("an expired cookie: %q, rcode %d", cookieOf(r), r.Rcode)
	}
	// Malformed COOKIE options are FORMERR (RFC 7873 section 5.2.2).
	for _, bad := range []string{"01020304050607", "010203040506070809", "0102030405060708" + strings.Repeat("ab", 7),
		"0102030405060708" + strings.Repeat("ab", 33)} {
		q.cookie = bad
		if r := exchange(t, addr, q); r.Rcode != dns.RcodeFormatError {
			t.Errorf("cookie of %d bytes: rcode %d, want FORMERR", len(bad)/2, r.Rcode)
		}
	}
	// Two servers with one secret accept each other's cookies.
	secret := [16]byte{9, 8, 7}
	_, a1 := startServer(t, testConfig(t), Options{Now: clk.now, CookieSecret: &secret})
	_, a2 := startServer(t, testConfig(t), Options{Now: clk.now, CookieSecret: &secret})
	q.cookie = "1111111111111111"
	c1 := cookieOf(exchange(t, a1, q))
	q.cookie = c1
	if c2 := cookieOf(exchange(t, a2, q)); c2 != c1 {
		t.Errorf("the second server replaced the first's fresh cookie: %q vs %q", c2, c1)
	}
}

// TestCookieQueriesDoNotAllocate: the responder stays allocation-free with
// cookies.
func TestCookieQueriesDoNotAllocate(t *testing.T) {
	s := newTestServer(t, nil)
	sc := newScratch(0)
	for _, cookie := range []string{"0102030405060708", "0102030405060708" + "010000005cf79f111f8130c3eee29480"} {
		m := new(dns.Msg)
		m.SetQuestion("www.cdn.example.test.", dns.TypeA)
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
		pkt, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		s.respond(sc, s.shared, pkt, loopback, true)
		if n := testing.AllocsPerRun(100, func() { s.respond(sc, s.shared, pkt, loopback, true) }); n != 0 {
			t.Errorf("cookie %s: %v allocations per query", cookie, n)
		}
	}
}

// cookieQuery is an A query for the geo name with a COOKIE option (hex).
func cookieQuery(tb testing.TB, cookie string) []byte {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.cdn.example.test.", dns.TypeAAAA)
	m.SetEdns0(4096, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
