package edge

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/edge/cachekey"
	"github.com/vergecdn/verge/edge/listen"
	"github.com/vergecdn/verge/edge/storage"
)

// Role is what a node does in the tree.
type Role string

const (
	RoleEdge Role = "edge" // serves clients; its upstream is a hub (or the origin)
	RoleHub  Role = "hub"  // serves edges; its upstream is the origin
)

// Config is an edge or hub node's configuration (YAML).
type Config struct {
	Node   NodeConfig   `yaml:"node"`
	Listen ListenConfig `yaml:"listen"`
	// Upstream is where misses go when set: for an edge, its hub (a single
	// URL); properties' origins are used when it is empty, and always by a hub.
	Upstream string `yaml:"upstream"`
	// ClusterToken authenticates node-to-node and operator calls to the admin
	// API (purge). Empty disables those endpoints. Prefer ClusterTokenFile.
	ClusterToken     string `yaml:"cluster_token"`
	ClusterTokenFile string `yaml:"cluster_token_file"`

	Cache        CacheConfig    `yaml:"cache"`
	Limits       LimitsConfig   `yaml:"limits"`
	UpstreamHTTP UpstreamConfig `yaml:"upstream_http"`

	Properties []Property `yaml:"properties"`

	// Role is set by the subcommand (verge edge / verge hub), not by YAML.
	Role Role `yaml:"-"`
	// ViaParents says the transport picks the next tier itself (a hub ring):
	// requests then keep the client's Host, which hubs need to find the
	// property. Set by the wiring, not by YAML.
	ViaParents bool `yaml:"-"`
}

// NodeConfig names the node.
type NodeConfig struct {
	Name   string `yaml:"name"`   // default: the host name; shown in Cache-Status and Via
	Region string `yaml:"region"` // default "default"
}

// ListenConfig holds the listen addresses.
type ListenConfig struct {
	HTTP  string `yaml:"http"`  // public listener, default "127.0.0.1:8080"
	Admin string `yaml:"admin"` // admin listener (/healthz, /metrics, purge), default "127.0.0.1:9080"
	// HTTPS is the TLS listener (HTTP/1.1 and HTTP/2 over TCP, HTTP/3 over
	// UDP on the same port). Default "": off. Needs a certificate on at
	// least one property.
	HTTPS string `yaml:"https"`
	// HTTP3 serves HTTP/3 on the HTTPS port and advertises it with Alt-Svc.
	// Default true.
	HTTP3 bool `yaml:"http3"`
	// CertReload is how often certificate files are checked for changes
	// (SIGHUP reloads at once). Default 10s.
	CertReload configs.Duration `yaml:"cert_reload"`
}

// TLSFiles is a property's certificate chain and key, as PEM files.
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// CacheConfig sizes the cache: the storage tiers (ram_bytes, shards,
// policy, disk; see edge/storage/README.md) and what is worth storing.
type CacheConfig struct {
	storage.Config `yaml:",inline"`
	// MaxObjectBytes: larger responses pass through uncached. Default 1GiB;
	// the tiers lower it (a RAM-only cache stores at most ram_bytes/shards).
	MaxObjectBytes configs.Bytes `yaml:"max_object_bytes"`
}

// LimitsConfig bounds what a client may send.
type LimitsConfig struct {
	MaxHeaderBytes configs.Bytes `yaml:"max_header_bytes"` // request head, default 32KiB (431 above)
	MaxHeaderCount int           `yaml:"max_header_count"` // default 100 (431 above)
	// ReadHeaderTimeout closes a connection that does not send its request
	// head in time. Default 10s.
	ReadHeaderTimeout configs.Duration `yaml:"read_header_timeout"`
	IdleTimeout       configs.Duration `yaml:"idle_timeout"` // keep-alive idle, default 60s
}

// UpstreamConfig tunes requests to the next tier.
type UpstreamConfig struct {
	// ConnectTimeout bounds dialing the upstream. Default 3s.
	ConnectTimeout configs.Duration `yaml:"connect_timeout"`
	// HeaderTimeout bounds the wait for the upstream's response head; past
	// it the client gets 504. Default 30s.
	HeaderTimeout configs.Duration `yaml:"header_timeout"`
	// MaxIdleConns is the keep-alive pool per upstream host. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// CAFile adds PEM CA certificates to verify HTTPS origins and hubs by
	// (for private CAs); the system roots are always trusted. Default "".
	CAFile string `yaml:"ca_file"`
}

