package scrubber

import (
	"errors"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/scrubber/iplist"
)

// Limiting behaviours (Policy.Mode).
const (
	// ModeTokenBucket gives a source exactly its rate plus its burst, as
	// nginx's limit_req (burst, nodelay) does; excess requests get 429.
	ModeTokenBucket = "token_bucket"
	// ModePenaltyBox refuses everything from a source that exceeded its
	// rate, for Policy.Penalty after its last excess request, as HAProxy
	// stick tables and Fastly's penalty box do.
	ModePenaltyBox = "penalty_box"
)

// Challenge kinds (Challenge.Kind).
const (
	ChallengeJS       = "js"       // a tiny page whose script sets the cookie and reloads
	ChallengeRedirect = "redirect" // a 307 to the same URL with Set-Cookie
)

// Config is the scrubber's stages: what an edge embeds (under a "scrubber"
// key) and what the standalone scrubber runs in front of its upstream.
type Config struct {
	Limits      Limits      `yaml:"limits"`
	Attack      Attack      `yaml:"attack"`
	Lists       Lists       `yaml:"lists"`
	Connections Connections `yaml:"connections"`
}

// Limits are the rate limits in normal operation and the limiter tables.
type Limits struct {
	Policy `yaml:",inline"`
	// MaxSources caps each limiter table (per IP, per prefix); the least
	// recently seen source is forgotten when a table is full. A table takes
	// about 50 bytes per source (its index is allocated up front, its
	// entries as sources arrive). Default 100000.
	MaxSources int `yaml:"max_sources"`
	// IPv4Prefix and IPv6Prefix are the prefix lengths the per-prefix bucket
	// groups sources by. Defaults 24 and 64.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Policy is one set of limits: normal operation, or under attack.
type Policy struct {
	// Mode is token_bucket or penalty_box. Default token_bucket (normal),
	// penalty_box (under attack).
	Mode string `yaml:"mode"`
	// PerIP is each source address's bucket. Default 100 r/s, burst 50
	// (under attack 50 r/s, burst 20).
	PerIP Bucket `yaml:"per_ip"`
	// PerPrefix is each /24 (IPv4) or /64 (IPv6) source prefix's bucket.
	// Default 1000 r/s, burst 500 (under attack 500 r/s, burst 200).
	PerPrefix Bucket `yaml:"per_prefix"`
	// Global is one bucket for everything that passed the others: the
	// node's ceiling, answered with 503. Default off.
	Global Bucket `yaml:"global"`
	// Penalty is how long penalty_box mode refuses a source after its last
	// excess request. Default 30s (under attack 60s).
	Penalty configs.Duration `yaml:"penalty"`
}

// Bucket is a token bucket: Rate tokens per second, at most Burst saved up.
// Rate 0 turns the bucket off.
type Bucket struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

func (b Bucket) on() bool { return b.Rate > 0 }

// Attack is attack detection and what changes under attack.
type Attack struct {
	// Enabled turns detection on. Default true.
	Enabled bool `yaml:"enabled"`
	// Window is the measuring window. Default 10s.
	Window configs.Duration `yaml:"window"`
	// RequestRate enters under-attack mode when a window's requests per
	// second reach it. 0 turns this trigger off. Default 20000.
	RequestRate float64 `yaml:"request_rate"`
	// LimitedShare enters under-attack mode when this share (0..1) of a
	// window's requests were refused by the limits. 0 turns it off.
	// Default 0.5.
	LimitedShare float64 `yaml:"limited_share"`
	// MinRequests is how many requests a window needs before LimitedShare
	// counts. Default 1000.
	MinRequests int `yaml:"min_requests"`
	// Cooldown is how long every window must stay below both thresholds
	// before the node leaves under-attack mode. Default 60s.
	Cooldown configs.Duration `yaml:"cooldown"`
	// Limits replace Limits' policy under attack; each bucket must be at
	// least as strict as its normal one.
	Limits Policy `yaml:"limits"`
	// Challenge is the optional cookie challenge under attack.
	Challenge Challenge `yaml:"challenge"`
	// Report sends each transition to management.
	Report Report `yaml:"report"`
}

// Challenge is a cookie challenge that browsers pass and cookie-less
// scripted floods do not (see the README for what it does not stop).
type Challenge struct {
	// Enabled challenges requests without a valid cookie under attack.
	// Default false.
	Enabled bool `yaml:"enabled"`
	// Kind is js (a page whose script sets the cookie) or redirect (a 307
	// with Set-Cookie). Default js.
	Kind string `yaml:"kind"`
	// SecretFile holds the HMAC key (at least 32 bytes). Scrubbers that
	// share a site should share it. Default "": a random key per process.
	SecretFile string `yaml:"secret_file"`
	// TTL is how long a cookie stays valid. Default 1h.
	TTL configs.Duration `yaml:"ttl"`
	// Cookie is the cookie's name. Default verge_challenge.
	Cookie string `yaml:"cookie"`
}

// Report is where attack transitions are sent.
type Report struct {
	// URL receives a JSON POST per transition. Default "": transitions are
	// only logged and exported as metrics.
	URL string `yaml:"url"`
	// TokenFile holds the bearer token for URL (required with URL).
	TokenFile string `yaml:"token_file"`
	// Timeout bounds one attempt. Default 5s.
	Timeout configs.Duration `yaml:"timeout"`
	// Node names this node in reports. Default: the host name.
	Node string `yaml:"node"`
}

// Lists are the allow and deny lists. Allowed sources skip the limits and
// the challenge; denied ones get 403 and their connections are closed. The
// longest matching prefix wins.
type Lists struct {
	// Allow and Deny are prefixes ("10.0.0.0/8") or addresses. Default none.
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
	// File holds more rules ("allow PREFIX" / "deny PREFIX" per line); it is
	// re-read on SIGHUP, by Reload, and when it changes. Default "".
	File string `yaml:"file"`
	// ReloadInterval is how often File is checked for changes; 0 checks
	// only on SIGHUP and Reload. Default 10s.
	ReloadInterval configs.Duration `yaml:"reload_interval"`
}

// Connections are connection limits and slow-client protection.
type Connections struct {
	// PerClient caps concurrent connections per source address; extra
	// connections are closed at accept. 0 = no cap. Default 100.
	PerClient int `yaml:"per_client"`
	// ClosePenalized closes connections of sources in the penalty box (after
	// the 429, and at accept). Default true.
	ClosePenalized bool `yaml:"close_penalized"`
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout configs.Duration `yaml:"read_header_timeout"`
	// BodyReadTimeout bounds the wait for more of a request body (between
	// reads; the whole request in the net/http server). Default 30s.
	BodyReadTimeout configs.Duration `yaml:"body_read_timeout"`
	// WriteTimeout bounds the wait for the client to take more of a
	// response (between writes; the whole response in the net/http
	// server). Default 60s.
	WriteTimeout configs.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout configs.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps a request header; larger ones get 431 and the
	// connection is closed. Default 32KiB.
	MaxHeaderBytes configs.Bytes `yaml:"max_header_bytes"`
}

// DefaultConfig returns the defaults stated on each field.
func DefaultConfig() Config {
	return Config{
		Limits: Limits{
			Policy: Policy{
				Mode:      ModeTokenBucket,
				PerIP:     Bucket{Rate: 100, Burst: 50},
				PerPrefix: Bucket{Rate: 1000, Burst: 500},
				Penalty:   configs.Duration(30 * time.Second),
			},
			MaxSources: 100000,
			IPv4Prefix: 24,
			IPv6Prefix: 64,
		},
		Attack: Attack{
			Enabled:      true,
			Window:       configs.Duration(10 * time.Second),
			RequestRate:  20000,
			LimitedShare: 0.5,
			MinRequests:  1000,
			Cooldown:     configs.Duration(60 * time.Second),
			Limits: Policy{
				Mode:      ModePenaltyBox,
				PerIP:     Bucket{Rate: 50, Burst: 20},
				PerPrefix: Bucket{Rate: 500, Burst: 200},
				Penalty:   configs.Duration(60 * time.Second),
			},
			Challenge: Challenge{
				Kind:   ChallengeJS,
				TTL:    configs.Duration(time.Hour),
				Cookie: "verge_challenge",
			},
			Report: Report{Timeout: configs.Duration(5 * time.Second)},
		},
		Lists: Lists{ReloadInterval: configs.Duration(10 * time.Second)},
		Connections: Connections{
			PerClient:         100,
			ClosePenalized:    true,
			ReadHeaderTimeout: configs.Duration(10 * time.Second),
			BodyReadTimeout:   configs.Duration(30 * time.Second),
			WriteTimeout:      configs.Duration(60 * time.Second),
			IdleTimeout:       configs.Duration(60 * time.Second),
			MaxHeaderBytes:    32 << 10,
		},
	}
}

// Validate checks every value; keys are reported from the top of the file.
func (c *Config) Validate() error { return c.ValidateAt("") }

// ValidateAt checks every value, naming keys under prefix (an edge that
// embeds the scrubber under "scrubber" passes "scrubber").
func (c *Config) ValidateAt(prefix string) error {
	var errs []error
	k := func(path string) string { return configs.Key(prefix, path) }
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	l := &c.Limits
	add(l.Policy.validate(k("limits")))
	if l.MaxSources < 1 || l.MaxSources > 10_000_000 {
		add(configs.Errorf(k("limits.max_sources"), "want 1..10000000, got %d", l.MaxSources))
	}
	if l.IPv4Prefix < 1 || l.IPv4Prefix > 32 {
		add(configs.Errorf(k("limits.ipv4_prefix"), "want 1..32, got %d", l.IPv4Prefix))
	}
	if l.IPv6Prefix < 1 || l.IPv6Prefix > 128 {
		add(configs.Errorf(k("limits.ipv6_prefix"), "want 1..128, got %d", l.IPv6Prefix))
	}

	a := &c.Attack
	add(a.Limits.validate(k("attack.limits")))
	if a.Enabled {
		if a.Window.D() < 100*time.Millisecond {
			add(configs.Errorf(k("attack.window"), "want at least 100ms, got %s", a.Window.D()))
		}
		if a.Cooldown.D() < 0 {
			add(configs.Errorf(k("attack.cooldown"), "must not be negative"))
		}
		if a.RequestRate < 0 || math.IsNaN(a.RequestRate) || math.IsInf(a.RequestRate, 0) {
			add(configs.Errorf(k("attack.request_rate"), "want a number >= 0, got %v", a.RequestRate))
		}
		if !(a.LimitedShare >= 0 && a.LimitedShare <= 1) {
			add(configs.Errorf(k("attack.limited_share"), "want 0..1, got %v", a.LimitedShare))
		}
		if a.RequestRate == 0 && a.LimitedShare == 0 {
			add(configs.Errorf(k("attack"), "enabled with both request_rate and limited_share at 0: nothing can trigger it"))
		}
		if a.MinRequests < 0 {
			add(configs.Errorf(k("attack.min_requests"), "must not be negative"))
		}
		// Under attack the limits may only get stricter.
		stricter := func(name string, normal, attack Bucket) {
			key := k("attack.limits." + name)
			switch {
			case normal.on() && !attack.on():
				add(configs.Errorf(key+".rate", "0 turns the bucket off under attack, but limits.%s is on; under-attack limits must be stricter", name))
			case normal.on() && attack.Rate > normal.Rate:
				add(configs.Errorf(key+".rate", "%v is above limits.%s.rate %v; under-attack limits must be stricter", attack.Rate, name, normal.Rate))
			case normal.on() && attack.Burst > normal.Burst:
				add(configs.Errorf(key+".burst", "%d is above limits.%s.burst %d; under-attack limits must be stricter", attack.Burst, name, normal.Burst))
			}
		}
		stricter("per_ip", l.PerIP, a.Limits.PerIP)
		stricter("per_prefix", l.PerPrefix, a.Limits.PerPrefix)
		stricter("global", l.Global, a.Limits.Global)
	}
	ch := &a.Challenge
	if ch.Enabled {
		if ch.Kind != ChallengeJS && ch.Kind != ChallengeRedirect {
			add(configs.Errorf(k("attack.challenge.kind"), "want %s or %s, got %q", ChallengeJS, ChallengeRedirect, ch.Kind))
		}
		if ch.TTL.D() < time.Minute || ch.TTL.D() > 30*24*time.Hour {
			add(configs.Errorf(k("attack.challenge.ttl"), "want 1m..720h, got %s", ch.TTL.D()))
		}
		if !validCookieName(ch.Cookie) {
			add(configs.Errorf(k("attack.challenge.cookie"), "%q is not a valid cookie name", ch.Cookie))
		}
		if !a.Enabled {
			add(configs.Errorf(k("attack.challenge.enabled"), "the challenge only runs under attack, but attack.enabled is false"))
		}
	}
	r := &a.Report
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(configs.Errorf(k("attack.report.url"), "want an http:// or https:// URL, got %q", r.URL))
		}
		if r.TokenFile == "" {
			add(configs.Errorf(k("attack.report.token_file"), "required with attack.report.url (management's intake needs a token)"))
		}
	}
	if r.Timeout.D() <= 0 {
		add(configs.Errorf(k("attack.report.timeout"), "must be positive"))
	}

	for i, s := range c.Lists.Allow {
		if _, err := iplist.ParsePrefix(s); err != nil {
			add(configs.Errorf(configs.Index(k("lists.allow"), i), "%v", err))
		}
	}
	for i, s := range c.Lists.Deny {
		if _, err := iplist.ParsePrefix(s); err != nil {
			add(configs.Errorf(configs.Index(k("lists.deny"), i), "%v", err))
		}
	}
	if _, err := c.inlineRules(); err != nil && len(errs) == 0 {
		add(configs.Errorf(k("lists"), "%v", err))
	}
	if c.Lists.ReloadInterval.D() < 0 {
		add(configs.Errorf(k("lists.reload_interval"), "must not be negative"))
	}

	cn := &c.Connections
	if cn.PerClient < 0 {
		add(configs.Errorf(k("connections.per_client"), "must not be negative"))
	}
	for _, d := range []struct {
		name string
		v    configs.Duration
	}{
		{"read_header_timeout", cn.ReadHeaderTimeout}, {"body_read_timeout", cn.BodyReadTimeout},
		{"write_timeout", cn.WriteTimeout}, {"idle_timeout", cn.IdleTimeout},
	} {
		if d.v.D() <= 0 {
			add(configs.Errorf(k("connections."+d.name), "must be positive (a missing timeout lets slow clients hold connections forever)"))
		}
	}
	if cn.MaxHeaderBytes < 1024 || cn.MaxHeaderBytes > 1<<20 {
		add(configs.Errorf(k("connections.max_header_bytes"), "want 1KiB..1MiB, got %d bytes", int64(cn.MaxHeaderBytes)))
	}
	return errors.Join(errs...)
}

