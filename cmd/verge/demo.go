package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vergecdn/verge/dnsredirect/geo"
	listenpkg "github.com/vergecdn/verge/edge/listen"
)

// The demo topology: every node on its own loopback address, so an edge and
// a hub can both use port 8080 as they would on their own hosts.
const (
	demoHost     = "www.demo.test"
	demoZone     = "demo.test"
	demoOrigin   = "127.0.20.1"
	demoScrubber = "127.0.30.1"
	demoDNS      = "127.0.40.1"
	demoManage   = "127.0.50.1"
)

// demoNode is one node of the demo topology.
type demoNode struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Region string `json:"region,omitempty"`
	IP     string `json:"ip"`
	HTTP   string `json:"http,omitempty"`
	HTTPS  string `json:"https,omitempty"`
	DNS    string `json:"dns,omitempty"`
	Admin  string `json:"admin"`
	Config string `json:"config"`
}

type demoRegion struct {
	name     string
	lat, lon float64
	hub      string // hub IP
	edges    []string
}

var demoRegions = []demoRegion{
	{name: "eu", lat: 50.11, lon: 8.68, hub: "127.0.10.1", edges: []string{"127.0.1.1", "127.0.1.2"}},
	{name: "us", lat: 39.04, lon: -77.49, hub: "127.0.10.2", edges: []string{"127.0.2.1", "127.0.2.2"}},
}

// demoGeoCSV maps client networks to places: loopback and 10.1/16 are in
// Germany (eu), 10.2/16 in the United States (us); the compose networks
// (deploy/) are 172.28.1/24 (eu) and 172.28.2/24 (us).
const demoGeoCSV = `cidr,country,continent,lat,lon
127.0.0.0/8,DE,EU,50.11,8.68
10.1.0.0/16,DE,EU,50.11,8.68
10.2.0.0/16,US,NA,39.04,-77.49
172.28.1.0/24,DE,EU,50.11,8.68
172.28.2.0/24,US,NA,39.04,-77.49
`

// runDemo is "verge demo": the whole CDN on loopback in one process, each
// node run by its own subcommand's code from a generated config file.
func runDemo(ctx context.Context, e env) int {
	fs := newFlags("demo", e)
	dataDir := fs.String("data", "data/demo", "data `directory` for configs, the sample site, TLS files and topology.json")
	logLevel := fs.String("log-level", "warn", "log `level` of the nodes: debug, info, warn, error")
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	if _, err := newLogger(e, *logLevel); err != nil {
		fmt.Fprintf(e.stderr, "verge demo: %v\n", err)
		return exitUsage
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge demo: %v\n", err)
		return exitUsage
	}
	start := time.Now()
	nodes, err := prepareDemo(dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge demo: %v\n", err)
		return exitFailure
	}
	for _, n := range nodes {
		for _, a := range []string{n.HTTP, n.Admin} {
			if a == "" {
				continue
			}
			if ln, err := net.Listen("tcp", a); err != nil {
				fmt.Fprintf(e.stderr, "verge demo: %s needs %s: %v (is another demo running?)\n", n.Name, a, err)
				return exitFailure
			} else {
				ln.Close()
			}
		}
	}

	d, err := startDemo(ctx, nodes, *logLevel, e.stderr)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge demo: %v\n", err)
		return exitFailure
	}
	topo, lines := demoTopology(dir, nodes)
	if err := writeJSON(filepath.Join(dir, "topology.json"), topo); err != nil {
		fmt.Fprintf(e.stderr, "verge demo: %v\n", err)
	}
	printDemo(e.stdout, dir, nodes, lines, time.Since(start))

	<-d.ctx.Done()
	fmt.Fprintln(e.stdout, "\nverge demo: stopping...")
	if failures := d.wait(); len(failures) > 0 {
		fmt.Fprintf(e.stderr, "verge demo: %s\n", strings.Join(failures, "; "))
		return exitFailure
	}
	fmt.Fprintln(e.stdout, "verge demo: stopped")
	return exitOK
}

// demo is a running topology: every node's subcommand in a goroutine.
type demo struct {
	ctx    context.Context // cancelled when the demo stops or a node fails
	cancel context.CancelFunc
	wg     sync.WaitGroup // every node but management
	mu     sync.Mutex     // guards stops, last and failures
	stops  map[string]context.CancelFunc
	failed []string
	// Management stops after the others, so their last reports reach it.
	lastWG sync.WaitGroup
	last   []context.CancelFunc
}

