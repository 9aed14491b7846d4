package dnsredirect

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution/health"
	"github.com/vergecdn/verge/dnsredirect/geo"
)

// Config is the configuration of `verge dns`. Relative file paths are
// resolved by the caller (the command resolves them against the config
// file's directory).
type Config struct {
	// Listen is the DNS address, served over UDP and TCP. Default ":53".
	Listen string `yaml:"listen"`
	// Admin is the HTTP address of /healthz and /metrics. Default "127.0.0.1:9153".
	Admin string `yaml:"admin"`
	// MMDB is the GeoIP2/GeoLite2 City or Country database (or one built with
	// `verge mmdb build`). Required.
	MMDB string `yaml:"mmdb"`
	// TTL of the A and AAAA answers for CDN hostnames. Default 60s.
	TTL configs.Duration `yaml:"ttl"`
	// Answers is how many edges one reply names. Default 2.
	Answers int `yaml:"answers"`
	// MaxUDPSize is the largest UDP reply sent to an EDNS client (its own
	// advertised size is honoured when smaller; clients without EDNS get 512
	// bytes). Default 1232, the DNS Flag Day 2020 size.
	MaxUDPSize int `yaml:"max_udp_size"`
	// UDPSockets is how many SO_REUSEPORT UDP sockets share Listen, each
	// served by its own goroutine. Default 0: one per CPU (GOMAXPROCS).
	UDPSockets int `yaml:"udp_sockets"`
	// TCPTimeout bounds reading a query and writing a reply on TCP. Default 5s.
	TCPTimeout configs.Duration `yaml:"tcp_timeout"`
	// TCPIdleTimeout is how long a TCP connection may wait for its next
	// query. Default 10s.
	TCPIdleTimeout configs.Duration `yaml:"tcp_idle_timeout"`
	// TCPMaxQueries is how many queries one TCP connection may send. Default 128.
	TCPMaxQueries int `yaml:"tcp_max_queries"`
	// GeoCache is the number of slots in the cache of geo decisions per
	// client network (a power of two; 0 turns it off). Default 65536.
	GeoCache int `yaml:"geo_cache"`
	// PushedLoadTTL is how long a load pushed with SetLoad (by management)
	// overrides the load probes report. Default 30s; 0 means until replaced.
	PushedLoadTTL configs.Duration `yaml:"pushed_load_ttl"`
	// Drain is how long shutdown waits for TCP connections to finish. Default 5s.
	Drain configs.Duration `yaml:"drain"`

	// Zones are the zones served authoritatively. At least one.
	Zones []ZoneConfig `yaml:"zones"`
	// Sites are the regions edges live in. At least one, each with edges.
	Sites []SiteConfig `yaml:"sites"`
	// Routing overrides the nearest-site rule.
	Routing RoutingConfig `yaml:"routing"`
	// Health configures the probes of every edge's /healthz (defaults:
	// enabled, path /healthz, interval 2s, timeout 1s, rise 2, fall 3).
	Health health.Config `yaml:"health"`
}

// ZoneConfig is one zone. Names in it follow zone-file rules: a name
// ending in a dot is absolute, any other is relative to the zone, and "@"
// is the zone itself.
type ZoneConfig struct {
	// Name of the zone, e.g. "cdn.example.com". Required.
	Name string `yaml:"name"`
	// NS lists the zone's name servers (at least one).
	NS []string `yaml:"ns"`
	// SOA fields; see SOAConfig for defaults.
	SOA SOAConfig `yaml:"soa"`
	// TTL of the SOA and NS records and of static records that give none.
	// Default 1h.
	TTL configs.Duration `yaml:"ttl"`
	// Hosts are the CDN hostnames answered with the nearest healthy edges
	// (A and AAAA), e.g. ["www", "@"].
	Hosts []string `yaml:"hosts"`
	// Records are static records in zone-file syntax, e.g.
	// "ns1 A 192.0.2.53" or "img.shop CNAME www" (a customer name pointed at
	// a CDN hostname: the reply carries the CNAME and the geo answer). SOA, NS
	// and DNAME records are not allowed here.
	Records []string `yaml:"records"`
}

// SOAConfig holds the SOA fields of a zone.
type SOAConfig struct {
	// MName is the primary name server. Default: the first NS.
	MName string `yaml:"mname"`
	// RName is the responsible mailbox as a name. Default "hostmaster" in the zone.
	RName string `yaml:"rname"`
	// Serial of the zone. Default 0: the Unix time the server started.
	Serial uint32 `yaml:"serial"`
	// Refresh, Retry, Expire: defaults 1h, 10m, 168h.
	Refresh configs.Duration `yaml:"refresh"`
	Retry   configs.Duration `yaml:"retry"`
	Expire  configs.Duration `yaml:"expire"`
	// Minimum is the negative-caching TTL (RFC 2308). Default 60s.
	Minimum configs.Duration `yaml:"minimum"`
}

