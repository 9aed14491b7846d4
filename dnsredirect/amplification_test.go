package dnsredirect

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// amplificationConfig is the test zone with the largest answers it can
// give: 40 edges per geo answer, 40 static A and AAAA records at a one-letter
// name, a TXT set of about 1.5 KB, and a CNAME chain.
func amplificationConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Answers = 40
	cfg.Sites[1].Edges = nil
	for i := range 40 {
		cfg.Sites[1].Edges = append(cfg.Sites[1].Edges, EdgeConfig{Name: "big-" + itoa(i), Addrs: Addrs{
			IPv4: netip.MustParseAddr("10.111.0." + itoa(i+1)), IPv6: netip.MustParseAddr("fd00:111::" + itoa(i+1))}})
	}
	z := &cfg.Zones[0]
	for i := range 40 {
		z.Records = append(z.Records, fmt.Sprintf("m A 10.112.0.%d", i+1), fmt.Sprintf("m AAAA fd00:112::%d", i+1))
	}
	for i := range 6 {
		z.Records = append(z.Records, fmt.Sprintf("t TXT %q", strings.Repeat(string(rune('a'+i)), 250)))
	}
	z.Records = append(z.Records, "c CNAME m", "m MX 10 mail.example.net.")
	return cfg
}

// udpExchange sends pkt over UDP and returns the raw reply.
func udpExchange(t *testing.T, conn net.Conn, pkt []byte) []byte {
	t.Helper()
	buf := make([]byte, 65535)
	for try := 0; try < 3; try++ {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // timeout: send again
			}
			if n >= 2 && binary.BigEndian.Uint16(buf) == binary.BigEndian.Uint16(pkt) {
				return append([]byte(nil), buf[:n]...)
			}
		}
	}
	t.Fatalf("no UDP reply to %x", pkt)
	return nil
}

// tcpExchange sends pkt over TCP and returns the raw reply.
func tcpExchange(t *testing.T, addr string, pkt []byte) []byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...))
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// ampQuery builds one query of the response space.
func ampQuery(t *testing.T, id uint16, name string, qtype uint16, edns uint16, ecs, cookie string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	m.RecursionDesired = false
	if edns > 0 {
		m.SetEdns0(edns, false)
		opt := m.IsEdns0()
		if ecs != "" {
			p := netip.MustParsePrefix(ecs)
			e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
			if p.Addr().Is6() {
				e.Family = 2
			}
			opt.Option = append(opt.Option, e)
		}
		if cookie != "" {
			opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
		}
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAmplificationFactor sends every query of a response space (names
// with the largest answers, every useful type, EDNS buffer sizes from none
// to 65535, with and without ECS, without a cookie, with a client cookie
// only, a forged server cookie and a valid one) over UDP to a real server
// and measures reply size / query size. Without a valid cookie it must stay
// at most 10; over TCP and with a valid cookie, answers come whole.
func TestAmplificationFactor(t *testing.T) {
	cfg := amplificationConfig(t)
	_, addr := startServer(t, cfg, Options{})
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// A valid server cookie for this client, from the server itself.
	const client = "a1b2c3d4e5f60718"
	first := new(dns.Msg)
	if err := first.Unpack(udpExchange(t, conn, ampQuery(t, 1, "cdn.example.test.", dns.TypeSOA, 1232, "", client))); err != nil {
		t.Fatal(err)
	}
	valid := cookieOf(first)
	if len(valid) != 48 {
		t.Fatalf("no server cookie in %v", first)
	}
	forged := valid[:40] + hex.EncodeToString([]byte{0xde, 0xad, 0xbe, 0xef})

	names := []string{"cdn.example.test.", "www.cdn.example.test.", "m.cdn.example.test.", "t.cdn.example.test.",
		"c.cdn.example.test.", "alias.cdn.example.test.", "nx.cdn.example.test.", "www.customer.test.", "www.example.org.", "."}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeNS, dns.TypeSOA, dns.TypeANY, dns.TypeCNAME, dns.TypeMX, dns.TypeDNSKEY}
	type worst struct {
		factor float64
		what   string
	}
	var capped, withCookie, tcp, uncapped worst
	note := func(w *worst, f float64, what string) {
		if f > w.factor {
			*w = worst{f, what}
		}
	}
	queries, truncated := 0, 0
	id := uint16(100)
	for _, name := range names {
		for _, qt := range types {
			for _, edns := range []uint16{0, 512, 1232, 4096, 65535} {
				for _, ecs := range []string{"", "198.51.100.0/24", "2001:db8:e::/56"} {
					for _, ck := range []string{"", client, forged, valid} {
						if edns == 0 && (ecs != "" || ck != "") {
							continue
						}
						id++
						pkt := ampQuery(t, id, name, qt, edns, ecs, ck)
						resp := udpExchange(t, conn, pkt)
						queries++
						f := float64(len(resp)) / float64(len(pkt))
						what := fmt.Sprintf("%s %s edns=%d ecs=%q cookie=%d bytes: %d -> %d bytes", name, dns.TypeToString[qt], edns, ecs, len(ck)/2, len(pkt), len(resp))
						if resp[2]&0x02 != 0 {
							truncated++
						}
						if ck == valid {
							note(&withCookie, f, what)
						} else {
							note(&capped, f, what)
						}
						// What the same query costs over TCP, where nothing is capped.
						if edns == 4096 && ck == "" {
							full := tcpExchange(t, addr, pkt)
							note(&tcp, float64(len(full))/float64(len(pkt)), what)
							if len(full) <= 1232 {
								note(&uncapped, float64(len(full))/float64(len(pkt)), what)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("FIGURE dns amplification: %d UDP queries; largest reply/query without a valid cookie %.2fx (%s); %d replies truncated",
		queries, capped.factor, capped.what, truncated)
	t.Logf("FIGURE dns amplification: with a valid cookie %.2fx (%s); over TCP %.2fx; the same answers uncapped over UDP (1232-byte buffer) would be %.2fx",
		withCookie.factor, withCookie.what, tcp.factor, uncapped.factor)
	if capped.factor > maxAmplification {
		t.Errorf("a UDP reply without a valid cookie is %.2fx its query (%s), limit %d", capped.factor, capped.what, maxAmplification)
	}
	if withCookie.factor <= maxAmplification || tcp.factor <= maxAmplification {
		t.Errorf("the response space has no large answer to cap: with a cookie %.2fx, TCP %.2fx", withCookie.factor, tcp.factor)
	}
}