func (p *Policy) validate(key string) error {
	var errs []error
	if p.Mode != ModeTokenBucket && p.Mode != ModePenaltyBox {
		errs = append(errs, configs.Errorf(key+".mode", "want %s or %s, got %q", ModeTokenBucket, ModePenaltyBox, p.Mode))
	}
	for _, b := range []struct {
		name string
		b    Bucket
	}{{"per_ip", p.PerIP}, {"per_prefix", p.PerPrefix}, {"global", p.Global}} {
		bk := key + "." + b.name
		if math.IsNaN(b.b.Rate) || b.b.Rate < 0 || b.b.Rate > 1e7 || (b.b.Rate > 0 && b.b.Rate < 0.001) {
			errs = append(errs, configs.Errorf(bk+".rate", "want 0 (off) or 0.001..10000000 per second, got %v", b.b.Rate))
		}
		if b.b.on() && (b.b.Burst < 1 || b.b.Burst > 1_000_000) {
			errs = append(errs, configs.Errorf(bk+".burst", "want 1..1000000 with a rate set, got %d", b.b.Burst))
		}
		if !b.b.on() && b.b.Burst != 0 {
			errs = append(errs, configs.Errorf(bk+".burst", "set without a rate (rate 0 turns the bucket off)"))
		}
	}
	if p.Mode == ModePenaltyBox && (p.Penalty.D() < time.Second || p.Penalty.D() > 24*time.Hour) {
		errs = append(errs, configs.Errorf(key+".penalty", "want 1s..24h in penalty_box mode, got %s", p.Penalty.D()))
	}
	if p.Mode == ModePenaltyBox && !p.PerIP.on() && !p.PerPrefix.on() {
		errs = append(errs, configs.Errorf(key+".mode", "penalty_box needs per_ip or per_prefix on"))
	}
	return errors.Join(errs...)
}

