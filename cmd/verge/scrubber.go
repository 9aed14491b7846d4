package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution"
	"github.com/vergecdn/verge/management"
	"github.com/vergecdn/verge/scrubber"
)

// scrubberConfig is the file "verge scrubber -config FILE" reads: the
// scrubber's server and stages, and the pool of edges behind it.
type scrubberConfig struct {
	scrubber.ProxyConfig `yaml:",inline"`
	// Upstream is the pool of edges admitted requests go to
	// (distribution's pool: policy, backends, timeouts, health checks).
	Upstream distribution.PoolConfig `yaml:"upstream"`
	// Node names this scrubber in management (default: the host name).
	Node struct {
		Name   string `yaml:"name"`
		Region string `yaml:"region"`
	} `yaml:"node"`
	// Report sends the scrubber's counters and attack state to management
	// (report.token_file holds the cluster token).
	Report reportConfig `yaml:"report"`
}

func defaultScrubberConfig() scrubberConfig {
	return scrubberConfig{ProxyConfig: scrubber.DefaultProxyConfig(), Upstream: distribution.DefaultPoolConfig(), Report: defaultReportConfig()}
}

func (c *scrubberConfig) Validate() error {
	return errors.Join(c.ProxyConfig.Validate(), c.Upstream.Validate("upstream"), c.Report.validate("report"))
}

