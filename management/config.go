package management

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/management/alerts"
)

// Config is management's configuration (verge manage -config FILE).
type Config struct {
	Listen ListenConfig `yaml:"listen"`
	// Database is the SQLite file for usage, cursors and purge records.
	// Default "verge-manage.db" (relative to the working directory).
	Database string `yaml:"database"`
	// PurgeLogDir holds the cluster's purge log (distribution/purgelog):
	// management numbers every purge there, durably, and serves it under
	// /purgelog/ on the API listener for nodes to catch up from (their
	// purge_log.peers). Default "verge-manage-purgelog".
	PurgeLogDir string `yaml:"purge_log_dir"`
	// OperatorToken(File) authenticates the operator API and the
	// dashboard's calls. One of the two is required; prefer the file.
	OperatorToken     string `yaml:"operator_token"`
	OperatorTokenFile string `yaml:"operator_token_file"`
	// ClusterToken(File) authenticates node reports and management's calls
	// to the nodes' admin APIs (purge, preload). One is required.
	ClusterToken     string `yaml:"cluster_token"`
	ClusterTokenFile string `yaml:"cluster_token_file"`
	// NodeTimeout: a node silent for longer is shown down. Default 15s.
	NodeTimeout configs.Duration `yaml:"node_timeout"`
	// ForgetAfter: a node silent for longer leaves the fleet (nodes listed
	// under nodes stay). Default 24h.
	ForgetAfter configs.Duration `yaml:"forget_after"`

	Usage   UsageConfig  `yaml:"usage"`
	Purge   FanoutConfig `yaml:"purge"`
	Preload FanoutConfig `yaml:"preload"`
	Nodes   []NodeConfig `yaml:"nodes"`
	Alerts  AlertsConfig `yaml:"alerts"`
}

// ListenConfig holds management's addresses. Neither is ever a public
// edge listener.
type ListenConfig struct {
	// API serves the operator API, the dashboard and the node intake.
	// Default "127.0.0.1:9300".
	API string `yaml:"api"`
	// Admin serves /healthz and /metrics. Default "127.0.0.1:9301".
	Admin string `yaml:"admin"`
}

// UsageConfig tunes the usage store.
type UsageConfig struct {
	// RollupAfter: minute rows older than this are summed into hourly rows.
	// Default 48h.
	RollupAfter configs.Duration `yaml:"rollup_after"`
	// RollupEvery is how often the rollup runs. Default 10m.
	RollupEvery configs.Duration `yaml:"rollup_every"`
}

// FanoutConfig tunes purge or preload delivery to the nodes.
type FanoutConfig struct {
	// Timeout: a node that has not acknowledged by then is marked failed.
	// Default 30s for purge, 5m for preload.
	Timeout configs.Duration `yaml:"timeout"`
	// Roles are the node roles that receive it. Default [hub, edge] for
	// purge (hubs first), [edge] for preload (edges fill their hubs).
	Roles []string `yaml:"roles"`
}

// NodeConfig lists a node before it reports, so purges reach it and a
// node that never reports raises the node_silent alert.
type NodeConfig struct {
	Name     string `yaml:"name"`      // required
	Role     string `yaml:"role"`      // edge, hub, scrubber or dns; required
	Region   string `yaml:"region"`    // default "default"
	AdminURL string `yaml:"admin_url"` // http://host:port of its admin listener
}

// SetDefaults is called by the config loader for each listed node.
func (n *NodeConfig) SetDefaults() { n.Region = "default" }

// AlertsConfig holds the alert rules and their webhook.
type AlertsConfig struct {
	// EvaluateEvery is how often the rules run. Default 10s.
	EvaluateEvery configs.Duration `yaml:"evaluate_every"`
	Webhook       WebhookConfig    `yaml:"webhook"`
	Rules         []alerts.Rule    `yaml:"rules"`
}

// WebhookConfig is where alert transitions are posted.
type WebhookConfig struct {
	// URL receives a JSON POST per firing or resolution. Default "": alerts
	// only show in the API, the dashboard and /metrics.
	URL string `yaml:"url"`
	// TokenFile holds a bearer token sent to URL. Default "": none.
	TokenFile string `yaml:"token_file"`
	// Timeout bounds one attempt. Default 5s.
	Timeout configs.Duration `yaml:"timeout"`
	// MaxAttempts bounds the tries per notification. Default 8.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the first wait between tries, doubling up to MaxBackoff.
	// Defaults 1s and 1m.
	Backoff    configs.Duration `yaml:"backoff"`
	MaxBackoff configs.Duration `yaml:"max_backoff"`
}

