package distribution

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution/balance"
	"github.com/vergecdn/verge/distribution/health"
	"github.com/vergecdn/verge/distribution/ring"
)

// Hub is one parent cache of a region.
type Hub struct {
	// Name identifies the hub on the ring and in metrics; required, unique.
	// Every edge of a region must use the same names, weights and
	// virtual_nodes, or they place keys on different hubs.
	Name string `yaml:"name"`
	// URL is the hub's cache listener, "http://host:port"; required.
	URL string `yaml:"url"`
	// HealthURL is the base the health probe uses (URL + health.path).
	// Default: URL. Point it at the hub's admin listener.
	HealthURL string `yaml:"health_url"`
	// Weight is the hub's share of the keys, following its capacity.
	// Default 1.
	Weight int `yaml:"weight"`
	// Region is the region the hub serves. Default "" (every region).
	Region string `yaml:"region"`
}

// ParentsConfig is the upstream of an edge (or of a lower-tier hub): the
// region's hubs on a consistent-hash ring, then the origin.
type ParentsConfig struct {
	// Region of this node: only hubs of this region (or of none) are used.
	// Default "" uses every hub.
	Region string `yaml:"region"`
	// Hubs of the tier above. Default none: requests go to the origin.
	Hubs []Hub `yaml:"hubs"`
	// Origin is the base URL ("http://host:port") used when no hub answers.
	// Default "": the request's own URL, as the edge built it.
	Origin string `yaml:"origin"`
	// OriginFallback sends a request to the origin when no healthy hub
	// answers. When false, hubs marked down are tried before giving up.
	// Default true.
	OriginFallback bool `yaml:"origin_fallback"`
	// VirtualNodes is the number of ring points per unit of hub weight.
	// Default 128.
	VirtualNodes int `yaml:"virtual_nodes"`
	// ConnectTimeout bounds connecting to a hub or the origin; a hub that
	// does not accept in time is skipped for the next. Default 2s.
	ConnectTimeout configs.Duration `yaml:"connect_timeout"`
	// ResponseTimeout bounds the wait for response headers after the request
	// is sent; 0 means no limit. Default 60s.
	ResponseTimeout configs.Duration `yaml:"response_timeout"`
	// Health checks the hubs (probes go to each hub's health_url).
	Health health.Config `yaml:"health"`
}

// DefaultParentsConfig returns the defaults stated on each field.
func DefaultParentsConfig() ParentsConfig {
	return ParentsConfig{
		OriginFallback:  true,
		VirtualNodes:    ring.DefaultVirtualNodes,
		ConnectTimeout:  configs.Duration(2 * time.Second),
		ResponseTimeout: configs.Duration(60 * time.Second),
		Health:          health.DefaultConfig(),
	}
}

// Limits on configurations.
const (
	maxUpstreams = 64 // per pool, and per region for hubs
	maxWeight    = 1000
	maxVNodes    = 4096
	maxAttempts  = maxUpstreams
)