func runScrubber(ctx context.Context, e env) int {
	fs := newFlags("scrubber", e)
	cfgPath := fs.String("config", "", "YAML config file (see configs/scrubber.yaml)")
	listenAddr := fs.String("listen", "", "public address (overrides the config's listen)")
	adminAddr := fs.String("admin", "", "admin address for /healthz and /metrics (overrides the config's admin)")
	upstream := fs.String("upstream", "", "one-line mode: the one upstream URL, http://host:port (instead of -config)")
	rate := fs.Float64("rate", 100, "one-line mode: requests per second per source address")
	burst := fs.Int("burst", 50, "one-line mode: burst per source address")
	mode := fs.String("mode", scrubber.ModeTokenBucket, "one-line mode: token_bucket or penalty_box")
	penalty := fs.Duration("penalty", 30*time.Second, "one-line mode: time in the penalty box (penalty_box mode)")
	server := fs.String("server", "", "front end: fast or stdlib (overrides the config's server)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: verge scrubber -config FILE [-listen ADDR] [-admin ADDR]
       verge scrubber -listen ADDR -upstream URL [-rate N -burst N -mode token_bucket|penalty_box]

Rate limits, connection limits, allow/deny lists and attack mitigation in
front of a pool of edges. One-line mode limits each source address only (no
per-prefix bucket, no attack detection); use a config file for the rest.
SIGHUP reloads the allow/deny lists file.`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	log, err := newLogger(e, *logLevel)
	if err != nil {
		fmt.Fprintln(e.stderr, "verge scrubber:", err)
		return exitUsage
	}

	cfg := defaultScrubberConfig()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *cfgPath != "" && *upstream != "":
		fmt.Fprintln(e.stderr, "verge scrubber: -config and -upstream are exclusive (put the upstream in the file)")
		return exitUsage
	case *cfgPath != "":
		for _, name := range []string{"rate", "burst", "mode", "penalty"} {
			if set[name] {
				fmt.Fprintf(e.stderr, "verge scrubber: -%s is for one-line mode; with -config set it in the file\n", name)
				return exitUsage
			}
		}
		if !loadConfig(e, *cfgPath, &cfg) {
			return exitUsage
		}
	case *upstream != "":
		if *listenAddr == "" {
			fmt.Fprintln(e.stderr, "verge scrubber: one-line mode needs -listen ADDR")
			return exitUsage
		}
		cfg.Limits.Mode = *mode
		cfg.Limits.PerIP = scrubber.Bucket{Rate: *rate, Burst: *burst}
		cfg.Limits.PerPrefix = scrubber.Bucket{}
		cfg.Limits.Penalty = configs.Duration(*penalty)
		cfg.Attack.Enabled = false
		cfg.Attack.Limits = cfg.Limits.Policy
		cfg.Upstream.Backends = []distribution.Backend{{URL: *upstream}}
		cfg.Upstream.Health.Enabled = false // one backend: nothing to fail over to
	default:
		fmt.Fprintln(e.stderr, "verge scrubber: need -config FILE, or -listen ADDR -upstream URL")
		fs.Usage()
		return exitUsage
	}
	if *listenAddr != "" {
		cfg.Listen = *listenAddr
	}
	if *adminAddr != "" {
		cfg.Admin = *adminAddr
	}
	if *server != "" {
		cfg.Server = *server
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "verge scrubber: bad settings:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	if err := serveScrubber(ctx, cfg, log); err != nil {
		log.Error("scrubber failed", "err", err)
		return exitFailure
	}
	return exitOK
}

func serveScrubber(ctx context.Context, cfg scrubberConfig, log *slog.Logger) error {
	reg := newRegistry()
	s, err := scrubber.New(cfg.Config, scrubber.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	pool, err := distribution.NewPool(cfg.Upstream, distribution.Options{Name: "scrubber_upstream", Log: log})
	if err != nil {
		return fmt.Errorf("scrubber: upstream pool: %w", err)
	}
	if err := pool.Register(reg); err != nil {
		return fmt.Errorf("scrubber: upstream pool metrics: %w", err)
	}
	target, err := url.Parse(cfg.Upstream.Backends[0].URL)
	if err != nil {
		return fmt.Errorf("scrubber: upstream: %w", err)
	}
	proxy := s.Proxy(target, pool)

	pub, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("public listener: %w", err)
	}
	admin, err := listen("admin", cfg.Admin, adminMux(reg, nil, nil), log)
	if err != nil {
		pub.Close()
		return err
	}

	name := cfg.Node.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	stopReport, err := startReporter(log, cfg.Report, nodeIdentity{Name: name, Role: management.RoleScrubber, Region: cfg.Node.Region,
		AdminAddr: admin.ln.Addr().String()}, reg, func() management.Report {
		c, _ := management.GatherCounters(reg, "verge_scrubber_")
		return management.Report{Ready: true, Counters: c, Attack: management.FromAttackState(s.AttackState())}
	})
	if err != nil {
		pub.Close()
		admin.ln.Close()
		return err
	}
	defer stopReport()

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	go s.Run(bg)
	go pool.Run(bg)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-hup:
				if err := s.Reload(); err != nil {
					log.Error("lists reload failed; previous lists stay in force", "err", err)
				}
			}
		}
	}()
	log.Info("scrubber ready", "listen", pub.Addr().String(), "admin", admin.ln.Addr().String(),
		"server", cfg.Server, "upstreams", len(cfg.Upstream.Backends), "mode", cfg.Limits.Mode,
		"per_ip_rate", cfg.Limits.PerIP.Rate, "per_ip_burst", cfg.Limits.PerIP.Burst)

	drain := cfg.DrainTimeout.D()
	if cfg.Server == scrubber.ServerStdlib {
		srv := s.HTTPServer(s.Wrap(proxy), slog.NewLogLogger(log.Handler(), slog.LevelDebug))
		return serveAll(ctx, log, drain, server{name: "public", srv: srv, ln: s.Listener(pub)}, admin)
	}

	front := s.NewFront(proxy)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ferr := make(chan error, 1)
	go func() {
		log.Info("listening", "server", "public", "addr", pub.Addr().String())
		if err := front.Serve(pub); !errors.Is(err, http.ErrServerClosed) {
			ferr <- err
			cancel()
		}
	}()
	err = serveAll(fctx, log, drain, admin)
	sctx, done := context.WithTimeout(context.Background(), drain)
	defer done()
	if serr := front.Shutdown(sctx); serr != nil {
		log.Warn("shutdown incomplete", "server", "public", "err", serr)
		front.Close()
	}
	select {
	case ferr := <-ferr:
		return ferr
	default:
	}
	return err
}