// inlineRules are the config's allow and deny entries as list rules.
func (c *Config) inlineRules() ([]iplist.Rule, error) {
	var rules []iplist.Rule
	for _, set := range []struct {
		items []string
		act   iplist.Action
	}{{c.Lists.Allow, iplist.Allow}, {c.Lists.Deny, iplist.Deny}} {
		for _, s := range set.items {
			p, err := iplist.ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			rules = append(rules, iplist.Rule{Prefix: p, Action: set.act})
		}
	}
	if _, err := iplist.New(rules); err != nil {
		return nil, err
	}
	return rules, nil
}

func validCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// ProxyConfig is the standalone scrubber's server ("verge scrubber -config
// FILE"): where it listens and which front end serves the stages. The
// upstream pool is configured and built by the command (distribution's
// Pool), which hands the scrubber an http.RoundTripper.
type ProxyConfig struct {
	// Listen is the public address. Default 127.0.0.1:8090.
	Listen string `yaml:"listen"`
	// Admin serves /healthz and /metrics. Default 127.0.0.1:9190.
	Admin string `yaml:"admin"`
	// Server is fast (the scrubber's own HTTP/1.1 front end, which refuses
	// limited requests before parsing them) or stdlib (net/http, which
	// parses every request before the stages run). Default fast.
	Server string `yaml:"server"`
	// DrainTimeout is how long shutdown waits for in-flight requests.
	// Default 10s.
	DrainTimeout configs.Duration `yaml:"drain_timeout"`
	Config       `yaml:",inline"`
}

// Server kinds (ProxyConfig.Server).
const (
	ServerFast   = "fast"
	ServerStdlib = "stdlib"
)

// DefaultProxyConfig returns the defaults stated on each field.
func DefaultProxyConfig() ProxyConfig {
	return ProxyConfig{
		Listen:       "127.0.0.1:8090",
		Admin:        "127.0.0.1:9190",
		Server:       ServerFast,
		DrainTimeout: configs.Duration(10 * time.Second),
		Config:       DefaultConfig(),
	}
}

// Validate checks the standalone scrubber's server settings and stages.
func (p *ProxyConfig) Validate() error {
	var errs []error
	if p.Listen == "" {
		errs = append(errs, configs.Errorf("listen", "required"))
	}
	if p.Admin == "" {
		errs = append(errs, configs.Errorf("admin", "required"))
	}
	if p.Server != ServerFast && p.Server != ServerStdlib {
		errs = append(errs, configs.Errorf("server", "want %s or %s, got %q", ServerFast, ServerStdlib, p.Server))
	}
	if p.DrainTimeout.D() < 0 {
		errs = append(errs, configs.Errorf("drain_timeout", "must not be negative"))
	}
	errs = append(errs, p.Config.Validate())
	return errors.Join(errs...)
}