// startDemo runs every node with its subcommand's own code and config file,
// and returns once each answers /healthz.
func startDemo(parent context.Context, nodes []demoNode, logLevel string, stderr io.Writer) (*demo, error) {
	d := &demo{stops: map[string]context.CancelFunc{}}
	d.ctx, d.cancel = context.WithCancel(parent)
	// Management first: the others report to it and catch up on purges from it.
	var first, rest []demoNode
	for _, n := range nodes {
		if n.Role == "manage" {
			first = append(first, n)
		} else {
			rest = append(rest, n)
		}
	}
	for _, wave := range [][]demoNode{first, rest} {
		for _, n := range wave {
			d.start(n, logLevel, stderr)
		}
		if err := waitReady(d.ctx, wave, 30*time.Second); err != nil {
			d.wait()
			return nil, err
		}
	}
	return d, nil
}

// start runs one node until the demo stops or d.stop(n.Name).
func (d *demo) start(n demoNode, logLevel string, stderr io.Writer) {
	run := demoRunner(n.Role)
	w := &prefixWriter{prefix: "[" + n.Name + "] ", w: stderr}
	base, wg := d.ctx, &d.wg
	if n.Role == "manage" {
		base, wg = context.WithoutCancel(d.ctx), &d.lastWG // wait stops it last
	}
	nctx, stop := context.WithCancel(base)
	d.mu.Lock()
	d.stops[n.Name] = stop
	if n.Role == "manage" {
		d.last = append(d.last, stop)
	}
	d.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		code := run(nctx, env{args: []string{"-config", n.Config, "-log-level", logLevel}, stdout: w, stderr: w})
		if code != exitOK {
			d.mu.Lock()
			d.failed = append(d.failed, fmt.Sprintf("%s exited %d", n.Name, code))
			d.mu.Unlock()
			d.cancel()
		}
	}()
}