// SiteConfig is one region: where it is and the edges in it.
type SiteConfig struct {
	// Name of the site, e.g. "eu-west". Required and unique.
	Name string `yaml:"name"`
	// Lat and Lon locate the site in degrees. Required.
	Lat *float64 `yaml:"lat"`
	Lon *float64 `yaml:"lon"`
	// Scrubber is the address answered in place of an edge that is under
	// attack. Optional; without one such an edge keeps its own address.
	Scrubber Addrs `yaml:"scrubber"`
	// Edges in the site. At least one.
	Edges []EdgeConfig `yaml:"edges"`
}

// Addrs is an IPv4 and an IPv6 address, either of which may be absent.
type Addrs struct {
	IPv4 netip.Addr `yaml:"ipv4"`
	IPv6 netip.Addr `yaml:"ipv6"`
}

// EdgeConfig is one edge node.
type EdgeConfig struct {
	// Name of the edge, unique across all sites (it names the edge in
	// metrics, logs and the SetLoad/SetUnderAttack calls). Required.
	Name string `yaml:"name"`
	// IPv4 and IPv6 are the addresses answered for it; at least one.
	Addrs `yaml:",inline"`
	// Probe is the base URL health probes GET health.path below, e.g.
	// "http://192.0.2.10:8080". Required when health checking is enabled.
	Probe string `yaml:"probe"`
}

// RoutingConfig changes which site a client is sent to. Clients whose
// country (or else continent) is listed try the listed sites first, in
// order, then the rest by distance. Clients with no known location use
// Default.
type RoutingConfig struct {
	// Default is the site order for clients the database does not place.
	// Default: the sites in the order they are configured.
	Default []string `yaml:"default"`
	// Continents maps a continent code (AF AN AS EU NA OC SA) to sites.
	Continents map[string][]string `yaml:"continents"`
	// Countries maps an ISO 3166-1 alpha-2 country code to sites.
	Countries map[string][]string `yaml:"countries"`
}

// DefaultConfig returns the defaults stated on each field.
func DefaultConfig() Config {
	return Config{
		Listen:         ":53",
		Admin:          "127.0.0.1:9153",
		TTL:            configs.Duration(60 * time.Second),
		Answers:        2,
		MaxUDPSize:     1232,
		TCPTimeout:     configs.Duration(5 * time.Second),
		TCPIdleTimeout: configs.Duration(10 * time.Second),
		TCPMaxQueries:  128,
		GeoCache:       1 << 16,
		PushedLoadTTL:  configs.Duration(30 * time.Second),
		Drain:          configs.Duration(5 * time.Second),
		Health:         health.DefaultConfig(),
	}
}

// zoneDefaults fills the zone fields left at zero with their defaults.
func (z *ZoneConfig) withDefaults() ZoneConfig {
	out := *z
	if out.TTL == 0 {
		out.TTL = configs.Duration(time.Hour)
	}
	if out.SOA.Refresh == 0 {
		out.SOA.Refresh = configs.Duration(time.Hour)
	}
	if out.SOA.Retry == 0 {
		out.SOA.Retry = configs.Duration(10 * time.Minute)
	}
	if out.SOA.Expire == 0 {
		out.SOA.Expire = configs.Duration(168 * time.Hour)
	}
	if out.SOA.Minimum == 0 {
		out.SOA.Minimum = configs.Duration(60 * time.Second)
	}
	return out
}

// Limits that keep a typo from turning into something absurd.
const (
	maxAnswers  = 64
	maxSites    = 1000
	maxTTL      = 7 * 24 * time.Hour
	maxGeoCache = 1 << 24
)

// Validate checks the configuration before anything listens. Errors name
// the key they are about.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, configs.Errorf(key, format, args...)) }

	if err := checkHostPort(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if err := checkHostPort(c.Admin); err != nil {
		bad("admin", "%v", err)
	}
	if strings.TrimSpace(c.MMDB) == "" {
		bad("mmdb", "required: a GeoIP2/GeoLite2 City or Country database (build one from CSV with `verge mmdb build`)")
	}
	if c.TTL.D() < time.Second || c.TTL.D() > maxTTL {
		bad("ttl", "must be between 1s and %v, got %v", maxTTL, c.TTL)
	} else if c.TTL.D()%time.Second != 0 {
		bad("ttl", "must be whole seconds, got %v", c.TTL)
	}
	if c.Answers < 1 || c.Answers > maxAnswers {
		bad("answers", "must be between 1 and %d, got %d", maxAnswers, c.Answers)
	}
	if c.MaxUDPSize < 512 || c.MaxUDPSize > 4096 {
		bad("max_udp_size", "must be between 512 and 4096, got %d", c.MaxUDPSize)
	}
	if c.UDPSockets < 0 || c.UDPSockets > 256 {
		bad("udp_sockets", "must be between 0 (one per CPU) and 256, got %d", c.UDPSockets)
	}
	if c.TCPTimeout.D() <= 0 {
		bad("tcp_timeout", "must be positive")
	}
	if c.TCPIdleTimeout.D() <= 0 {
		bad("tcp_idle_timeout", "must be positive")
	}
	if c.TCPMaxQueries < 1 || c.TCPMaxQueries > 1<<16 {
		bad("tcp_max_queries", "must be between 1 and 65536, got %d", c.TCPMaxQueries)
	}
	if c.GeoCache < 0 || c.GeoCache > maxGeoCache || c.GeoCache&(c.GeoCache-1) != 0 {
		bad("geo_cache", "must be 0 or a power of two up to %d, got %d", maxGeoCache, c.GeoCache)
	}
	if err := c.Health.Validate("health"); err != nil {
		errs = append(errs, err)
	}

	if len(c.Zones) == 0 {
		bad("zones", "at least one zone is required")
	}
	if _, err := compileZones(c, 1); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateSites()...)
	return errors.Join(errs...)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port in %q", addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("want an IP address (or nothing, for every address) before the port, got %q", host)
		}
	}
	return nil
}

