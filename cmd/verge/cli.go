package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vergecdn/verge/configs"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0 // clean shutdown
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad flags or config
)

// env is what a subcommand gets from main: its arguments and where to write.
type env struct {
	args   []string
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env) int
}

// commands is every subcommand, in the order "verge help" lists them.
func commands() []command {
	return []command{
		{"demo", "run the whole CDN on loopback: origin, hubs, edges, scrubber, GeoDNS, management (-data DIR)", runDemo},
		{"edge", "run an edge cache node (-config FILE, or -listen ADDR -upstream URL)", runEdge},
		{"hub", "run a regional hub: the edge engine with the origin as its upstream", runHub},
		{"origin", "run the origin: a content directory with validators, ranges, uploads (-config FILE, or -root DIR)", runOrigin},
		{"dns", "run the GeoDNS server: nearest healthy, least-loaded edge (-config FILE)", runDNS},
		{"mmdb", "build a geo mmdb from CSV (mmdb build -csv FILE -out FILE) or look addresses up", runMMDB},
		{"scrubber", "run the scrubber: rate limits and attack mitigation before edges (-config FILE, or -listen ADDR -upstream URL)", runScrubber},
		{"manage", "run management: node reports, usage, alerts, operator API and dashboard (-config FILE)", runManage},
		{"purge", "purge through management on every hub and edge, with each node's ack (-url|-prefix|-tag|-host|-all)", runPurge},
		{"preload", "preload URLs into every edge's cache through management (-url URL ... | -file FILE)", runPreload},
		{"status", "show the fleet by region and the active alerts, from management", runStatus},
		{"usage", "show usage per property (requests, hits, bytes) as a table, JSON or CSV, from management", runUsage},
		{"version", "print the version", runVersion},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return c.run(ctx, env{args: args[1:], stdout: stdout, stderr: stderr})
		}
	}
	fmt.Fprintf(stderr, "verge: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: verge COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `"verge COMMAND -h" shows a command's flags.`)
}

// newFlags returns a FlagSet that reports errors to e.stderr and does not exit.
func newFlags(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("verge "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parseFlags parses args and returns the exit code to use when parsing
// stopped the command (-h is exitOK, a bad flag exitUsage).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		if fs.NArg() > 0 {
			fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
			return exitUsage, false
		}
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	default:
		return exitUsage, false
	}
}

// loadConfig loads a YAML file into cfg and prints any error to stderr.
func loadConfig(e env, path string, cfg any) bool {
	if err := configs.Load(path, cfg); err != nil {
		fmt.Fprintf(e.stderr, "verge: config error:\n%s\n", indent(err.Error()))
		return false
	}
	return true
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// newLogger returns the structured logger every server subcommand uses.
func newLogger(e env, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q (want debug, info, warn or error)", level)
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: l})), nil
}