// stop stops one node (as a crash would, for tests of failover).
func (d *demo) stop(name string) {
	d.mu.Lock()
	stop := d.stops[name]
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// wait stops every node, management last, and returns the failures.
func (d *demo) wait() []string {
	d.cancel()
	d.wg.Wait()
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	for _, stop := range last {
		stop()
	}
	d.lastWG.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

func demoRunner(role string) func(context.Context, env) int {
	switch role {
	case "origin":
		return runOrigin
	case "hub":
		return runHub
	case "edge":
		return runEdge
	case "scrubber":
		return runScrubber
	case "dns":
		return runDNS
	case "manage":
		return runManage
	}
	panic("demo: unknown role " + role)
}

// waitReady polls every node's /healthz until each answers 200.
func waitReady(ctx context.Context, nodes []demoNode, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for _, n := range nodes {
		for {
			res, err := client.Get("http://" + n.Admin + "/healthz")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
			}
			if ctx.Err() != nil {
				return fmt.Errorf("stopped while waiting for %s", n.Name)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not become healthy at http://%s/healthz within %s", n.Name, n.Admin, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// prepareDemo writes the sample site, the geo database, TLS files, the
// cluster token and every node's config under dir, and returns the nodes in
// start order.
func prepareDemo(dir string) ([]demoNode, error) {
	for _, d := range []string{"configs", "site/static", "site/video", "tls"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeSampleSite(filepath.Join(dir, "site")); err != nil {
		return nil, fmt.Errorf("sample site: %w", err)
	}
	nets, err := geo.ParseCSV("demo geo.csv", strings.NewReader(demoGeoCSV))
	if err != nil {
		return nil, err
	}
	os.WriteFile(filepath.Join(dir, "geo.csv"), []byte(demoGeoCSV), 0o644)
	var mmdb bytes.Buffer
	if _, err := geo.WriteMMDB(&mmdb, "demo geo.csv", nets); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "geo.mmdb"), mmdb.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if _, err := readOrCreateToken(filepath.Join(dir, "token")); err != nil {
		return nil, err
	}
	if _, err := readOrCreateToken(filepath.Join(dir, "operator.token")); err != nil {
		return nil, err
	}
	ca, err := listenpkg.LoadOrCreateCA(filepath.Join(dir, "tls/ca.pem"), filepath.Join(dir, "tls/ca.key"), "Verge demo CA")
	if err != nil {
		return nil, err
	}
	if err := ca.Issue(filepath.Join(dir, "tls/demo.pem"), filepath.Join(dir, "tls/demo.key"), demoHost, demoZone, "127.0.0.1"); err != nil {
		return nil, err
	}

	cfgPath := func(name string) string { return filepath.Join(dir, "configs", name+".yaml") }
	var nodes []demoNode
	add := func(n demoNode, body string) error {
		n.Config = cfgPath(n.Name)
		nodes = append(nodes, n)
		return os.WriteFile(n.Config, []byte(body), 0o644)
	}
	if err := add(demoNode{Name: "manage", Role: "manage", IP: demoManage, HTTP: demoManage + ":9300", Admin: demoManage + ":9301"},
		demoManageConfig(dir)); err != nil {
		return nil, err
	}
	if err := add(demoNode{Name: "origin", Role: "origin", IP: demoOrigin, HTTP: demoOrigin + ":8070", Admin: demoOrigin + ":9070"},
		demoOriginConfig(dir)); err != nil {
		return nil, err
	}
	for _, r := range demoRegions {
		n := demoNode{Name: "hub-" + r.name, Role: "hub", Region: r.name, IP: r.hub, HTTP: r.hub + ":8080", Admin: r.hub + ":9080"}
		if err := add(n, demoCacheConfig(dir, n, nil)); err != nil {
			return nil, err
		}
	}
	for _, r := range demoRegions {
		for i, ip := range r.edges {
			n := demoNode{Name: fmt.Sprintf("edge-%s-%d", r.name, i+1), Role: "edge", Region: r.name, IP: ip,
				HTTP: ip + ":8080", HTTPS: ip + ":8443", Admin: ip + ":9080"}
			if err := add(n, demoCacheConfig(dir, n, &r)); err != nil {
				return nil, err
			}
		}
	}
	if err := add(demoNode{Name: "scrubber", Role: "scrubber", IP: demoScrubber, HTTP: demoScrubber + ":8080", Admin: demoScrubber + ":9080"},
		demoScrubberConfig(dir)); err != nil {
		return nil, err
	}
	if err := add(demoNode{Name: "dns", Role: "dns", IP: demoDNS, DNS: demoDNS + ":5300", Admin: demoDNS + ":9153"},
		demoDNSConfig(dir)); err != nil {
		return nil, err
	}
	return nodes, nil
}

func demoManageConfig(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The demo's management: reports, usage, alerts, the dashboard and the operator API.\n")
	fmt.Fprintf(&b, "listen: {api: \"%s:9300\", admin: \"%s:9301\"}\n", demoManage, demoManage)
	fmt.Fprintf(&b, "database: %s\npurge_log_dir: %s\n", filepath.Join(dir, "manage.db"), filepath.Join(dir, "purgelog/manage"))
	fmt.Fprintf(&b, "operator_token_file: %s\ncluster_token_file: %s\n", filepath.Join(dir, "operator.token"), filepath.Join(dir, "token"))
	fmt.Fprintf(&b, "node_timeout: 10s\npurge: {timeout: 10s}\nnodes:\n")
	for _, r := range demoRegions {
		fmt.Fprintf(&b, "  - {name: hub-%s, role: hub, region: %s, admin_url: \"http://%s:9080\"}\n", r.name, r.name, r.hub)
		for i, ip := range r.edges {
			fmt.Fprintf(&b, "  - {name: edge-%s-%d, role: edge, region: %s, admin_url: \"http://%s:9080\"}\n", r.name, i+1, r.name, ip)
		}
	}
	return b.String()
}

// demoReport is the report: section every demo node carries.
func demoReport(dir string) string {
	return fmt.Sprintf("report: {url: \"http://%s:9300\", token_file: %s, interval: 2s}\n", demoManage, filepath.Join(dir, "token"))
}

func demoOriginConfig(dir string) string {
	return fmt.Sprintf(`# The demo's origin: the sample site, with caching rules per path.
listen: %s:8070
admin_listen: %s:9070
root: %s
not_found_cache_control: "public, max-age=10"
rules:
  - prefix: /static/
    cache_control: "public, max-age=31536000, immutable"
    surrogate_keys: [static]
  - prefix: /video/
    cache_control: "public, max-age=86400"
    surrogate_keys: [video]
  - glob: "*.html"
    cache_control: "public, max-age=60, stale-while-revalidate=30"
    surrogate_keys: [html]
  - prefix: /
    cache_control: "public, max-age=300"
`, demoOrigin, demoOrigin, filepath.Join(dir, "site"))
}

// demoCacheConfig is a hub's config (r == nil) or an edge's, whose parents
// are its region's hub.
func demoCacheConfig(dir string, n demoNode, r *demoRegion) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The demo's %s %s.\nnode: {name: %s, region: %s}\n", n.Region, n.Role, n.Name, n.Region)
	fmt.Fprintf(&b, "listen:\n  http: %s\n  admin: %s\n", n.HTTP, n.Admin)
	if n.HTTPS != "" {
		fmt.Fprintf(&b, "  https: %s\n", n.HTTPS)
	}
	fmt.Fprintf(&b, "cluster_token_file: %s\n", filepath.Join(dir, "token"))
	fmt.Fprintf(&b, "cache:\n  ram_bytes: 128MiB\n  disk: {dir: %s, bytes: 1GiB, max_object_bytes: 256MiB}\n", filepath.Join(dir, "cache", n.Name))
	b.WriteString(demoReport(dir))
	b.WriteString("runtime: {memory_limit: \"off\"}   # several nodes share this process\n")
	fmt.Fprintf(&b, "purge_log: {dir: %s, peers: [\"http://%s:9300\"], retry: 200ms}\n", filepath.Join(dir, "purgelog", n.Name), demoManage)
	if r != nil {
		fmt.Fprintf(&b, "parents:\n  region: %s\n  hubs:\n    - {name: hub-%s, url: \"http://%s:8080\", health_url: \"http://%s:9080\", region: %s}\n",
			r.name, r.name, r.hub, r.hub, r.name)
		fmt.Fprintf(&b, "  health: {interval: 1s, timeout: 500ms, rise: 2, fall: 2}\n")
		fmt.Fprintf(&b, "scrubber:\n  enabled: true\n  limits:\n    per_ip: {rate: 200, burst: 400}\n    per_prefix: {rate: 2000, burst: 4000}\n")
	}
	fmt.Fprintf(&b, "properties:\n  - name: demo\n    hosts: [%s, %s]\n    origin: http://%s:8070\n", demoHost, demoZone, demoOrigin)
	if n.HTTPS != "" {
		fmt.Fprintf(&b, "    tls: {cert_file: %s, key_file: %s}\n", filepath.Join(dir, "tls/demo.pem"), filepath.Join(dir, "tls/demo.key"))
	}
	return b.String()
}

func demoScrubberConfig(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The demo's scrubber, in front of every edge; DNS sends an attacked edge's clients here.\n")
	fmt.Fprintf(&b, "node: {name: scrubber}\nlisten: %s:8080\nadmin: %s:9080\n", demoScrubber, demoScrubber)
	b.WriteString(demoReport(dir))
	fmt.Fprintf(&b, "attack:\n  report: {url: \"http://%s:9300/api/v1/attacks\", token_file: %s, node: scrubber}\n", demoManage, filepath.Join(dir, "token"))
	fmt.Fprintf(&b, "upstream:\n  policy: least_conn\n  backends:\n")
	for _, r := range demoRegions {
		for _, ip := range r.edges {
			fmt.Fprintf(&b, "    - {url: \"http://%s:8080\", health_url: \"http://%s:9080\"}\n", ip, ip)
		}
	}
	fmt.Fprintf(&b, "  health: {path: /healthz, interval: 2s}\n")
	fmt.Fprintf(&b, "lists: {allow: []}\n")
	return b.String()
}

func demoDNSConfig(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The demo's GeoDNS: %s answered with the nearest region's healthy edges.\n", demoZone)
	fmt.Fprintf(&b, "node: {name: dns}\nlisten: %s:5300\nadmin: %s:9153\nmmdb: %s\nttl: 30s\nanswers: 2\n", demoDNS, demoDNS, filepath.Join(dir, "geo.mmdb"))
	b.WriteString(demoReport(dir))
	fmt.Fprintf(&b, "zones:\n  - name: %s\n    ns: [ns1]\n    hosts: [www, \"@\"]\n    records:\n      - \"ns1 A %s\"\n", demoZone, demoDNS)
	fmt.Fprintf(&b, "sites:\n")
	for _, r := range demoRegions {
		fmt.Fprintf(&b, "  - name: %s\n    lat: %g\n    lon: %g\n    scrubber: {ipv4: %s}\n    edges:\n", r.name, r.lat, r.lon, demoScrubber)
		for i, ip := range r.edges {
			fmt.Fprintf(&b, "      - {name: edge-%s-%d, ipv4: %s, probe: \"http://%s:9080\"}\n", r.name, i+1, ip, ip)
		}
	}
	fmt.Fprintf(&b, "health: {enabled: true, path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 2}\n")
	return b.String()
}

// demoTopology is topology.json: every address and the lines to try.
func demoTopology(dir string, nodes []demoNode) (map[string]any, []string) {
	first := demoRegions[0].edges[0]
	lines := []string{
		fmt.Sprintf("dig @%s -p 5300 %s +short", demoDNS, demoHost),
		fmt.Sprintf("dig @%s -p 5300 %s +short +subnet=10.2.0.0/16     # a client in the us region", demoDNS, demoHost),
		fmt.Sprintf("curl -i --resolve %s:8080:%s http://%s:8080/", demoHost, first, demoHost),
		fmt.Sprintf("curl -i --resolve %s:8080:%s http://%s:8080/       # again: a hit", demoHost, first, demoHost),
		fmt.Sprintf("curl -s -o /dev/null -D - -r 0-99 --resolve %s:8080:%s http://%s:8080/video/big.bin", demoHost, first, demoHost),
		fmt.Sprintf("curl -i --cacert %s --resolve %s:8443:%s https://%s:8443/", filepath.Join(dir, "tls/ca.pem"), demoHost, first, demoHost),
		fmt.Sprintf("export VERGE_MANAGE_URL=http://%s:9300 VERGE_TOKEN_FILE=%s", demoManage, filepath.Join(dir, "operator.token")),
		"go run ./cmd/verge purge -tag html          # every hub and edge acks",
		"go run ./cmd/verge status",
		fmt.Sprintf("open http://%s:9300/#token=%s    # the dashboard", demoManage, strings.TrimSpace(readFile(filepath.Join(dir, "operator.token")))),
	}
	return map[string]any{
		"host":       demoHost,
		"nodes":      nodes,
		"ca":         filepath.Join(dir, "tls/ca.pem"),
		"token_file": filepath.Join(dir, "token"),
		"try":        lines,
	}, lines
}

func printDemo(w io.Writer, dir string, nodes []demoNode, lines []string, took time.Duration) {
	fmt.Fprintf(w, "Verge demo is up (%s). Data in %s\n\n", took.Round(time.Millisecond), dir)
	fmt.Fprintf(w, "%-10s %-9s %-7s %-34s %-16s %s\n", "node", "role", "region", "serves", "tls + http/3", "admin")
	for _, n := range nodes {
		serves := n.HTTP
		switch n.Role {
		case "dns":
			serves = n.DNS + " (udp, tcp)"
		case "manage":
			serves = n.HTTP + " (api, dashboard)"
		}
		fmt.Fprintf(w, "%-10s %-9s %-7s %-34s %-16s %s\n", n.Name, n.Role, dash(n.Region), serves, dash(n.HTTPS), n.Admin)
	}
	fmt.Fprintf(w, "\nTry:\n")
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
	fmt.Fprintf(w, "\nEverything above is in %s. Ctrl-C stops the demo.\n", filepath.Join(dir, "topology.json"))
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func readOrCreateToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) >= 16 {
		return string(bytes.TrimSpace(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var b [24]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	return tok, os.WriteFile(path, []byte(tok+"\n"), 0o600)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeSampleSite writes the demo site unless it is there already: an HTML
// page with images and CSS, and a large file for range requests.
func writeSampleSite(root string) error {
	files := map[string][]byte{
		"index.html": []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verge demo</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><header><img src="/static/logo.svg" alt="Verge" width="64" height="64"><h1>Served by Verge</h1></header>
<p>This page came through an edge, its region's hub and the origin. Look at the
<code>Cache-Status</code> response header to see where each hit happened.</p>
<img src="/static/gradient.png" alt="a gradient" width="256" height="256">
<p><a href="/video/big.bin">A 32 MiB file</a> for range requests.</p>
</body></html>
`),
		"static/style.css": []byte("body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;color:#222}\nheader{display:flex;gap:1rem;align-items:center}\ncode{background:#eee;padding:0 .2em}\n"),
		"static/logo.svg":  []byte(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="30" fill="#2b6cb0"/><path d="M16 20 L32 46 L48 20" stroke="#fff" stroke-width="6" fill="none"/></svg>` + "\n"),
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return err
		}
	}
	if p := filepath.Join(root, "static/gradient.png"); !exists(p) {
		img := image.NewRGBA(image.Rect(0, 0, 256, 256))
		for y := 0; y < 256; y++ {
			for x := 0; x < 256; x++ {
				img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
			}
		}
		var buf bytes.Buffer
		png.Encode(&buf, img)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if p := filepath.Join(root, "video/big.bin"); !exists(p) {
		f, err := os.Create(p + ".tmp")
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for i := 0; i < 32<<20; i += 16 {
			fmt.Fprintf(w, "%015x\n", i) // every line names its own offset
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			return err
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// prefixWriter prefixes every line with the node's name.
type prefixWriter struct {
	mu     sync.Mutex // guards buf and the writes to w
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