// Property is one customer site: the hostnames it answers and its origin.
type Property struct {
	Name  string   `yaml:"name"`  // required, unique; used in metrics and usage
	Hosts []string `yaml:"hosts"` // hostnames; "*" matches any host (one-line mode)
	// Origin is the origin's base URL (http or https).
	Origin string `yaml:"origin"`
	// OriginHost, when set, is the Host sent to the origin instead of the
	// client's.
	OriginHost string `yaml:"origin_host"`
	// DefaultTTL is the freshness of responses that carry none. Default 0:
	// such responses rely on validators and heuristic freshness.
	DefaultTTL configs.Duration `yaml:"default_ttl"`
	// MaxTTL caps every freshness lifetime. Default 0: no cap.
	MaxTTL configs.Duration `yaml:"max_ttl"`
	// QueryInKey keeps the query string in the cache key (default true).
	// When false the query is also dropped from upstream requests.
	QueryInKey bool `yaml:"query_in_key"`
	// KeyHeaders are request headers added to the cache key.
	KeyHeaders []string `yaml:"key_headers"`
	// StaleIfError serves a stale response, up to this long past its
	// freshness, when the upstream is unreachable, times out or answers 500,
	// 502, 503 or 504; a response's own stale-if-error overrides it, and
	// must-revalidate, proxy-revalidate, s-maxage and no-cache forbid it.
	// Default 1h; 0 disables.
	StaleIfError configs.Duration `yaml:"stale_if_error"`
	// TLS is the property's certificate for the HTTPS listener, chosen by SNI
	// among its hosts (and the names in the certificate).
	TLS TLSFiles `yaml:"tls"`
	// HonorRequestCacheControl obeys clients' Cache-Control (no-cache,
	// max-age, ...). Default true; concurrent revalidations still collapse.
	HonorRequestCacheControl bool `yaml:"honor_request_cache_control"`
	// ImplicitTTLForCookies lets default_ttl and heuristic freshness apply
	// to responses to requests with Cookie and to responses with
	// Set-Cookie. Default false: such responses are stored only with an
	// explicit lifetime (max-age, s-maxage, Expires) or "public" from the
	// origin, so a personal page is never served to others on a default.
	ImplicitTTLForCookies bool `yaml:"implicit_ttl_for_cookies"`
}

// DefaultProperty returns a property with the defaults filled in.
func DefaultProperty() Property {
	var p Property
	p.SetDefaults()
	return p
}

// SetDefaults fills in the defaults; the config loader calls it for every
// property in a file.
func (p *Property) SetDefaults() {
	p.QueryInKey = true
	p.HonorRequestCacheControl = true
	p.StaleIfError = configs.Duration(time.Hour)
}

// DefaultConfig returns a config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Node:   NodeConfig{Region: "default"},
		Listen: ListenConfig{HTTP: "127.0.0.1:8080", Admin: "127.0.0.1:9080", HTTP3: true, CertReload: configs.Duration(10 * time.Second)},
		Cache:  CacheConfig{Config: storage.DefaultConfig(), MaxObjectBytes: 1 << 30},
		Limits: LimitsConfig{
			MaxHeaderBytes:    32 << 10,
			MaxHeaderCount:    100,
			ReadHeaderTimeout: configs.Duration(10 * time.Second),
			IdleTimeout:       configs.Duration(60 * time.Second),
		},
		UpstreamHTTP: UpstreamConfig{
			ConnectTimeout: configs.Duration(3 * time.Second),
			HeaderTimeout:  configs.Duration(30 * time.Second),
			MaxIdleConns:   256,
		},
		Role: RoleEdge,
	}
}

