package distribution

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution/balance"
)

// roleConfig is how a role's config embeds the distribution sections.
type roleConfig struct {
	Parents ParentsConfig `yaml:"parents"`
	Pool    PoolConfig    `yaml:"pool"`
}

func defaultRole() roleConfig {
	pool := DefaultPoolConfig()
	pool.Backends = []Backend{{URL: "http://127.0.0.1:8080"}}
	return roleConfig{Parents: DefaultParentsConfig(), Pool: pool}
}

func (r *roleConfig) Validate() error {
	return errors.Join(r.Parents.Validate("parents"), r.Pool.Validate("pool"))
}

func TestDefaults(t *testing.T) {
	if err := DefaultParentsConfig().Validate("parents"); err != nil {
		t.Fatalf("default parents config: %v", err)
	}
	if err := DefaultPoolConfig().Validate("pool"); err == nil || !strings.Contains(err.Error(), "pool.backends: at least one backend") {
		t.Fatalf("a pool without backends: %v", err)
	}
	r := defaultRole()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewParents(DefaultParentsConfig(), Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestSampleConfig(t *testing.T) {
	cfg := defaultRole()
	if err := configs.Load("testdata/upstream.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Parents.Hubs) != 3 || cfg.Parents.Hubs[0].Weight != 2 || cfg.Parents.Region != "eu" ||
		cfg.Pool.Policy != balance.LeastTimeName || cfg.Pool.Health.Interval.D() != 5*time.Second ||
		cfg.Pool.Health.Path != "/healthz" {
		t.Fatalf("loaded %+v", cfg)
	}
	p, err := NewParents(cfg.Parents, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Order("k"); len(got) != 2 {
		t.Fatalf("region eu uses %v", got)
	}
	pool, err := NewPool(cfg.Pool, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.Health().Targets(); len(got) != 3 {
		t.Fatalf("pool targets %v", got)
	}
}

// TestConfigErrors checks each bad value is reported at its file, line and key.
func TestConfigErrors(t *testing.T) {
	sample, err := os.ReadFile("testdata/upstream.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"hub weight", "weight: 2 ", "weight: -2 ", "u.yaml:12: parents.hubs[0].weight: must be between 1 and 1000"},
		{"hub url", "url: http://127.0.0.22:8080", "url: ftp://127.0.0.22", "u.yaml:14: parents.hubs[1].url: want an http:// or https:// URL"},
		{"hub url path", "url: http://127.0.0.22:8080", "url: http://127.0.0.22:8080/x", "parents.hubs[1].url: URL \"http://127.0.0.22:8080/x\" must not have a path"},
		{"hub url query", "url: http://127.0.0.22:8080", "url: http://127.0.0.22:8080?a", "must not have a query"},
		{"hub url user", "url: http://127.0.0.22:8080", "url: http://u:p@127.0.0.22:8080", "must not carry credentials"},
		{"hub no host", "url: http://127.0.0.22:8080", "url: http://:8080", "has no host"},
		{"duplicate hub", "name: hub-eu-2", "name: hub-eu-1", "u.yaml:13: parents.hubs[1].name: duplicate hub name \"hub-eu-1\""},
		{"empty hub name", "name: hub-eu-2", "name: \"\"", "parents.hubs[1].name: required"},
		{"health url", "health_url: http://127.0.0.22:9080", "health_url: nope", "parents.hubs[1].health_url: want an http"},
		{"origin", `origin: ""`, "origin: 127.0.0.1", "parents.origin: want an http"},
		{"vnodes", "virtual_nodes: 128", "virtual_nodes: 0", "parents.virtual_nodes: must be between 1 and 4096"},
		{"unknown parents key", "virtual_nodes: 128", "virtual_nodes: 128\n  hub: x", "u.yaml:23: parents.hub: unknown key"},
		{"connect timeout", "connect_timeout: 2s", "connect_timeout: 0", "parents.connect_timeout: must be positive"},
		{"parents health", "fall: 3", "fall: 0", "u.yaml:30: parents.health.fall: must be between 1 and 1000"},
		{"policy", "policy: least_time", "policy: fastest", "pool.policy: unknown policy \"fastest\" (want one of round_robin, weighted_round_robin"},
		{"backend url", "url: http://127.0.0.33:8080", "url: http://127.0.0.33:8080/app", "pool.backends[2].url: URL"},
		{"backend duplicate", "url: http://127.0.0.33:8080", "name: origin-1\n      url: http://127.0.0.33:8080", "pool.backends[2].name: duplicate backend name \"origin-1\""},
		{"backend weight", "      weight: 1\n", "      weight: 1001\n", "pool.backends[0].weight: must be between"},
		{"max attempts", "max_attempts: 3", "max_attempts: 0", "pool.max_attempts: must be between 1 and 64"},
		{"decay", "least_time_decay: 10s", "least_time_decay: 1ms", "pool.least_time_decay: must be at least 100ms"},
		{"pool health", "interval: 5s", "interval: 500ms", "pool.health.timeout: must not exceed interval"},
		{"unknown key", "max_attempts: 3", "max_attempt: 3", "pool.max_attempt: unknown key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(sample), tc.old) {
				t.Fatalf("sample has no %q", tc.old)
			}
			data := strings.Replace(string(sample), tc.old, tc.new, 1)
			cfg := defaultRole()
			err := configs.LoadBytes("u.yaml", []byte(data), &cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidateRules(t *testing.T) {
	cases := []struct {
		name string
		cfg  func() ParentsConfig
		want string
	}{
		{"no hubs and no fallback", func() ParentsConfig {
			c := DefaultParentsConfig()
			c.OriginFallback = false
			return c
		}, "p.origin_fallback: is false but there are no hubs"},
		{"no hub in region and no fallback", func() ParentsConfig {
			c := DefaultParentsConfig()
			c.OriginFallback, c.Region = false, "ap"
			c.Hubs = []Hub{{Name: "h", URL: "http://127.0.0.1:1", Region: "eu"}}
			return c
		}, `no hub in region "ap"`},
		{"too many hubs", func() ParentsConfig {
			c := DefaultParentsConfig()
			for i := 0; i < 65; i++ {
				c.Hubs = append(c.Hubs, Hub{Name: "h" + string(rune('A'+i)), URL: "http://127.0.0.1:1"})
			}
			return c
		}, "p.hubs: at most 64 hubs per region"},
		{"ring too big", func() ParentsConfig {
			c := DefaultParentsConfig()
			c.VirtualNodes = 4096
			c.Hubs = []Hub{{Name: "a", URL: "http://127.0.0.1:1", Weight: 1000}, {Name: "b", URL: "http://127.0.0.1:2", Weight: 1000}}
			return c
		}, "p.virtual_nodes: 4096 points per unit of weight x total weight 2000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg().Validate("p")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if _, err := NewParents(tc.cfg(), Options{}); err == nil {
				t.Fatal("NewParents accepted an invalid config")
			}
		})
	}
	pool := DefaultPoolConfig()
	pool.Policy = balance.URLHashName
	pool.VirtualNodes = 4096
	pool.Backends = []Backend{{URL: "http://127.0.0.1:1", Weight: 1000}, {URL: "http://127.0.0.1:2", Weight: 1000}}
	if err := pool.Validate("q"); err == nil || !strings.Contains(err.Error(), "q.virtual_nodes") {
		t.Fatalf("huge hash ring: %v", err)
	}
	if _, err := NewPool(pool, Options{}); err == nil {
		t.Fatal("NewPool accepted an invalid config")
	}
}

// FuzzConfig: whatever the loader accepts, NewParents and NewPool build.
func FuzzConfig(f *testing.F) {
	sample, err := os.ReadFile("testdata/upstream.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add([]byte("parents: {hubs: [{name: a, url: 'http://127.0.0.1:1', weight: 3}], virtual_nodes: 7}\n"))
	f.Add([]byte("pool: {policy: ip_hash, backends: [{url: 'https://[::1]:1'}, {url: 'http://127.0.0.2'}]}\n"))
	f.Add([]byte("parents: {region: x, origin_fallback: false, hubs: [{name: a, url: 'http://a', region: y}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaultRole()
		if err := configs.LoadBytes("fuzz.yaml", data, &cfg); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if _, err := NewParents(cfg.Parents, Options{}); err != nil {
			t.Fatalf("valid parents config refused: %v", err)
		}
		if _, err := NewPool(cfg.Pool, Options{}); err != nil {
			t.Fatalf("valid pool config refused: %v", err)
		}
	})
}
