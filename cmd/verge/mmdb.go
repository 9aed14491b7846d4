package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/vergecdn/verge/dnsredirect/geo"
)

const mmdbUsage = `usage:
  verge mmdb build -csv FILE -out FILE   build a GeoIP2-City-layout mmdb from cidr,country,continent,lat,lon rows
  verge mmdb lookup -db FILE ADDRESS...  print what a GeoIP2/GeoLite2 City or Country mmdb says about addresses`

// runMMDB is `verge mmdb build|lookup`.
func runMMDB(_ context.Context, e env) int {
	if len(e.args) == 0 {
		fmt.Fprintln(e.stderr, mmdbUsage)
		return exitUsage
	}
	sub := e.args[0]
	e.args = e.args[1:]
	switch sub {
	case "build":
		return mmdbBuild(e)
	case "lookup":
		return mmdbLookup(e)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(e.stdout, mmdbUsage)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "verge mmdb: unknown command %q\n%s\n", sub, mmdbUsage)
	return exitUsage
}

func mmdbBuild(e env) int {
	fs := newFlags("mmdb build", e)
	csvPath := fs.String("csv", "", "input CSV: cidr,country,continent,lat,lon rows ('#' comments, optional header)")
	out := fs.String("out", "", "output .mmdb file (written atomically)")
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	if *csvPath == "" || *out == "" {
		fmt.Fprintln(e.stderr, "verge mmdb build: -csv FILE and -out FILE are required")
		return exitUsage
	}
	f, err := os.Open(*csvPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge mmdb build: %v\n", err)
		return exitFailure
	}
	nets, err := geo.ParseCSV(*csvPath, f)
	f.Close()
	if err != nil {
		fmt.Fprintf(e.stderr, "verge mmdb build: bad CSV:\n%s\n", indent(err.Error()))
		return exitFailure
	}
	if len(nets) == 0 {
		fmt.Fprintf(e.stderr, "verge mmdb build: %s has no rows\n", *csvPath)
		return exitFailure
	}
	n, err := writeAtomically(*out, func(w io.Writer) (int64, error) { return geo.WriteMMDB(w, *csvPath, nets) })
	if err != nil {
		fmt.Fprintf(e.stderr, "verge mmdb build: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "wrote %d networks to %s (%d bytes)\n", len(nets), *out, n)
	return exitOK
}

// writeAtomically writes a temporary file next to path and renames it over
// path, so a reader never sees half a database.
func writeAtomically(path string, write func(io.Writer) (int64, error)) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	n, err := write(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, err
	}
	return n, nil
}

func mmdbLookup(e env) int {
	fs := newFlags("mmdb lookup", e)
	dbPath := fs.String("db", "", "the .mmdb file")
	if err := fs.Parse(e.args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *dbPath == "" || fs.NArg() == 0 {
		fmt.Fprintln(e.stderr, "verge mmdb lookup: -db FILE and at least one ADDRESS are required")
		return exitUsage
	}
	db, err := geo.Open(*dbPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge mmdb lookup: %v\n", err)
		return exitFailure
	}
	defer db.Close()
	code := exitOK
	for _, arg := range fs.Args() {
		a, err := netip.ParseAddr(arg)
		if err != nil {
			fmt.Fprintf(e.stderr, "verge mmdb lookup: %q is not an IP address\n", arg)
			code = exitUsage
			continue
		}
		loc, network, err := db.Lookup(a)
		if err != nil {
			fmt.Fprintf(e.stderr, "verge mmdb lookup: %v\n", err)
			code = exitFailure
			continue
		}
		if !loc.Known() {
			fmt.Fprintf(e.stdout, "%s\tnetwork=%s\tnot found\n", a, network)
			continue
		}
		coords := "-"
		if loc.HasCoords {
			coords = strconv.FormatFloat(loc.Lat, 'f', -1, 64) + "," + strconv.FormatFloat(loc.Lon, 'f', -1, 64)
		}
		fmt.Fprintf(e.stdout, "%s\tnetwork=%s\tcountry=%s\tcontinent=%s\tlatlon=%s\n", a, network, dash(loc.Country), dash(loc.Continent), coords)
	}
	return code
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
