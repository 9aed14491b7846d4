package main

import (
	"context"
	"fmt"
	"time"

	"github.com/vergecdn/verge/management"
)

// runManage runs management: node intake, usage store, alerts, operator API
// and dashboard on listen.api; /healthz and /metrics on listen.admin.
func runManage(ctx context.Context, e env) int {
	fs := newFlags("manage", e)
	configPath := fs.String("config", "", "YAML config `file` (see configs/manage.yaml)")
	apiAddr := fs.String("listen", "", "API and dashboard listen `address` (overrides listen.api)")
	adminAddr := fs.String("admin", "", "admin listen `address` for /healthz and /metrics (overrides listen.admin)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: verge manage -config FILE [-listen ADDR] [-admin ADDR]

Management: nodes report to it (cluster token); operators purge, preload and
read the fleet, usage and alerts through /api/v1 and the dashboard at / on
the API address (operator token).`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	log, err := newLogger(e, *logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge manage: %v\n", err)
		return exitUsage
	}
	if *configPath == "" {
		fmt.Fprintln(e.stderr, "verge manage: need -config FILE (see configs/manage.yaml)")
		fs.Usage()
		return exitUsage
	}
	cfg := management.DefaultConfig()
	if !loadConfig(e, *configPath, &cfg) {
		return exitUsage
	}
	if *apiAddr != "" {
		cfg.Listen.API = *apiAddr
	}
	if *adminAddr != "" {
		cfg.Listen.Admin = *adminAddr
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "verge manage: config error:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	srv, err := management.New(cfg, management.Options{Log: log})
	if err != nil {
		fmt.Fprintf(e.stderr, "verge manage: %v\n", err)
		return exitFailure
	}
	defer srv.Close()
	reg := newRegistry()
	if err := srv.Register(reg); err != nil {
		fmt.Fprintf(e.stderr, "verge manage: %v\n", err)
		return exitFailure
	}
	api, err := listen("api", cfg.Listen.API, srv.Handler(), log)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge manage: %v\n", err)
		return exitFailure
	}
	adm, err := listen("admin", cfg.Listen.Admin, adminMux(reg, srv.Healthy, nil), log)
	if err != nil {
		api.ln.Close()
		fmt.Fprintf(e.stderr, "verge manage: %v\n", err)
		return exitFailure
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(runCtx) }()
	log.Info("verge manage starting", "version", Version(), "dashboard", "http://"+api.ln.Addr().String()+"/", "database", cfg.Database)
	err = serveAll(ctx, log, 10*time.Second, api, adm)
	stop()
	<-done
	if err != nil {
		return exitFailure
	}
	return exitOK
}