func (c *Config) validateSites() []error {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, configs.Errorf(key, format, args...)) }
	if len(c.Sites) == 0 {
		bad("sites", "at least one site with edges is required")
	}
	if len(c.Sites) > maxSites {
		bad("sites", "at most %d sites, got %d", maxSites, len(c.Sites))
	}
	sites := map[string]bool{}
	edges := map[string]string{}
	for i, s := range c.Sites {
		key := configs.Index("sites", i)
		switch {
		case !validName(s.Name):
			bad(configs.Key(key, "name"), "want a name of letters, digits, '-', '_' or '.', got %q", s.Name)
		case sites[s.Name]:
			bad(configs.Key(key, "name"), "duplicate site %q", s.Name)
		}
		sites[s.Name] = true
		if s.Lat == nil {
			bad(configs.Key(key, "lat"), "required")
		} else if math.IsNaN(*s.Lat) || *s.Lat < -90 || *s.Lat > 90 {
			bad(configs.Key(key, "lat"), "must be between -90 and 90")
		}
		if s.Lon == nil {
			bad(configs.Key(key, "lon"), "required")
		} else if math.IsNaN(*s.Lon) || *s.Lon < -180 || *s.Lon > 180 {
			bad(configs.Key(key, "lon"), "must be between -180 and 180")
		}
		errs = append(errs, checkAddrs(configs.Key(key, "scrubber"), s.Scrubber, false)...)
		if len(s.Edges) == 0 {
			bad(configs.Key(key, "edges"), "site %q has no edges (every site needs at least one)", s.Name)
		}
		for j, e := range s.Edges {
			ekey := configs.Index(configs.Key(key, "edges"), j)
			switch {
			case !validName(e.Name):
				bad(configs.Key(ekey, "name"), "want a name of letters, digits, '-', '_' or '.', got %q", e.Name)
			case edges[e.Name] != "":
				bad(configs.Key(ekey, "name"), "duplicate edge %q (also in site %q)", e.Name, edges[e.Name])
			}
			edges[e.Name] = s.Name
			errs = append(errs, checkAddrs(ekey, e.Addrs, true)...)
			if c.Health.Enabled || e.Probe != "" {
				if err := checkProbeURL(e.Probe); err != nil {
					bad(configs.Key(ekey, "probe"), "%v", err)
				}
			}
		}
	}
	checkList := func(key string, list []string) {
		seen := map[string]bool{}
		if len(list) == 0 {
			bad(key, "list at least one site")
		}
		for i, name := range list {
			switch {
			case !sites[name]:
				bad(configs.Index(key, i), "unknown site %q", name)
			case seen[name]:
				bad(configs.Index(key, i), "site %q listed twice", name)
			}
			seen[name] = true
		}
	}
	if c.Routing.Default != nil {
		checkList("routing.default", c.Routing.Default)
	}
	for code, list := range c.Routing.Continents {
		key := configs.Key("routing.continents", code)
		if !geo.ValidContinent(code) {
			bad(key, "want a continent code (AF AN AS EU NA OC SA), got %q", code)
		}
		checkList(key, list)
	}
	for code, list := range c.Routing.Countries {
		key := configs.Key("routing.countries", code)
		if !geo.ValidCountry(code) {
			bad(key, "want a two-letter upper-case ISO 3166-1 code like DE, got %q", code)
		}
		checkList(key, list)
	}
	return errs
}

func checkAddrs(key string, a Addrs, required bool) []error {
	var errs []error
	if a.IPv4.IsValid() && !a.IPv4.Is4() {
		errs = append(errs, configs.Errorf(configs.Key(key, "ipv4"), "want an IPv4 address, got %s", a.IPv4))
	}
	if a.IPv6.IsValid() && (!a.IPv6.Is6() || a.IPv6.Is4In6() || a.IPv6.Zone() != "") {
		errs = append(errs, configs.Errorf(configs.Key(key, "ipv6"), "want a plain IPv6 address, got %s", a.IPv6))
	}
	if required && !a.IPv4.IsValid() && !a.IPv6.IsValid() {
		errs = append(errs, configs.Errorf(key, "an edge needs an ipv4 or an ipv6 address"))
	}
	return errs
}

func checkProbeURL(s string) error {
	if s == "" {
		return errors.New("required while health checking is enabled: the edge's base URL, e.g. http://192.0.2.10:8080")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("want an http:// or https:// base URL without query, got %q", s)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
