package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/http3"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution"
	"github.com/vergecdn/verge/distribution/purgelog"
	"github.com/vergecdn/verge/edge"
	listenpkg "github.com/vergecdn/verge/edge/listen"
	"github.com/vergecdn/verge/edge/storage"
	"github.com/vergecdn/verge/scrubber"
)

// cacheFile is the YAML file of an edge or hub: the engine's config plus the
// sections of the components cmd/verge wires around it.
type cacheFile struct {
	edge.Config `yaml:",inline"`
	// Parents is the hub ring above this node (see distribution/README.md).
	Parents distribution.ParentsConfig `yaml:"parents"`
	// Scrubber runs the scrubber's cheap stages in front of the engine (see
	// scrubber/README.md): per-source limits, lists, connection caps.
	Scrubber edgeScrubber `yaml:"scrubber"`
	// PurgeLog keeps the purges this node applied and catches up on the
	// ones it missed (see distribution/README.md).
	PurgeLog purgelog.Config `yaml:"purge_log"`
	// Report sends this node's counters to management (see report.go).
	Report reportConfig `yaml:"report"`
	// Runtime tunes the Go runtime for a cache process.
	Runtime runtimeConfig `yaml:"runtime"`
}

// edgeScrubber is the scrubber section of an edge or hub: off by default,
// since its per-source limits need tuning to a node's traffic.
type edgeScrubber struct {
	Enabled         bool `yaml:"enabled"`
	scrubber.Config `yaml:",inline"`
}

func defaultCacheFile() cacheFile {
	return cacheFile{Config: edge.DefaultConfig(), Parents: distribution.DefaultParentsConfig(),
		Scrubber: edgeScrubber{Config: scrubber.DefaultConfig()}, PurgeLog: purgelog.DefaultConfig(),
		Report: defaultReportConfig(), Runtime: runtimeConfig{GCPercent: 400, MemoryLimit: "auto"}}
}

// runtimeConfig tunes Go's garbage collector for a cache: its heap is
// mostly long-lived cached objects, so collecting less often buys
// throughput, and a soft memory limit keeps the process near its budget.
type runtimeConfig struct {
	// GCPercent is the GC target (as GOGC). Default 400; GOGC in the
	// environment wins.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimit is a soft limit on the process's memory (as GOMEMLIMIT):
	// "auto" (default) is 2 x cache.ram_bytes + 512MiB, "off" none, or a
	// size. GOMEMLIMIT in the environment wins.
	MemoryLimit string `yaml:"memory_limit"`
}

func (c runtimeConfig) limit(ram int64) (int64, error) {
	switch c.MemoryLimit {
	case "", "auto":
		return 2*ram + 512<<20, nil
	case "off":
		return math.MaxInt64, nil
	}
	return configs.ParseBytes(c.MemoryLimit)
}

func (c runtimeConfig) validate(ram int64) error {
	var errs []error
	if c.GCPercent < 10 || c.GCPercent > 10000 {
		errs = append(errs, configs.Errorf("runtime.gc_percent", "must be 10..10000, got %d", c.GCPercent))
	}
	if n, err := c.limit(ram); err != nil {
		errs = append(errs, configs.Errorf("runtime.memory_limit", "want auto, off or a size: %v", err))
	} else if n < 64<<20 {
		errs = append(errs, configs.Errorf("runtime.memory_limit", "must be at least 64MiB"))
	}
	return errors.Join(errs...)
}

// apply sets the GC target and memory limit, unless GOGC / GOMEMLIMIT are
// set in the environment.
func (c runtimeConfig) apply(ram int64, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(c.GCPercent)
		log.Debug("runtime: gc_percent", "value", c.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if n, err := c.limit(ram); err == nil {
			debug.SetMemoryLimit(n)
			log.Debug("runtime: memory_limit", "bytes", n)
		}
	}
}