// DefaultConfig returns the defaults (no tokens: those are required).
func DefaultConfig() Config {
	return Config{
		Listen:      ListenConfig{API: "127.0.0.1:9300", Admin: "127.0.0.1:9301"},
		Database:    "verge-manage.db",
		PurgeLogDir: "verge-manage-purgelog",
		NodeTimeout: configs.Duration(15 * time.Second),
		ForgetAfter: configs.Duration(24 * time.Hour),
		Usage:       UsageConfig{RollupAfter: configs.Duration(48 * time.Hour), RollupEvery: configs.Duration(10 * time.Minute)},
		Purge:       FanoutConfig{Timeout: configs.Duration(30 * time.Second), Roles: []string{RoleHub, RoleEdge}},
		Preload:     FanoutConfig{Timeout: configs.Duration(5 * time.Minute), Roles: []string{RoleEdge}},
		Alerts: AlertsConfig{
			EvaluateEvery: configs.Duration(10 * time.Second),
			Webhook: WebhookConfig{Timeout: configs.Duration(5 * time.Second), MaxAttempts: 8,
				Backoff: configs.Duration(time.Second), MaxBackoff: configs.Duration(time.Minute)},
		},
	}
}

var roles = []string{RoleEdge, RoleHub, RoleScrubber, RoleDNS}

// Validate checks the config; errors name the key.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, configs.Errorf(key, format, args...)) }
	for _, l := range [][2]string{{"listen.api", c.Listen.API}, {"listen.admin", c.Listen.Admin}} {
		if _, _, err := net.SplitHostPort(l[1]); err != nil || l[1] == "" {
			add(l[0], "want host:port, got %q", l[1])
		}
	}
	if c.Listen.API == c.Listen.Admin && !strings.HasSuffix(c.Listen.API, ":0") {
		add("listen.admin", "must differ from listen.api")
	}
	if c.Database == "" {
		add("database", "required")
	}
	if c.PurgeLogDir == "" {
		add("purge_log_dir", "required")
	}
	checkToken := func(key, inline, file string) {
		switch {
		case inline != "" && file != "":
			add(key+"_file", "set %s or %s_file, not both", key, key)
		case inline == "" && file == "":
			add(key+"_file", "required (a file holding the token)")
		}
	}
	checkToken("operator_token", c.OperatorToken, c.OperatorTokenFile)
	checkToken("cluster_token", c.ClusterToken, c.ClusterTokenFile)
	if c.NodeTimeout.D() <= 0 {
		add("node_timeout", "must be positive")
	}
	if c.ForgetAfter.D() < c.NodeTimeout.D() {
		add("forget_after", "must be at least node_timeout (%s)", c.NodeTimeout)
	}
	if c.Usage.RollupAfter.D() < time.Hour {
		add("usage.rollup_after", "must be at least 1h (minutes are rolled up by whole hours)")
	}
	if c.Usage.RollupEvery.D() <= 0 {
		add("usage.rollup_every", "must be positive")
	}
	for _, nf := range []struct {
		name string
		f    FanoutConfig
	}{{"purge", c.Purge}, {"preload", c.Preload}} {
		name, f := nf.name, nf.f
		if f.Timeout.D() <= 0 {
			add(name+".timeout", "must be positive")
		}
		if len(f.Roles) == 0 {
			add(name+".roles", "at least one role (edge, hub)")
		}
		for i, r := range f.Roles {
			if r != RoleEdge && r != RoleHub {
				add(configs.Index(name+".roles", i), "unknown role %q (want edge or hub: the nodes with a cache)", r)
			}
		}
	}
	names := map[string]bool{}
	for i, n := range c.Nodes {
		k := configs.Index("nodes", i)
		if err := checkName("name", n.Name); err != nil {
			add(configs.Key(k, "name"), "%v", err)
		} else if names[n.Name] {
			add(configs.Key(k, "name"), "duplicate node %q", n.Name)
		}
		names[n.Name] = true
		if !slices.Contains(roles, n.Role) {
			add(configs.Key(k, "role"), "want edge, hub, scrubber or dns, got %q", n.Role)
		}
		if n.AdminURL != "" {
			if u, err := url.Parse(n.AdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(configs.Key(k, "admin_url"), "want an absolute http(s) URL, got %q", n.AdminURL)
			}
		}
	}
	a := c.Alerts
	if a.EvaluateEvery.D() <= 0 {
		add("alerts.evaluate_every", "must be positive")
	}
	if a.Webhook.URL != "" {
		if u, err := url.Parse(a.Webhook.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("alerts.webhook.url", "want an absolute http(s) URL, got %q", a.Webhook.URL)
		}
	}
	if a.Webhook.Timeout.D() <= 0 {
		add("alerts.webhook.timeout", "must be positive")
	}
	if a.Webhook.MaxAttempts < 1 || a.Webhook.MaxAttempts > 100 {
		add("alerts.webhook.max_attempts", "must be 1..100, got %d", a.Webhook.MaxAttempts)
	}
	if a.Webhook.Backoff.D() <= 0 {
		add("alerts.webhook.backoff", "must be positive")
	}
	if a.Webhook.MaxBackoff.D() < a.Webhook.Backoff.D() {
		add("alerts.webhook.max_backoff", "must be at least backoff (%s)", a.Webhook.Backoff)
	}
	errs = append(errs, alerts.Validate("alerts.rules", a.Rules))
	return errors.Join(errs...)
}

// ReadToken returns an inline token, or the trimmed contents of file.
func ReadToken(inline, file string) (string, error) {
	if file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("management: token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("management: token file %s is empty", file)
	}
	return t, nil
}