// Validate checks c; errors name keys under prefix ("upstream.parents").
func (c ParentsConfig) Validate(prefix string) error {
	key := func(k string) string { return configs.Key(prefix, k) }
	var errs []error
	names := map[string]bool{}
	inRegion := 0
	for i, h := range c.Hubs {
		hk := configs.Index(key("hubs"), i)
		if h.Name == "" {
			errs = append(errs, configs.Errorf(configs.Key(hk, "name"), "required"))
		} else if names[h.Name] {
			errs = append(errs, configs.Errorf(configs.Key(hk, "name"), "duplicate hub name %q", h.Name))
		}
		names[h.Name] = true
		if err := checkBaseURL(h.URL, true); err != nil {
			errs = append(errs, configs.Errorf(configs.Key(hk, "url"), "%v", err))
		}
		if h.HealthURL != "" {
			if err := checkBaseURL(h.HealthURL, false); err != nil {
				errs = append(errs, configs.Errorf(configs.Key(hk, "health_url"), "%v", err))
			}
		}
		if h.Weight < 0 || h.Weight > maxWeight {
			errs = append(errs, configs.Errorf(configs.Key(hk, "weight"), "must be between 1 and %d (0 means 1), got %d", maxWeight, h.Weight))
		}
		if c.usesHub(h) {
			inRegion++
		}
	}
	if inRegion > maxUpstreams {
		errs = append(errs, configs.Errorf(key("hubs"), "at most %d hubs per region, got %d", maxUpstreams, inRegion))
	}
	if inRegion == 0 && !c.OriginFallback {
		where := "no hubs"
		if c.Region != "" {
			where = fmt.Sprintf("no hub in region %q", c.Region)
		}
		errs = append(errs, configs.Errorf(key("origin_fallback"), "is false but there are %s: requests would have nowhere to go", where))
	}
	if c.Origin != "" {
		if err := checkBaseURL(c.Origin, true); err != nil {
			errs = append(errs, configs.Errorf(key("origin"), "%v", err))
		}
	}
	if c.VirtualNodes < 1 || c.VirtualNodes > maxVNodes {
		errs = append(errs, configs.Errorf(key("virtual_nodes"), "must be between 1 and %d, got %d", maxVNodes, c.VirtualNodes))
	} else {
		weights := 0
		for _, h := range c.Hubs {
			if c.usesHub(h) && h.Weight <= maxWeight {
				weights += max(h.Weight, 1)
			}
		}
		errs = append(errs, checkPoints(key("virtual_nodes"), c.VirtualNodes, weights)...)
	}
	errs = append(errs, checkConnect(prefix, c.ConnectTimeout)...)
	if err := c.Health.Validate(key("health")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkPoints keeps a ring within ring.MaxPoints.
func checkPoints(key string, vnodes, weights int) []error {
	if vnodes*weights > ring.MaxPoints {
		return []error{configs.Errorf(key, "%d points per unit of weight x total weight %d is over the ring's %d points; lower one of them", vnodes, weights, ring.MaxPoints)}
	}
	return nil
}

// usesHub reports whether a node of c.Region sends requests to h.
func (c ParentsConfig) usesHub(h Hub) bool {
	return c.Region == "" || h.Region == "" || h.Region == c.Region
}

// Backend is one server of a plain pool.
type Backend struct {
	// Name identifies the backend in metrics, logs and the hash ring.
	// Default: the host:port of URL. Unique within the pool.
	Name string `yaml:"name"`
	// URL is the backend, "http://host:port"; required.
	URL string `yaml:"url"`
	// HealthURL is the base the health probe uses. Default: URL.
	HealthURL string `yaml:"health_url"`
	// Weight is the backend's capacity share for weighted_round_robin,
	// least_conn, least_time and the hash policies. Default 1.
	Weight int `yaml:"weight"`
}

// PoolConfig is a plain pool: several servers behind one name, chosen by a
// load-balancing policy.
type PoolConfig struct {
	// Policy is one of round_robin, weighted_round_robin, least_conn,
	// least_time, ip_hash, url_hash. Default round_robin.
	Policy string `yaml:"policy"`
	// Backends of the pool; at least one.
	Backends []Backend `yaml:"backends"`
	// MaxAttempts bounds the backends one request tries (GET and HEAD
	// without a body move on after a failure; others get one try).
	// Default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// VirtualNodes is the ring points per unit of weight for ip_hash and
	// url_hash. Default 128.
	VirtualNodes int `yaml:"virtual_nodes"`
	// LeastTimeDecay is how fast least_time forgets an idle backend's
	// average response time (by e every decay). Default 10s.
	LeastTimeDecay configs.Duration `yaml:"least_time_decay"`
	// ConnectTimeout bounds connecting to a backend. Default 2s.
	ConnectTimeout configs.Duration `yaml:"connect_timeout"`
	// ResponseTimeout bounds the wait for response headers; 0 means no
	// limit. Default 60s.
	ResponseTimeout configs.Duration `yaml:"response_timeout"`
	// Health checks the backends.
	Health health.Config `yaml:"health"`
}

// DefaultPoolConfig returns the defaults stated on each field.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{
		Policy:          balance.RoundRobinName,
		MaxAttempts:     3,
		VirtualNodes:    ring.DefaultVirtualNodes,
		LeastTimeDecay:  configs.Duration(balance.DefaultDecay),
		ConnectTimeout:  configs.Duration(2 * time.Second),
		ResponseTimeout: configs.Duration(60 * time.Second),
		Health:          health.DefaultConfig(),
	}
}

