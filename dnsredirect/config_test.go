package dnsredirect_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/dnsredirect/geo"
)

func TestSampleConfigs(t *testing.T) {
	for _, name := range []string{"dns.yaml", "dns-bench.yaml"} {
		t.Run(name, func(t *testing.T) {
			cfg := dnsredirect.DefaultConfig()
			if err := configs.Load("../configs/"+name, &cfg); err != nil {
				t.Fatal(err)
			}
			if _, err := dnsredirect.New(cfg, dnsredirect.Options{Geo: nowhere{}}); err != nil {
				t.Fatal(err)
			}
		})
	}
	cfg := dnsredirect.DefaultConfig()
	if err := configs.Load("../configs/dns-bench.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	// The bench's edges are documentation addresses: never probe them.
	if cfg.Health.Enabled || cfg.Listen != "127.0.0.1:5304" || cfg.TTL.D() != 30*time.Second {
		t.Fatalf("dns-bench.yaml: %+v", cfg)
	}
}

// nowhere places no one.
type nowhere struct{}

func (nowhere) Lookup(a netip.Addr) (geo.Location, netip.Prefix, error) {
	p, _ := a.Prefix(0)
	return geo.Location{}, p, nil
}

const minimal = `listen: 127.0.0.1:0
mmdb: x.mmdb
zones:
  - name: cdn.example.test
    ns: [ns1]
    hosts: [www]
sites:
  - name: eu
    lat: 1
    lon: 2
    edges:
      - {name: e1, ipv4: 192.0.2.1}
health: {enabled: false}
`

func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"no sites", strings.Replace(minimal, "sites:\n  - name: eu\n    lat: 1\n    lon: 2\n    edges:\n      - {name: e1, ipv4: 192.0.2.1}\n", "", 1),
			"sites: at least one site with edges is required"},
		{"site without edges", strings.Replace(minimal, "    edges:\n      - {name: e1, ipv4: 192.0.2.1}\n", "    edges: []\n", 1),
			`f.yaml:11: sites[0].edges: site "eu" has no edges`},
		{"no mmdb", strings.Replace(minimal, "mmdb: x.mmdb\n", "", 1), "f.yaml: mmdb: required"},
		{"no zones", minimal[:strings.Index(minimal, "zones:")] + minimal[strings.Index(minimal, "sites:"):], "zones: at least one zone"},
		{"bad ttl", minimal + "ttl: 0s\n", "f.yaml:14: ttl: must be between 1s"},
		{"answers", minimal + "answers: 0\n", "f.yaml:14: answers: must be between 1 and 64"},
		{"udp size", minimal + "max_udp_size: 100\n", "max_udp_size: must be between 512 and 4096"},
		{"geo cache", minimal + "geo_cache: 1000\n", "geo_cache: must be 0 or a power of two"},
		{"listen", strings.Replace(minimal, "127.0.0.1:0", "localhost:53", 1), "f.yaml:1: listen: want an IP address"},
		{"unknown key", minimal + "bogus: 1\n", "f.yaml:14: bogus: unknown key"},
		{"relative name trap", strings.Replace(minimal, "ns: [ns1]", "ns: [ns1.cdn.example.test]", 1),
			`f.yaml:5: zones[0].ns[0]: "ns1.cdn.example.test" is relative`},
		{"bad record", strings.Replace(minimal, "hosts: [www]", "hosts: [www]\n    records: [\"x A 999.1.1.1\"]", 1),
			`zones[0].records[0]: bad record "x A 999.1.1.1"`},
		{"record outside the zone", strings.Replace(minimal, "hosts: [www]", "hosts: [www]\n    records: [\"x.example.org. A 192.0.2.1\"]", 1),
			"x.example.org. is not in zone cdn.example.test."},
		{"NS record", strings.Replace(minimal, "hosts: [www]", "hosts: [www]\n    records: [\"sub NS ns.example.org.\"]", 1),
			"NS records cannot be static here"},
		{"CNAME and data", strings.Replace(minimal, "hosts: [www]", "hosts: [www]\n    records: [\"www CNAME x.example.org.\"]", 1),
			"www.cdn.example.test. has a CNAME and other data"},
		{"static A at a host", strings.Replace(minimal, "hosts: [www]", "hosts: [www]\n    records: [\"www A 192.0.2.7\"]", 1),
			"is a CDN host and also has static A/AAAA records"},
		{"directive", strings.Replace(minimal, "hosts: [www]", "hosts: [www]\n    records: [\"$INCLUDE /etc/passwd\"]", 1),
			"directives ($ORIGIN, $TTL, $INCLUDE) are not allowed"},
		{"overlapping zones", strings.Replace(minimal, "sites:", "  - {name: sub.cdn.example.test, ns: [ns1]}\nsites:", 1),
			"overlaps zone"},
		{"duplicate edge", strings.Replace(minimal, "      - {name: e1, ipv4: 192.0.2.1}\n", "      - {name: e1, ipv4: 192.0.2.1}\n      - {name: e1, ipv4: 192.0.2.2}\n", 1),
			`f.yaml:13: sites[0].edges[1].name: duplicate edge "e1"`},
		{"edge without address", strings.Replace(minimal, "{name: e1, ipv4: 192.0.2.1}", "{name: e1}", 1),
			"sites[0].edges[0]: an edge needs an ipv4 or an ipv6 address"},
		{"v6 in ipv4", strings.Replace(minimal, "ipv4: 192.0.2.1", "ipv4: \"2001:db8::1\"", 1),
			"sites[0].edges[0].ipv4: want an IPv4 address"},
		{"bad address", strings.Replace(minimal, "ipv4: 192.0.2.1", "ipv4: 192.0.2", 1),
			"f.yaml:12: sites[0].edges[0].ipv4: ParseAddr"},
		{"missing lat", strings.Replace(minimal, "    lat: 1\n", "", 1), "sites[0].lat: required"},
		{"lat range", strings.Replace(minimal, "lat: 1", "lat: 91", 1), "f.yaml:9: sites[0].lat: must be between -90 and 90"},
		{"probe required with health on", strings.Replace(minimal, "health: {enabled: false}\n", "", 1),
			"sites[0].edges[0].probe: required while health checking is enabled"},
		{"bad probe", strings.Replace(minimal, "{name: e1, ipv4: 192.0.2.1}", "{name: e1, ipv4: 192.0.2.1, probe: \"ftp://x\"}", 1),
			"probe: want an http:// or https:// base URL"},
		{"health fall", strings.Replace(minimal, "health: {enabled: false}", "health: {enabled: false, fall: 0}", 1), "health.fall: must be between 1"},
		{"unknown routing site", minimal + "routing: {continents: {EU: [mars]}}\n", `routing.continents.EU[0]: unknown site "mars"`},
		{"bad continent", minimal + "routing: {continents: {XX: [eu]}}\n", "routing.continents.XX: want a continent code"},
		{"bad country", minimal + "routing: {countries: {de: [eu]}}\n", "routing.countries.de: want a two-letter upper-case"},
		{"soa time", strings.Replace(minimal, "ns: [ns1]", "ns: [ns1]\n    soa: {retry: 500ms}", 1), "zones[0].soa.retry: must be between 1s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := dnsredirect.DefaultConfig()
			err := configs.LoadBytes("f.yaml", []byte(c.yaml), &cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant it to contain %q", err, c.want)
			}
		})
	}
	cfg := dnsredirect.DefaultConfig()
	if err := configs.LoadBytes("f.yaml", []byte(minimal), &cfg); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
}

func FuzzConfig(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(strings.Replace(minimal, "hosts: [www]", "hosts: [www, \"@\"]\n    records: [\"a CNAME www\", \"b.c TXT x\", \"m MX 10 a\"]", 1)))
	f.Add([]byte(minimal + "routing: {default: [eu], countries: {DE: [eu]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := dnsredirect.DefaultConfig()
		if err := configs.LoadBytes("fuzz.yaml", data, &cfg); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		// Whatever validates builds a server.
		if _, err := dnsredirect.New(cfg, dnsredirect.Options{Geo: nowhere{}}); err != nil {
			t.Fatalf("valid config, New failed: %v", err)
		}
	})
}
