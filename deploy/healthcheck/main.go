// Command healthcheck is the container health probe of the verge image.
//
//	healthcheck [-timeout 2s] URL...
//
// It GETs each URL and exits 0 when every one answers 200, 1 when one does
// not (printing why), and 2 on bad arguments. The image is built FROM
// scratch, so it has no shell and no curl: compose health checks run this.
// Kubernetes probes the same /healthz URLs with its own httpGet probes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "bound on each request")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: healthcheck [-timeout D] URL...   (exit 0 when every URL answers 200)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || *timeout <= 0 {
		fs.Usage()
		return 2
	}
	for _, raw := range fs.Args() {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(stderr, "healthcheck: want an absolute http(s) URL, got %q\n", raw)
			return 2
		}
	}
	// No proxy from the environment: the probe is about this container.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: *timeout}
	for _, u := range fs.Args() {
		if err := check(client, u, *timeout); err != nil {
			fmt.Fprintf(stdout, "unhealthy: %v\n", err)
			return 1
		}
	}
	return 0
}

func check(client *http.Client, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", u, res.Status, trim(body))
	}
	return nil
}

func trim(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}
