package main

import (
	"context"
	"fmt"

	"github.com/vergecdn/verge/origin"
)

// runOrigin runs the origin server: "verge origin -config FILE", or without a
// file "verge origin -root DIR [-listen ADDR] [-admin ADDR]". Flags given
// with -config override the file.
func runOrigin(ctx context.Context, e env) int {
	fs := newFlags("origin", e)
	configPath := fs.String("config", "", "YAML config `file` (see configs/origin.yaml)")
	root := fs.String("root", "", "content `directory` (overrides root)")
	listenAddr := fs.String("listen", "", "content listener `host:port` (overrides listen; default 127.0.0.1:8070)")
	adminAddr := fs.String("admin", "", "admin listener `host:port` for /healthz and /metrics (overrides admin_listen; default 127.0.0.1:9070)")
	tokenFile := fs.String("upload-token-file", "", "`file` holding the upload API's bearer token (overrides upload.token_file; enables PUT and DELETE)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	cfg := origin.DefaultConfig()
	if *configPath != "" {
		if !loadConfig(e, *configPath, &cfg) {
			return exitUsage
		}
	} else if *root == "" {
		fmt.Fprintln(e.stderr, "verge origin: need -config FILE or -root DIR")
		fs.Usage()
		return exitUsage
	}
	if *root != "" {
		cfg.Root = *root
	}
	if *listenAddr != "" {
		cfg.Listen = *listenAddr
	}
	if *adminAddr != "" {
		cfg.AdminListen = *adminAddr
	}
	if *tokenFile != "" {
		cfg.Upload.Token, cfg.Upload.TokenFile = "", *tokenFile
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "verge: config error:\n%s\n", indent(err.Error()))
		return exitUsage
	}
	log, err := newLogger(e, *logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge origin: %v\n", err)
		return exitUsage
	}
	reg := newRegistry()
	srv, err := origin.New(cfg, origin.Options{Logger: log, Registerer: reg})
	if err != nil {
		fmt.Fprintf(e.stderr, "verge origin: %v\n", err)
		return exitUsage
	}
	defer srv.Close()
	pub, err := listen("public", cfg.Listen, srv, log)
	if err != nil {
		log.Error("origin", "err", err)
		return exitFailure
	}
	adm, err := listen("admin", cfg.AdminListen, adminMux(reg, srv.Healthy, nil), log)
	if err != nil {
		pub.ln.Close()
		log.Error("origin", "err", err)
		return exitFailure
	}
	log.Info("origin serving", "root", cfg.Root, "uploads", cfg.Upload.Enabled(), "rules", len(cfg.Rules))
	if err := serveAll(ctx, log, cfg.Drain.D(), pub, adm); err != nil {
		return exitFailure
	}
	return exitOK
}