// Validate checks the config; errors name the key.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if c.Role != RoleEdge && c.Role != RoleHub {
		add(fmt.Errorf("edge: unknown role %q", c.Role))
	}
	if err := checkAddr(c.Listen.HTTP); err != nil {
		add(configs.Errorf("listen.http", "%v", err))
	}
	if err := checkAddr(c.Listen.Admin); err != nil {
		add(configs.Errorf("listen.admin", "%v", err))
	}
	if c.Listen.HTTP != "" && c.Listen.HTTP == c.Listen.Admin && !strings.HasSuffix(c.Listen.HTTP, ":0") {
		add(configs.Errorf("listen.admin", "must differ from listen.http: the admin API is never on the public listener"))
	}
	certs := 0
	for i, p := range c.Properties {
		k := configs.Key(configs.Index("properties", i), "tls")
		switch {
		case p.TLS.CertFile == "" && p.TLS.KeyFile == "":
		case p.TLS.CertFile == "" || p.TLS.KeyFile == "":
			add(configs.Errorf(k, "set both cert_file and key_file"))
		default:
			certs++
			if _, err := listen.LoadPair(p.TLS.CertFile, p.TLS.KeyFile); err != nil {
				add(configs.Errorf(configs.Key(k, "cert_file"), "%v", err))
			}
		}
	}
	if c.Listen.HTTPS != "" {
		if err := checkAddr(c.Listen.HTTPS); err != nil {
			add(configs.Errorf("listen.https", "%v", err))
		} else if certs == 0 {
			add(configs.Errorf("listen.https", "needs a certificate: set tls.cert_file and tls.key_file on a property"))
		}
		if c.Listen.CertReload <= 0 {
			add(configs.Errorf("listen.cert_reload", "must be positive"))
		}
	}
	if c.Upstream != "" {
		if err := checkURL(c.Upstream); err != nil {
			add(configs.Errorf("upstream", "%v", err))
		}
	}
	if c.ClusterToken != "" && c.ClusterTokenFile != "" {
		add(configs.Errorf("cluster_token_file", "set cluster_token or cluster_token_file, not both"))
	}
	if err := c.Cache.Config.ValidateAt("cache"); err != nil {
		add(err)
	}
	if c.Cache.MaxObjectBytes <= 0 {
		add(configs.Errorf("cache.max_object_bytes", "must be positive"))
	}
	if c.Limits.MaxHeaderBytes < 1<<10 {
		add(configs.Errorf("limits.max_header_bytes", "must be at least 1KiB"))
	}
	if c.Limits.MaxHeaderCount < 8 {
		add(configs.Errorf("limits.max_header_count", "must be at least 8"))
	}
	if c.UpstreamHTTP.HeaderTimeout <= 0 {
		add(configs.Errorf("upstream_http.header_timeout", "must be positive"))
	}
	if c.UpstreamHTTP.ConnectTimeout <= 0 {
		add(configs.Errorf("upstream_http.connect_timeout", "must be positive"))
	}
	if len(c.Properties) == 0 {
		add(configs.Errorf("properties", "at least one property is required"))
	}
	names := map[string]bool{}
	hosts := map[string]string{}
	for i, p := range c.Properties {
		k := configs.Index("properties", i)
		if p.Name == "" {
			add(configs.Errorf(configs.Key(k, "name"), "required"))
		} else if names[p.Name] {
			add(configs.Errorf(configs.Key(k, "name"), "duplicate property %q", p.Name))
		}
		names[p.Name] = true
		if len(p.Hosts) == 0 {
			add(configs.Errorf(configs.Key(k, "hosts"), "at least one host is required"))
		}
		for j, h := range p.Hosts {
			hk := configs.Index(configs.Key(k, "hosts"), j)
			n := cachekey.Host(h)
			if n == "" || strings.ContainsAny(n, "/ ?#@") {
				add(configs.Errorf(hk, "bad host name %q", h))
				continue
			}
			if other, dup := hosts[n]; dup {
				add(configs.Errorf(hk, "host %q is already in property %q", h, other))
			}
			hosts[n] = p.Name
		}
		if p.Origin == "" {
			add(configs.Errorf(configs.Key(k, "origin"), "required"))
		} else if p.Origin != "" {
			if err := checkURL(p.Origin); err != nil {
				add(configs.Errorf(configs.Key(k, "origin"), "%v", err))
			}
		}
		if p.MaxTTL > 0 && p.DefaultTTL > p.MaxTTL {
			add(configs.Errorf(configs.Key(k, "default_ttl"), "exceeds max_ttl"))
		}
		for j, h := range p.KeyHeaders {
			if h == "" || strings.ContainsAny(h, " :\r\n") {
				add(configs.Errorf(configs.Index(configs.Key(k, "key_headers"), j), "bad header name %q", h))
			}
		}
	}
	return errors.Join(errs...)
}

func checkAddr(a string) error {
	if a == "" {
		return errors.New("required")
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return fmt.Errorf("want host:port, got %q", a)
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("want an absolute http(s) URL, got %q", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("URL %q must not have a query or fragment", s)
	}
	return nil
}

var _ http.Handler = (*Engine)(nil)

// CertFiles lists the properties' certificates for the HTTPS listener.
func (c *Config) CertFiles() []listen.CertFiles {
	var out []listen.CertFiles
	for _, p := range c.Properties {
		if p.TLS.CertFile != "" {
			out = append(out, listen.CertFiles{CertFile: p.TLS.CertFile, KeyFile: p.TLS.KeyFile, Hosts: p.Hosts})
		}
	}
	return out
}