func (f *cacheFile) Validate() error {
	errs := []error{f.Config.Validate(), f.Parents.Validate("parents"), f.PurgeLog.Validate("purge_log"), f.Report.validate("report"),
		f.Runtime.validate(int64(f.Cache.RAMBytes))}
	if f.Scrubber.Enabled {
		errs = append(errs, f.Scrubber.ValidateAt("scrubber"))
	}
	if f.Upstream != "" && len(f.Parents.Hubs) > 0 {
		errs = append(errs, configs.Errorf("upstream", "set upstream (one hub) or parents.hubs (a ring), not both"))
	}
	if len(f.PurgeLog.Peers) > 0 && f.ClusterToken == "" && f.ClusterTokenFile == "" {
		errs = append(errs, configs.Errorf("purge_log.peers", "need cluster_token or cluster_token_file: peers only answer with the cluster token"))
	}
	return errors.Join(errs...)
}

func runEdge(ctx context.Context, e env) int { return runCache(ctx, e, edge.RoleEdge) }
func runHub(ctx context.Context, e env) int  { return runCache(ctx, e, edge.RoleHub) }

// runCache runs the cache engine in either role.
func runCache(ctx context.Context, e env, role edge.Role) int {
	name := string(role)
	fs := newFlags(name, e)
	configPath := fs.String("config", "", "YAML config `file`")
	listenAddr := fs.String("listen", "", "public listen `address` (one-line mode, or overrides the config)")
	adminAddr := fs.String("admin", "", "admin listen `address` for /healthz, /metrics and purge (overrides the config)")
	upstream := fs.String("upstream", "", "one-line mode: the `URL` every host is fetched from (no config file)")
	nodeName := fs.String("name", "", "node `name` in Cache-Status and Via (overrides the config)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	log, err := newLogger(e, *logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitUsage
	}

	file := defaultCacheFile()
	cfg := &file.Config
	switch {
	case *configPath != "" && *upstream != "":
		fmt.Fprintf(e.stderr, "verge %s: use -config or -upstream, not both\n", name)
		return exitUsage
	case *configPath != "":
		file.Role = role // so Validate checks the right role
		if !loadConfig(e, *configPath, &file) {
			return exitUsage
		}
	case *upstream != "":
		p := edge.DefaultProperty()
		p.Name, p.Hosts, p.Origin = "default", []string{"*"}, *upstream
		cfg.Properties = []edge.Property{p}
	default:
		fmt.Fprintf(e.stderr, "verge %s: need -config FILE, or -listen ADDR -upstream URL\n", name)
		fs.Usage()
		return exitUsage
	}
	cfg.Role = role
	if *listenAddr != "" {
		cfg.Listen.HTTP = *listenAddr
	}
	if *adminAddr != "" {
		cfg.Listen.Admin = *adminAddr
	}
	if *nodeName != "" {
		cfg.Node.Name = *nodeName
	}
	if err := file.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "verge %s: config error:\n%s\n", name, indent(err.Error()))
		return exitUsage
	}

	file.Runtime.apply(int64(cfg.Cache.RAMBytes), log)
	reg := newRegistry()
	opts := edge.Options{Logger: log.With("node", cfg.Node.Name, "role", name)}
	if len(file.Parents.Hubs) > 0 {
		parents, err := distribution.NewParents(file.Parents, distribution.Options{Name: "parents", Log: opts.Logger})
		if err != nil {
			fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
			return exitUsage
		}
		if err := parents.Register(reg); err != nil {
			fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
			return exitFailure
		}
		go parents.Run(ctx)
		opts.Transport = parents
		cfg.ViaParents = true
	}
	// In a binary upgrade the old process may still hold the cache's and
	// the purge log's directories: openLocked asks for them.
	ho := processHandover()
	var eng *edge.Engine
	err = ho.openLocked(ctx, cfg.Cache.Disk.Dir, func(err error) bool { return errors.Is(err, storage.ErrLocked) }, func() (err error) {
		eng, err = edge.New(*cfg, opts)
		return err
	}, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitUsage
	}
	if err := eng.Register(reg); err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	var public http.Handler = eng
	var scrub *scrubber.Scrubber
	if file.Scrubber.Enabled {
		scrub, err = scrubber.New(file.Scrubber.Config, scrubber.Options{Logger: opts.Logger, Registerer: reg})
		if err != nil {
			fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
			return exitUsage
		}
		public = scrub.Wrap(eng)
		go scrub.Run(ctx)
	}
	admin := eng.Admin()
	var replica *purgelog.Replica
	if file.PurgeLog.Enabled() {
		err = ho.openLocked(ctx, file.PurgeLog.Dir, func(err error) bool { return errors.Is(err, purgelog.ErrLocked) }, func() (err error) {
			replica, err = newReplica(file, eng, opts.Logger)
			return err
		}, log)
		if err != nil {
			fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
			return exitFailure
		}
		defer replica.Log().Close()
		if err := replica.Register(reg); err != nil {
			fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
			return exitFailure
		}
		public, admin = untilReady(eng, public), purgeAdmin(replica, admin)
		eng.SetReady(false) // until the replica has caught up
	}
	if ho.enabled {
		// What a new binary may ask this process to let go of.
		locks := []string{cfg.Cache.Disk.Dir}
		if replica != nil {
			locks = append(locks, file.PurgeLog.Dir)
		}
		ho.holdLocks(slices.DeleteFunc(locks, func(d string) bool { return d == "" }), func() {
			if err := eng.Close(); err != nil {
				log.Error("closing the cache", "err", err)
			}
			if replica != nil {
				replica.Log().Close()
			}
		})
	}
	if *configPath != "" {
		go reloadOnHUP(ctx, *configPath, role, eng, log)
	}
	servers, err := publicServers(ctx, cfg, public, scrub, reg, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	adm, err := listen("admin", cfg.Listen.Admin, adminMux(reg, eng.Healthy, admin), log)
	if err != nil {
		closeAll(servers)
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	stopReport, err := reportCache(log, file.Report, eng, *cfg, reg, adm.ln.Addr().String())
	if err != nil {
		closeAll(append(servers, adm))
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	defer stopReport() // after the servers drained: the last report counts everything
	log.Info("verge "+name+" starting", "node", eng.Name(), "version", Version(), "properties", len(cfg.Properties))
	if replica != nil {
		go replica.Run(ctx)
	}
	serveErr := serveAll(ctx, log, 10*time.Second, append(servers, adm)...)
	// After the drain: queued disk writes finish and the index is
	// checkpointed, so a restart finds the cache warm.
	if err := eng.Close(); err != nil {
		log.Error("closing the cache", "err", err)
	}
	if serveErr != nil {
		return exitFailure
	}
	return exitOK
}

// reloadOnHUP re-reads the config file on SIGHUP and applies what can
// change without a restart (properties, upstream, header count); a bad file
// or a change that needs a restart is logged and changes nothing.
// Certificates are reloaded by the listeners on the same signal.
func reloadOnHUP(ctx context.Context, path string, role edge.Role, eng *edge.Engine, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		file := defaultCacheFile()
		file.Role = role
		if err := configs.Load(path, &file); err != nil {
			log.Error("config reload failed; keeping the running config", "err", err)
			continue
		}
		if err := eng.Reload(file.Config); err != nil {
			log.Error("config reload refused; keeping the running config", "err", err)
		}
	}
}

// publicServers opens the cache's public listeners: plain HTTP, and with
// listen.https, TLS (HTTP/1.1 and HTTP/2) on TCP and HTTP/3 on UDP at the
// same port, with certificates reloaded on SIGHUP or when their files change.
func publicServers(ctx context.Context, cfg *edge.Config, h http.Handler, scrub *scrubber.Scrubber, reg prometheus.Registerer, log *slog.Logger) ([]server, error) {
	limit := func(s *http.Server) {
		s.MaxHeaderBytes = int(cfg.Limits.MaxHeaderBytes)
		s.ReadHeaderTimeout = cfg.Limits.ReadHeaderTimeout.D()
		s.IdleTimeout = cfg.Limits.IdleTimeout.D()
		s.HTTP2 = listenpkg.HTTP2Config()
	}
	pub, err := listen("public", cfg.Listen.HTTP, h, log)
	if err != nil {
		return nil, err
	}
	limit(pub.srv)
	if scrub != nil {
		pub.ln = scrub.Listener(pub.ln)
	}
	servers := []server{pub}
	if cfg.Listen.HTTPS == "" {
		return servers, nil
	}
	certs, err := listenpkg.NewCerts(cfg.CertFiles(), log)
	if err != nil {
		closeAll(servers)
		return nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	go certs.Watch(ctx, cfg.Listen.CertReload.D(), reload)

	tlsSrv, err := listen("https", cfg.Listen.HTTPS, h, log)
	if err != nil {
		closeAll(servers)
		return nil, err
	}
	limit(tlsSrv.srv)
	if scrub != nil {
		tlsSrv.ln = scrub.Listener(tlsSrv.ln)
	}
	tlsSrv.srv.TLSConfig = certs.TLSConfig()
	servers = append(servers, tlsSrv)
	// HTTP/2 behind the flood guard (rapid reset, CONTINUATION floods).
	h2m, err := listenpkg.NewH2Metrics(reg)
	if err == nil {
		err = listenpkg.GuardHTTP2(tlsSrv.srv, listenpkg.H2Options{HeaderTimeout: cfg.Limits.ReadHeaderTimeout.D(), Metrics: h2m, Log: log})
	}
	if err != nil {
		closeAll(servers)
		return nil, err
	}
	if !cfg.Listen.HTTP3 {
		return servers, nil
	}
	port := tlsSrv.ln.Addr().(*net.TCPAddr).Port
	tlsSrv.srv.Handler = listenpkg.AltSvc(h, port)
	// HTTP/3 on the same port number, over UDP.
	host, _, _ := net.SplitHostPort(cfg.Listen.HTTPS)
	h3, err := listenH3("http3", net.JoinHostPort(host, strconv.Itoa(port)), &http3.Server{
		Handler:        h,
		TLSConfig:      http3.ConfigureTLSConfig(certs.QUICTLSConfig()),
		MaxHeaderBytes: int(cfg.Limits.MaxHeaderBytes),
		IdleTimeout:    cfg.Limits.IdleTimeout.D(),
		Logger:         log,
	})
	if err != nil {
		closeAll(servers)
		return nil, err
	}
	return append(servers, h3), nil
}

// closeAll releases listeners that were opened but will not be served.
func closeAll(servers []server) {
	for _, s := range servers {
		if s.h3 != nil {
			s.pc.Close()
		} else {
			s.ln.Close()
		}
	}
}

// newReplica opens the node's purge log and builds its replica: POST /purge
// records each numbered purge, and the node catches up from its peers before
// it is ready.
func newReplica(file cacheFile, eng *edge.Engine, log *slog.Logger) (*purgelog.Replica, error) {
	pc := file.PurgeLog
	token, err := edge.LoadToken(file.Config)
	if err != nil {
		return nil, err
	}
	var peers []*purgelog.Client
	for _, p := range pc.Peers {
		c, err := purgelog.NewClient(p, token, nil)
		if err != nil {
			return nil, err
		}
		peers = append(peers, c)
	}
	l, err := purgelog.Open(pc.Dir, purgelog.Options{Sync: pc.Fsync, Log: log})
	if err != nil {
		return nil, err
	}
	return purgelog.NewReplica(l, eng, purgelog.ReplicaOptions{
		Name:       eng.Name(),
		Peers:      peers,
		Auth:       eng.Authorized,
		SetReady:   eng.SetReady,
		Interval:   pc.SyncInterval.D(),
		Retry:      pc.Retry.D(),
		StartWait:  pc.StartWait.D(),
		GapTimeout: pc.GapTimeout.D(),
		Log:        log,
	}), nil
}

// purgeAdmin is the admin API with the purge log: the replica's POST /purge
// (recorded, with catch-up on gaps) and log endpoints, the engine's for the
// rest (POST /preload).
func purgeAdmin(r *purgelog.Replica, engine http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /purge", r.Handler())
	mux.Handle("/purgelog/", r.Handler())
	mux.Handle("/", engine)
	return mux
}

// untilReady answers 503 on the public listener while the node is not ready
// (catching up on purges it missed), so it never serves an object purged
// while it was down.
func untilReady(eng *edge.Engine, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := eng.Healthy(); err != nil {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "verge: node not ready: catching up on purges", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
