package purgelog

import (
	"errors"
	"net/url"
	"time"

	"github.com/vergecdn/verge/configs"
)

// Config is a node's purge log section (purge_log: in an edge or hub file).
type Config struct {
	// Dir holds the log (purge.log). Default "": no log; the engine's own
	// POST /purge is served and purge numbers are not kept.
	Dir string `yaml:"dir"`
	// Peers are admin base URLs ("http://host:port") to catch up from, in
	// order: management, or the node's parent hubs. Default none: the node
	// records what it applies but has nobody to catch up from.
	Peers []string `yaml:"peers"`
	// SyncInterval is the period of anti-entropy rounds after the start;
	// 0 means only at start and on gaps. Default 30s.
	SyncInterval configs.Duration `yaml:"sync_interval"`
	// Retry is the wait between failed catch-up attempts at start. Default 1s.
	Retry configs.Duration `yaml:"retry"`
	// StartWait bounds how long the node stays not ready at start when no
	// peer answers, after which it serves anyway (logging an error).
	// Default 0: not ready until a peer answers.
	StartWait configs.Duration `yaml:"start_wait"`
	// GapTimeout bounds the catch-up a purge with a gap waits for. Default 5s.
	GapTimeout configs.Duration `yaml:"gap_timeout"`
	// Fsync makes each record durable before the purge is acknowledged.
	// Default false: a record lost to a power cut is fetched again.
	Fsync bool `yaml:"fsync"`
}

// MaxPeers bounds Config.Peers.
const MaxPeers = 16

// DefaultConfig returns the defaults stated on each field.
func DefaultConfig() Config {
	return Config{
		SyncInterval: configs.Duration(30 * time.Second),
		Retry:        configs.Duration(time.Second),
		GapTimeout:   configs.Duration(5 * time.Second),
	}
}

// Enabled reports whether a log is configured.
func (c Config) Enabled() bool { return c.Dir != "" }

// Validate checks c; errors name keys under prefix ("purge_log").
func (c Config) Validate(prefix string) error {
	key := func(k string) string { return configs.Key(prefix, k) }
	var errs []error
	if len(c.Peers) > 0 && c.Dir == "" {
		errs = append(errs, configs.Errorf(key("dir"), "is required when peers are set: the log of applied purges lives there"))
	}
	if len(c.Peers) > MaxPeers {
		errs = append(errs, configs.Errorf(key("peers"), "at most %d peers, got %d", MaxPeers, len(c.Peers)))
	}
	seen := map[string]bool{}
	for i, p := range c.Peers {
		u, err := url.Parse(p)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, configs.Errorf(configs.Index(key("peers"), i), "want an http(s) base URL of an admin listener, got %q", p))
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			errs = append(errs, configs.Errorf(configs.Index(key("peers"), i), "want a base URL (scheme://host:port) without path, query or credentials, got %q", p))
		case seen[p]:
			errs = append(errs, configs.Errorf(configs.Index(key("peers"), i), "duplicate peer %q", p))
		}
		seen[p] = true
	}
	if c.Retry <= 0 {
		errs = append(errs, configs.Errorf(key("retry"), "must be positive"))
	}
	if c.GapTimeout <= 0 {
		errs = append(errs, configs.Errorf(key("gap_timeout"), "must be positive"))
	}
	return errors.Join(errs...)
}
