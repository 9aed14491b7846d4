package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/dnsredirect/geo"
	"github.com/vergecdn/verge/management"
)

// dnsFile is the file "verge dns -config FILE" reads: the GeoDNS server's
// config, and how the node reports to management.
type dnsFile struct {
	dnsredirect.Config `yaml:",inline"`
	// Node names this server in management (default: the host name).
	Node struct {
		Name   string `yaml:"name"`
		Region string `yaml:"region"`
	} `yaml:"node"`
	// Report sends the server's counters to management and pulls the edges'
	// loads from it (report.token_file holds the cluster token).
	Report reportConfig `yaml:"report"`
}

func (f *dnsFile) Validate() error {
	return errors.Join(f.Config.Validate(), f.Report.validate("report"))
}

// runDNS is `verge dns -config FILE`: the GeoDNS server.
func runDNS(ctx context.Context, e env) int {
	fs := newFlags("dns", e)
	cfgPath := fs.String("config", "", "YAML config file (required; see configs/dns.yaml)")
	adminAddr := fs.String("admin", "", "admin listen `address` for /healthz and /metrics (overrides the config's admin)")
	nodeName := fs.String("name", "", "node `name` in management (overrides node.name; default the host name)")
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
	file := dnsFile{Config: dnsredirect.DefaultConfig(), Report: defaultReportConfig()}
	if !loadConfig(e, *cfgPath, &file) {
		return exitUsage
	}
	cfg := file.Config
	if *adminAddr != "" {
		cfg.Admin = *adminAddr
	}
	if *nodeName != "" {
		file.Node.Name = *nodeName
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

	name := file.Node.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	stopReport, err := startReporter(log, file.Report, nodeIdentity{Name: name, Role: management.RoleDNS, Region: file.Node.Region,
		AdminAddr: admin.ln.Addr().String()}, reg, func() management.Report { return management.FromDNSStats(srv.Stats()) })
	if err != nil {
		admin.ln.Close()
		srv.Close()
		fmt.Fprintf(e.stderr, "verge dns: %v\n", err)
		return exitUsage
	}
	defer stopReport()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if file.Report.URL != "" && file.Report.TokenFile != "" {
		token, err := management.ReadToken("", file.Report.TokenFile)
		if err == nil {
			go (&management.LoadPuller{URL: file.Report.URL, Token: token, Log: log}).Run(ctx, srv)
		}
	}
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