// Validate checks c; errors name keys under prefix ("pools.origin").
func (c PoolConfig) Validate(prefix string) error {
	key := func(k string) string { return configs.Key(prefix, k) }
	var errs []error
	if !balance.Valid(c.Policy) {
		errs = append(errs, configs.Errorf(key("policy"), "unknown policy %q (want one of %s)", c.Policy, strings.Join(balance.Names, ", ")))
	}
	switch {
	case len(c.Backends) == 0:
		errs = append(errs, configs.Errorf(key("backends"), "at least one backend is required"))
	case len(c.Backends) > maxUpstreams:
		errs = append(errs, configs.Errorf(key("backends"), "at most %d backends, got %d", maxUpstreams, len(c.Backends)))
	}
	names := map[string]bool{}
	for i, b := range c.Backends {
		bk := configs.Index(key("backends"), i)
		if err := checkBaseURL(b.URL, true); err != nil {
			errs = append(errs, configs.Errorf(configs.Key(bk, "url"), "%v", err))
		}
		if name := b.name(); name != "" {
			if names[name] {
				errs = append(errs, configs.Errorf(configs.Key(bk, "name"), "duplicate backend name %q", name))
			}
			names[name] = true
		}
		if b.HealthURL != "" {
			if err := checkBaseURL(b.HealthURL, false); err != nil {
				errs = append(errs, configs.Errorf(configs.Key(bk, "health_url"), "%v", err))
			}
		}
		if b.Weight < 0 || b.Weight > maxWeight {
			errs = append(errs, configs.Errorf(configs.Key(bk, "weight"), "must be between 1 and %d (0 means 1), got %d", maxWeight, b.Weight))
		}
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > maxAttempts {
		errs = append(errs, configs.Errorf(key("max_attempts"), "must be between 1 and %d, got %d", maxAttempts, c.MaxAttempts))
	}
	if c.VirtualNodes < 1 || c.VirtualNodes > maxVNodes {
		errs = append(errs, configs.Errorf(key("virtual_nodes"), "must be between 1 and %d, got %d", maxVNodes, c.VirtualNodes))
	} else if c.Policy == balance.IPHashName || c.Policy == balance.URLHashName {
		weights := 0
		for _, b := range c.Backends {
			if b.Weight <= maxWeight {
				weights += max(b.Weight, 1)
			}
		}
		errs = append(errs, checkPoints(key("virtual_nodes"), c.VirtualNodes, weights)...)
	}
	if c.LeastTimeDecay.D() < 100*time.Millisecond {
		errs = append(errs, configs.Errorf(key("least_time_decay"), "must be at least 100ms, got %v", c.LeastTimeDecay))
	}
	errs = append(errs, checkConnect(prefix, c.ConnectTimeout)...)
	if err := c.Health.Validate(key("health")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// name is the backend's name, defaulting to its URL's host:port.
func (b Backend) name() string {
	if b.Name != "" {
		return b.Name
	}
	if u, err := url.Parse(b.URL); err == nil {
		return u.Host
	}
	return ""
}

// checkConnect requires a positive connect timeout (a response timeout of 0
// means no limit, and the loader already refuses negative durations).
func checkConnect(prefix string, connect configs.Duration) []error {
	if connect.D() <= 0 {
		return []error{configs.Errorf(configs.Key(prefix, "connect_timeout"), "must be positive, got %v", connect)}
	}
	return nil
}

// checkBaseURL accepts "http(s)://host[:port]" with at most a "/" path: the
// request's own path and query are kept when it is rewritten to this base.
// A health URL may carry a path (the probe appends health.path to it).
func checkBaseURL(s string, bare bool) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("bad URL %q: %v", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want an http:// or https:// URL, got %q", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("URL %q has no host", s)
	case u.User != nil:
		return fmt.Errorf("URL %q must not carry credentials", s)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("URL %q must not have a query or fragment", s)
	case bare && u.Path != "" && u.Path != "/":
		return fmt.Errorf("URL %q must not have a path (the request's path is kept)", s)
	}
	return nil
}
