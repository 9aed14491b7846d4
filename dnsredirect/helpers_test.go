package dnsredirect

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/dnsredirect/geo"
)

// testYAML is the configuration most tests start from. Edge addresses are
// documentation and private addresses: nothing is ever sent to them (health
// probes are off unless a test points them at its own httptest servers).
const testYAML = `
listen: 127.0.0.1:0
admin: 127.0.0.1:0
mmdb: testdata/geo.mmdb
ttl: 60s
udp_sockets: 2
zones:
  - name: cdn.example.test
    ns: [ns1, ns2.example.net.]
    soa: {serial: 7, minimum: 30s}
    hosts: [www, "@", img]
    records:
      - "ns1 A 127.0.0.1"
      - "shop CNAME www"
      - "alias CNAME shop"
      - "broken CNAME missing"
      - "outside CNAME www.example.org."
      - "txt 300 TXT \"hello\""
      - "a.b.deep A 192.0.2.99"
  - name: customer.test
    ns: [ns1.cdn.example.test.]
    records:
      - "www CNAME www.cdn.example.test."
sites:
  - name: eu
    lat: 50.11
    lon: 8.68
    scrubber: {ipv4: 10.101.255.1, ipv6: "fd00:101:ff::1"}
    edges:
      - {name: eu-1, ipv4: 10.101.0.1, ipv6: "fd00:101::1"}
      - {name: eu-2, ipv4: 10.101.0.2, ipv6: "fd00:101::2"}
      - {name: eu-3, ipv4: 10.101.0.3}
  - name: us
    lat: 39.04
    lon: -77.49
    edges:
      - {name: us-1, ipv4: 10.102.0.1, ipv6: "fd00:102::1"}
      - {name: us-2, ipv4: 10.102.0.2}
  - name: apac
    lat: 1.29
    lon: 103.85
    edges:
      - {name: apac-1, ipv4: 10.103.0.1, ipv6: "fd00:103::1"}
routing:
  default: [us, eu, apac]
  countries: {NZ: [apac]}
  continents: {AF: [eu]}
health:
  enabled: false
`

func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig()
	if err := configs.LoadBytes("test.yaml", []byte(testYAML), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

var (
	testDBOnce sync.Once
	testDBData []byte
	testDBErr  error
)

// testDB is a database built from testdata/geo.csv with the package's own
// builder.
func testDB(t testing.TB) *geo.DB {
	t.Helper()
	testDBOnce.Do(func() {
		f, err := os.Open("testdata/geo.csv")
		if err != nil {
			testDBErr = err
			return
		}
		defer f.Close()
		nets, err := geo.ParseCSV("testdata/geo.csv", f)
		if err != nil {
			testDBErr = err
			return
		}
		var buf bytes.Buffer
		if _, err := geo.WriteMMDB(&buf, "testdata/geo.csv", nets); err != nil {
			testDBErr = err
			return
		}
		testDBData = buf.Bytes()
	})
	if testDBErr != nil {
		t.Fatal(testDBErr)
	}
	db, err := geo.OpenBytes("geo.mmdb", testDBData)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startServer runs a server on 127.0.0.1:0 until the test ends and returns
// it with its address. Queries can be sent at once: the sockets are bound
// before Serve starts reading them.
func startServer(t testing.TB, cfg Config, opt Options) (*Server, string) {
	t.Helper()
	if opt.Geo == nil {
		opt.Geo = testDB(t)
	}
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, s.Addr()
}

func newLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// ask is one query.
type ask struct {
	name   string
	qtype  uint16
	ecs    string // "192.0.2.0/24"; "" for none
	tcp    bool
	noEDNS bool
	bufsz  uint16 // EDNS UDP size; 0 means 1232
	do     bool
	id     uint16 // 0 means random
	cookie string // COOKIE option in hex: client cookie, then server cookie; "" for none
}

func exchange(t testing.TB, addr string, a ask) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(a.name, a.qtype)
	m.RecursionDesired = false
	if a.id != 0 {
		m.Id = a.id
	}
	if !a.noEDNS {
		size := a.bufsz
		if size == 0 {
			size = 1232
		}
		m.SetEdns0(size, a.do)
		if a.ecs != "" {
			p := netip.MustParsePrefix(a.ecs)
			e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())}
			e.Family = 1
			if p.Addr().Is6() {
				e.Family = 2
			}
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, e)
		}
		if a.cookie != "" {
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: a.cookie})
		}
	}
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, UDPSize: 65535}
	if a.tcp {
		c.Net = "tcp"
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", a.name, dns.TypeToString[a.qtype], err)
	}
	return r
}

// addrs returns the A/AAAA addresses of the answer section, in order.
func addrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

func ecsOf(m *dns.Msg) *dns.EDNS0_SUBNET {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				return e
			}
		}
	}
	return nil
}

func join(s []string) string { return strings.Join(s, " ") }
