package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management"
)

// reportConfig is the report: section of a node's file: where the node
// reports its counters to management. Embed it in a subcommand's config
// struct as `Report reportConfig `yaml:"report"“, fill it with
// defaultReportConfig, check it with validate("report").
type reportConfig struct {
	// URL is management's API base URL, e.g. http://127.0.0.1:9300.
	// Default "": the node does not report.
	URL string `yaml:"url"`
	// TokenFile holds the cluster token management's intake checks.
	// Default "": the node's own cluster token (cluster_token or
	// cluster_token_file) where it has one.
	TokenFile string `yaml:"token_file"`
	// Interval between reports. Default 5s.
	Interval configs.Duration `yaml:"interval"`
	// Timeout bounds one delivery. Default 5s.
	Timeout configs.Duration `yaml:"timeout"`
	// MaxBacklog is how many reports wait while management is unreachable
	// (one per minute; older ones merge into newer ones). Default 1440.
	MaxBacklog int `yaml:"max_backlog"`
	// AdminURL is how management reaches this node's admin API (purge,
	// preload). Default: http:// and the admin listener's address; set it
	// when that listens on a wildcard address.
	AdminURL string `yaml:"admin_url"`
}

func defaultReportConfig() reportConfig {
	return reportConfig{Interval: configs.Duration(5 * time.Second), Timeout: configs.Duration(5 * time.Second), MaxBacklog: 1440}
}

// validate checks the section; key is its place in the file ("report").
func (c reportConfig) validate(key string) error {
	var errs []error
	checkURL := func(k, v string) {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, configs.Errorf(configs.Key(key, k), "want an absolute http(s) URL, got %q", v))
		}
	}
	if c.URL != "" {
		checkURL("url", c.URL)
	}
	if c.AdminURL != "" {
		checkURL("admin_url", c.AdminURL)
	}
	if c.Interval.D() < 100*time.Millisecond {
		errs = append(errs, configs.Errorf(configs.Key(key, "interval"), "must be at least 100ms"))
	}
	if c.Timeout.D() <= 0 {
		errs = append(errs, configs.Errorf(configs.Key(key, "timeout"), "must be positive"))
	}
	if c.MaxBacklog < 1 {
		errs = append(errs, configs.Errorf(configs.Key(key, "max_backlog"), "must be at least 1"))
	}
	return errors.Join(errs...)
}

// nodeIdentity names a reporting node.
type nodeIdentity struct {
	Name, Role, Region string
	// AdminAddr is the admin listener's address (for the default admin URL).
	AdminAddr string
	// Token is the node's cluster token, used when report.token_file is empty.
	Token string
}

// startReporter starts reporting snapshot() to management every interval
// and returns a stop function that sends the last report (call it after the
// node's servers have drained, so their last requests are counted). With
// no report.url it does nothing. reg, when not nil, gets the reporter's
// metrics.
func startReporter(log *slog.Logger, cfg reportConfig, id nodeIdentity, reg prometheus.Registerer, snapshot func() management.Report) (stop func(), err error) {
	if cfg.URL == "" {
		return func() {}, nil
	}
	token := id.Token
	if cfg.TokenFile != "" {
		if token, err = management.ReadToken("", cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	if token == "" {
		return nil, errors.New("report: need report.token_file (or the node's cluster token) to report to management")
	}
	admin := cfg.AdminURL
	if admin == "" && id.AdminAddr != "" {
		if host, _, err := net.SplitHostPort(id.AdminAddr); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
				log.Warn("report: the admin listener is on a wildcard address; set report.admin_url so management can reach it", "addr", id.AdminAddr)
			}
		}
		admin = "http://" + id.AdminAddr
	}
	r, err := management.NewReporter(management.ReporterConfig{
		URL: cfg.URL, Token: token, Node: id.Name, Role: id.Role, Region: id.Region, Version: Version(), AdminURL: admin,
		Interval: cfg.Interval.D(), Timeout: cfg.Timeout.D(), MaxBacklog: cfg.MaxBacklog, Log: log.With("component", "report"),
	}, snapshot)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		if err := r.Register(reg); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	log.Info("reporting to management", "url", cfg.URL, "every", cfg.Interval, "instance", r.Instance())
	return func() { cancel(); <-done }, nil
}

// reportCache starts reporting an edge or hub engine (its counters, and its
// cache tiers from reg).
func reportCache(log *slog.Logger, cfg reportConfig, eng *edge.Engine, ec edge.Config, reg *prometheus.Registry, adminAddr string) (func(), error) {
	if cfg.URL == "" {
		return func() {}, nil
	}
	token, err := edge.LoadToken(ec)
	if err != nil {
		return nil, err
	}
	id := nodeIdentity{Name: eng.Name(), Role: string(eng.Role()), Region: ec.Node.Region, AdminAddr: adminAddr, Token: token}
	return startReporter(log, cfg, id, reg, func() management.Report { return management.EdgeReport(eng, reg) })
}
