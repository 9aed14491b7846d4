package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vergecdn/verge/edge"
)

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

	cfg := edge.DefaultConfig()
	switch {
	case *configPath != "" && *upstream != "":
		fmt.Fprintf(e.stderr, "verge %s: use -config or -upstream, not both\n", name)
		return exitUsage
	case *configPath != "":
		if !loadConfig(e, *configPath, &cfg) {
			return exitUsage
		}
	case *upstream != "":
		cfg.Properties = []edge.Property{{Name: "default", Hosts: []string{"*"}, Origin: *upstream}}
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
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "verge %s: config error:\n%s\n", name, indent(err.Error()))
		return exitUsage
	}

	eng, err := edge.New(cfg, edge.Options{Logger: log.With("node", cfg.Node.Name, "role", name)})
	if err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitUsage
	}
	reg := newRegistry()
	if err := eng.Register(reg); err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	pub, err := listen("public", cfg.Listen.HTTP, eng, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	pub.srv.MaxHeaderBytes = int(cfg.Limits.MaxHeaderBytes)
	pub.srv.ReadHeaderTimeout = cfg.Limits.ReadHeaderTimeout.D()
	pub.srv.IdleTimeout = cfg.Limits.IdleTimeout.D()
	adm, err := listen("admin", cfg.Listen.Admin, adminMux(reg, eng.Healthy, eng.Admin()), log)
	if err != nil {
		pub.ln.Close()
		fmt.Fprintf(e.stderr, "verge %s: %v\n", name, err)
		return exitFailure
	}
	log.Info("verge "+name+" starting", "node", eng.Name(), "version", Version(), "properties", len(cfg.Properties))
	if err := serveAll(ctx, log, 10*time.Second, pub, adm); err != nil {
		return exitFailure
	}
	return exitOK
}
