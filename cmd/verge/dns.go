package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/dnsredirect/geo"
)

// runDNS is `verge dns -config FILE`: the GeoDNS server.
func runDNS(ctx context.Context, e env) int {
	fs := newFlags("dns", e)
	cfgPath := fs.String("config", "", "YAML config file (required; see configs/dns.yaml)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	if *cfgPath == "" {
		fmt.Fprintln(e.stderr, "verge dns: -config FILE is required (see configs/dns.yaml)")
		return exitUsage
	}
	log, err := newLogger(e, *logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge dns: %v\n", err)
		return exitUsage
	}
	cfg := dnsredirect.DefaultConfig()
	if !loadConfig(e, *cfgPath, &cfg) {
		return exitUsage
	}
	// Relative paths in the config are relative to the config file.
	mmdb := cfg.MMDB
	if !filepath.IsAbs(mmdb) {
		mmdb = filepath.Join(filepath.Dir(*cfgPath), mmdb)
	}
	db, err := geo.Open(mmdb)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge: config error:\n  %s: mmdb: %v\n", *cfgPath, err)
		return exitUsage
	}
	defer db.Close()
	dbType, built, nodes := db.Metadata()
	log.Info("geo database", "path", mmdb, "type", dbType, "built", built.Format("2006-01-02"), "nodes", nodes)

	reg := newRegistry()
	srv, err := dnsredirect.New(cfg, dnsredirect.Options{Geo: db, Logger: log, Registry: reg})
	if err != nil {
		log.Error("dns: start", "err", err)
		return exitFailure
	}
	if err := srv.Listen(); err != nil {
		log.Error("dns: start", "err", err)
		return exitFailure
	}
	admin, err := listen("admin", cfg.Admin, adminMux(reg, srv.Healthz, nil), log)
	if err != nil {
		srv.Close()
		log.Error("dns: start", "err", err)
		return exitFailure
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dnsDone := make(chan error, 1)
	go func() {
		dnsDone <- srv.Serve(ctx)
		cancel() // a DNS failure stops the admin server too
	}()
	adminErr := serveAll(ctx, log, cfg.Drain.D(), admin)
	cancel()
	dnsErr := <-dnsDone
	if adminErr != nil || dnsErr != nil {
		log.Error("dns: stopped", "admin_err", adminErr, "dns_err", dnsErr)
		return exitFailure
	}
	log.Info("dns: stopped")
	return exitOK
}
