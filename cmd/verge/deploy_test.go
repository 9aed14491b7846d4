package main

// Tests of deploy/: every node config of the compose topology and of the
// Kubernetes manifests loads with its subcommand's own config type, and the
// cross-references between nodes (addresses, ports, tokens, volumes, the
// hub ring, DNS sites, the geo database) agree. The compose smoke test
// (deploy/smoke.sh) runs the same files for real where a Docker engine is.

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/dnsredirect/geo"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management"
	"github.com/vergecdn/verge/origin"
)

const deployDir = "../../deploy"

// nodeConfig is what the deploy tests need of one node's config, loaded
// with the type its subcommand loads.
type nodeConfig struct {
	cmd     string
	listens map[string]string // listener role (http, https, admin, api, dns) -> address
	calls   []nodeCall        // URLs the node sends requests to
	reads   []string          // files it reads: tokens, the mmdb
	writes  []string          // directories it writes: purge logs, the database, content

	cache   *cacheFile
	dns     *dnsredirect.Config
	dnsFile *dnsFile
	manage  *management.Config
	scrub   *scrubberConfig
	origin  *origin.Config
}

// identity is the name and region a node reports to management with ("" for
// a name: the host name).
func (n *nodeConfig) identity() (name, region string) {
	region = "default"
	switch {
	case n.cache != nil:
		name, region = n.cache.Node.Name, n.cache.Node.Region
	case n.scrub != nil:
		name = n.scrub.Node.Name
		if n.scrub.Node.Region != "" {
			region = n.scrub.Node.Region
		}
	case n.dnsFile != nil:
		name = n.dnsFile.Node.Name
		if n.dnsFile.Node.Region != "" {
			region = n.dnsFile.Node.Region
		}
	}
	return name, region
}

// reports says whether the node reports to management.
func (n *nodeConfig) reports() bool {
	switch {
	case n.cache != nil:
		return n.cache.Report.URL != ""
	case n.scrub != nil:
		return n.scrub.Report.URL != ""
	case n.dnsFile != nil:
		return n.dnsFile.Report.URL != ""
	}
	return false
}

// nodeCall is a URL a node calls and the listener roles it must reach.
type nodeCall struct {
	key  string
	url  string
	want []string
}

// loadNode loads data as the config of "verge cmd" and applies the
// listener and name flags in args (as the subcommand does).
func loadNode(name, cmd string, data []byte, args []string) (*nodeConfig, error) {
	n := &nodeConfig{cmd: cmd, listens: map[string]string{}}
	flags := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			flags[strings.TrimLeft(args[i], "-")] = args[i+1]
			i++
		}
	}
	over := func(dst *string, flag string) {
		if v, ok := flags[flag]; ok {
			*dst = v
		}
	}
	call := func(key, u string, want ...string) {
		if u != "" {
			n.calls = append(n.calls, nodeCall{key, u, want})
		}
	}
	read := func(p string) {
		if p != "" {
			n.reads = append(n.reads, p)
		}
	}
	switch cmd {
	case "edge", "hub":
		f := defaultCacheFile()
		f.Role = edge.Role(cmd)
		if err := configs.LoadBytes(name, data, &f); err != nil {
			return nil, err
		}
		over(&f.Listen.HTTP, "listen")
		over(&f.Listen.Admin, "admin")
		over(&f.Node.Name, "name")
		n.cache = &f
		n.listens["http"], n.listens["admin"] = f.Listen.HTTP, f.Listen.Admin
		if f.Listen.HTTPS != "" {
			n.listens["https"] = f.Listen.HTTPS
		}
		for i, h := range f.Parents.Hubs {
			k := configs.Index("parents.hubs", i)
			call(k+".url", h.URL, "http")
			call(k+".health_url", h.HealthURL, "admin")
		}
		call("parents.origin", f.Parents.Origin, "http")
		call("upstream", f.Upstream, "http")
		for i, p := range f.Properties {
			call(configs.Index("properties", i)+".origin", p.Origin, "http")
		}
		for i, p := range f.PurgeLog.Peers {
			call(configs.Index("purge_log.peers", i), p, "admin", "api")
		}
		call("report.url", f.Report.URL, "api")
		read(f.ClusterTokenFile)
		read(f.Report.TokenFile)
		if f.PurgeLog.Dir != "" {
			n.writes = append(n.writes, f.PurgeLog.Dir)
		}
	case "origin":
		c := origin.DefaultConfig()
		if err := configs.LoadBytes(name, data, &c); err != nil {
			return nil, err
		}
		over(&c.Listen, "listen")
		over(&c.AdminListen, "admin")
		n.origin = &c
		n.listens["http"], n.listens["admin"] = c.Listen, c.AdminListen
		read(c.Upload.TokenFile)
		n.writes = append(n.writes, c.Root) // the upload API writes there
	case "scrubber":
		c := defaultScrubberConfig()
		if err := configs.LoadBytes(name, data, &c); err != nil {
			return nil, err
		}
		over(&c.Listen, "listen")
		over(&c.Admin, "admin")
		n.scrub = &c
		n.listens["http"], n.listens["admin"] = c.Listen, c.Admin
		for i, b := range c.Upstream.Backends {
			k := configs.Index("upstream.backends", i)
			call(k+".url", b.URL, "http")
			call(k+".health_url", b.HealthURL, "admin")
		}
		call("attack.report.url", c.Attack.Report.URL, "api")
		call("report.url", c.Report.URL, "api")
		read(c.Attack.Report.TokenFile)
		read(c.Report.TokenFile)
		read(c.Lists.File)
	case "dns":
		f := dnsFile{Config: dnsredirect.DefaultConfig(), Report: defaultReportConfig()}
		if err := configs.LoadBytes(name, data, &f); err != nil {
			return nil, err
		}
		c := f.Config
		n.dns, n.dnsFile = &c, &f
		n.listens["dns"], n.listens["admin"] = c.Listen, c.Admin
		call("report.url", f.Report.URL, "api")
		read(f.Report.TokenFile)
		for i, s := range c.Sites {
			for j, e := range s.Edges {
				call(configs.Index(configs.Index("sites", i)+".edges", j)+".probe", e.Probe, "admin")
			}
		}
		read(c.MMDB)
	case "manage":
		c := management.DefaultConfig()
		if err := configs.LoadBytes(name, data, &c); err != nil {
			return nil, err
		}
		over(&c.Listen.API, "listen")
		over(&c.Listen.Admin, "admin")
		n.manage = &c
		n.listens["api"], n.listens["admin"] = c.Listen.API, c.Listen.Admin
		for i, nd := range c.Nodes {
			call(configs.Index("nodes", i)+".admin_url", nd.AdminURL, "admin")
		}
		read(c.OperatorTokenFile)
		read(c.ClusterTokenFile)
		read(c.Alerts.Webhook.TokenFile)
		n.writes = append(n.writes, path.Dir(c.Database), c.PurgeLogDir)
	default:
		return nil, fmt.Errorf("%s: no config type for subcommand %q", name, cmd)
	}
	return n, nil
}

// hostPort splits a URL's host and port (default 80/443).
func hostPort(raw string) (string, int, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", 0, fmt.Errorf("not an absolute http(s) URL: %q", raw)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.Atoi(port)
	return u.Hostname(), p, err
}

func addrPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	return h, n, err
}

func wildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

// under reports whether file p lies in directory dir.
func under(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// ---- the compose topology

type composeFile struct {
	Version  string                    `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image     string          `yaml:"image"`
	Command   []string        `yaml:"command"`
	ReadOnly  bool            `yaml:"read_only"`
	Volumes   []string        `yaml:"volumes"`
	Networks  composeNetworks `yaml:"networks"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// composeNetworks is a service's networks: a list of names, or a map of
// names to settings (the fixed address).
type composeNetworks map[string]struct {
	IPv4 string `yaml:"ipv4_address"`
}

func (c *composeNetworks) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		*c = composeNetworks{}
		for _, name := range names {
			(*c)[name] = struct {
				IPv4 string `yaml:"ipv4_address"`
			}{}
		}
		return nil
	}
	var m map[string]struct {
		IPv4 string `yaml:"ipv4_address"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	*c = m
	return nil
}

// composeNode is a running service of the compose file.
type composeNode struct {
	name string
	svc  composeService
	cfg  *nodeConfig
	ips  map[string]string // network -> address
}

// mount is one volume line: host side (a path or a named volume), where it
// is in the container, and whether it is read-only.
type mount struct {
	src, dst string
	ro       bool
}

func parseMount(v string) mount {
	v = strings.ReplaceAll(v, "${VERGE_RUN_DIR:-./run}", "./run")
	parts := strings.Split(v, ":")
	m := mount{src: parts[0], dst: parts[1]}
	m.ro = len(parts) > 2 && parts[2] == "ro"
	return m
}

func (n composeNode) mounts() []mount {
	var ms []mount
	for _, v := range n.svc.Volumes {
		ms = append(ms, parseMount(v))
	}
	return ms
}

// mountOf returns the mount a container path is on (the deepest one).
func mountOf(ms []mount, p string) (mount, bool) {
	var best mount
	found := false
	for _, m := range ms {
		if (p == m.dst || under(p, m.dst)) && (!found || len(m.dst) > len(best.dst)) {
			best, found = m, true
		}
	}
	return best, found
}

// composeSrc resolves a bind mount's host path (compose resolves it from
// the file's folder; ${VERGE_RUN_DIR:-./run} is the run directory).
func composeSrc(src string) string {
	return filepath.Join(deployDir, "compose", src)
}

func loadCompose(t *testing.T) (composeFile, map[string]*composeNode) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "compose/docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	nodes := map[string]*composeNode{}
	for name, svc := range cf.Services {
		n := &composeNode{name: name, svc: svc, ips: map[string]string{}}
		for net, a := range svc.Networks {
			n.ips[net] = a.IPv4
		}
		nodes[name] = n
		if len(svc.Command) == 0 {
			t.Errorf("service %s: no command", name)
			continue
		}
		if svc.Command[0] == "mmdb" {
			continue
		}
		i := slices.Index(svc.Command, "-config")
		if i < 0 || i+1 >= len(svc.Command) {
			t.Errorf("service %s: command %q has no -config FILE", name, svc.Command)
			continue
		}
		m, ok := mountOf(n.mounts(), svc.Command[i+1])
		if !ok || m.dst != svc.Command[i+1] || !m.ro {
			t.Errorf("service %s: -config %s is not a read-only file mount", name, svc.Command[i+1])
			continue
		}
		file := composeSrc(m.src)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		cfg, err := loadNode(filepath.Base(file), svc.Command[0], data, svc.Command[i+2:])
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		n.cfg = cfg
	}
	return cf, nodes
}

func TestComposeTopology(t *testing.T) {
	cf, nodes := loadCompose(t)
	if t.Failed() {
		t.FailNow()
	}
	if cf.Version != "2.4" {
		t.Errorf("version %q: want \"2.4\" (Debian's docker-compose 1.29 and Compose v2 both read it)", cf.Version)
	}
	want := []string{"origin", "manage", "hub-eu", "hub-us", "edge-eu-1", "edge-eu-2", "edge-us-1", "edge-us-2", "scrubber", "dns", "geo"}
	for _, w := range want {
		if nodes[w] == nil {
			t.Errorf("no service %s", w)
		}
	}
	if len(nodes) != len(want) {
		t.Errorf("%d services, want %d (%v)", len(nodes), len(want), want)
	}

	// Networks: the region networks are the ones the demo geo rows place.
	subnets := map[string]netip.Prefix{}
	for name, nw := range cf.Networks {
		if len(nw.IPAM.Config) != 1 {
			t.Errorf("network %s: want one fixed subnet", name)
			continue
		}
		p, err := netip.ParsePrefix(nw.IPAM.Config[0].Subnet)
		if err != nil {
			t.Errorf("network %s: %v", name, err)
		}
		subnets[name] = p
	}
	for _, n := range nodes {
		for net, ip := range n.ips {
			if ip == "" && n.name == "geo" {
				continue // the one-shot job needs no fixed address
			}
			a, err := netip.ParseAddr(ip)
			if err != nil || !subnets[net].Contains(a) {
				t.Errorf("service %s: address %q is not in network %s (%s)", n.name, ip, net, subnets[net])
			}
		}
	}
	used := map[string]string{}
	for _, n := range nodes {
		for _, ip := range n.ips {
			if ip == "" {
				continue
			}
			if other, ok := used[ip]; ok {
				t.Errorf("address %s used by %s and %s", ip, other, n.name)
			}
			used[ip] = n.name
		}
	}

	// Every listener is on one of the node's addresses; health checks GET
	// the admin listener's /healthz; every file a node reads is mounted
	// read-only and every directory it writes is on a writable volume.
	for _, n := range nodes {
		if n.cfg == nil {
			continue
		}
		for role, addr := range n.cfg.listens {
			h, _, err := addrPort(addr)
			if err != nil {
				t.Errorf("%s: listener %s %q: %v", n.name, role, addr, err)
				continue
			}
			if !wildcard(h) && !slices.Contains(mapValues(n.ips), h) {
				t.Errorf("%s: listener %s %s is not on the node's addresses %v", n.name, role, addr, n.ips)
			}
		}
		hc := n.svc.Healthcheck.Test
		wantHC := "http://" + n.cfg.listens["admin"] + "/healthz"
		if len(hc) != 3 || hc[0] != "CMD" || hc[1] != "/usr/local/bin/healthcheck" || hc[2] != wantHC {
			t.Errorf("%s: healthcheck %q, want [CMD /usr/local/bin/healthcheck %s]", n.name, hc, wantHC)
		}
		for _, f := range n.cfg.reads {
			m, ok := mountOf(n.mounts(), f)
			if !ok || !m.ro {
				t.Errorf("%s: reads %s, which is not on a read-only mount", n.name, f)
			}
		}
		for _, d := range n.cfg.writes {
			m, ok := mountOf(n.mounts(), d)
			if !ok || m.ro {
				t.Errorf("%s: writes in %s, which is not on a writable mount (the root file system is read-only)", n.name, d)
			}
		}
		if !n.svc.ReadOnly {
			t.Errorf("%s: want read_only: true", n.name)
		}
	}

	// Every URL a node calls reaches a listener of the right kind on a
	// network the two share.
	for _, n := range nodes {
		if n.cfg == nil {
			continue
		}
		for _, c := range n.cfg.calls {
			if _, err := composeResolve(nodes, n, c); err != nil {
				t.Errorf("%s: %s %s: %v", n.name, c.key, c.url, err)
			}
		}
	}

	// The hub ring: each edge's parents are exactly its region's hubs, by
	// the names those hubs give themselves; peers are its hub, then management.
	hubsOf := map[string][]string{}
	for _, n := range nodes {
		if n.cfg != nil && n.cfg.cmd == "hub" {
			hubsOf[n.cfg.cache.Node.Region] = append(hubsOf[n.cfg.cache.Node.Region], n.cfg.cache.Node.Name)
		}
	}
	cacheNodes := 0
	for _, n := range nodes {
		if n.cfg == nil || n.cfg.cache == nil {
			continue
		}
		cacheNodes++
		c := n.cfg.cache
		if c.Node.Name != n.name {
			t.Errorf("%s: node.name %q, want the service name", n.name, c.Node.Name)
		}
		if c.ClusterTokenFile == "" || c.PurgeLog.Dir == "" || c.Report.URL == "" {
			t.Errorf("%s: want cluster_token_file, purge_log.dir and report.url", n.name)
		}
		if n.cfg.cmd != "edge" {
			continue
		}
		var names []string
		for i, h := range c.Parents.Hubs {
			names = append(names, h.Name)
			target, err := composeResolve(nodes, n, nodeCall{url: h.URL, want: []string{"http"}})
			if err == nil && (target.cfg.cmd != "hub" || target.cfg.cache.Node.Name != h.Name || h.Region != c.Node.Region) {
				t.Errorf("%s: parents.hubs[%d] %s (%s) is not the %s hub of that name", n.name, i, h.Name, h.URL, c.Node.Region)
			}
		}
		slices.Sort(names)
		wantHubs := slices.Sorted(slices.Values(hubsOf[c.Node.Region]))
		if !slices.Equal(names, wantHubs) {
			t.Errorf("%s: parents %v, want the %s hubs %v", n.name, names, c.Node.Region, wantHubs)
		}
		if c.Parents.Region != c.Node.Region || !c.Parents.OriginFallback {
			t.Errorf("%s: parents.region %q (node %q), origin_fallback %v", n.name, c.Parents.Region, c.Node.Region, c.Parents.OriginFallback)
		}
		if len(c.PurgeLog.Peers) != 2 {
			t.Errorf("%s: purge_log.peers %v: want its hub's admin listener, then management", n.name, c.PurgeLog.Peers)
		} else if target, err := composeResolve(nodes, n, nodeCall{url: c.PurgeLog.Peers[0], want: []string{"admin"}}); err == nil && target.cfg.cmd != "hub" {
			t.Errorf("%s: purge_log.peers[0] %s is %s, want its hub", n.name, c.PurgeLog.Peers[0], target.name)
		}
		if !c.Scrubber.Enabled {
			t.Errorf("%s: want the scrubber stages on", n.name)
		}
	}
	if cacheNodes != 6 {
		t.Errorf("%d edges and hubs, want 6", cacheNodes)
	}

	// Management lists every node that reports, by its name, role, region
	// and admin listener.
	mg := nodes["manage"].cfg.manage
	listed := map[string]bool{}
	for i, nd := range mg.Nodes {
		listed[nd.Name] = true
		target, err := composeResolve(nodes, nodes["manage"], nodeCall{url: nd.AdminURL, want: []string{"admin"}})
		if err != nil {
			continue // reported above
		}
		if name, region := target.cfg.identity(); name != nd.Name || target.cfg.cmd != nd.Role || region != nd.Region {
			t.Errorf("manage nodes[%d] %+v: %s is %s %s in region %s", i, nd, target.name, target.cfg.cmd, name, region)
		}
	}
	for _, n := range nodes {
		if n.cfg != nil && slices.Contains([]string{"edge", "hub", "scrubber", "dns"}, n.cfg.cmd) && !n.cfg.reports() {
			t.Errorf("%s: want a report: section (management's fleet view, alerts, loads for DNS)", n.name)
		}
		if n.cfg != nil && n.cfg.reports() && !listed[n.name] {
			t.Errorf("%s reports to management, which does not list it under nodes", n.name)
		}
	}

	// GeoDNS: each site is a region network; its edges are answered by
	// their address on it and probed on their admin listener; the geo rows
	// place the region's network at the site.
	d := nodes["dns"].cfg.dns
	rows, err := geoRows(filepath.Join(deployDir, "compose/geo.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range d.Sites {
		sub, ok := subnets[s.Name]
		if !ok {
			t.Errorf("dns sites[%d] %s: no network of that name", i, s.Name)
			continue
		}
		placed := false
		for _, r := range rows {
			if r.Prefix == sub && r.HasCoords && r.Lat == *s.Lat && r.Lon == *s.Lon {
				placed = true
			}
		}
		if !placed {
			t.Errorf("dns sites[%d] %s: geo.csv has no row placing %s at the site (%g, %g)", i, s.Name, sub, *s.Lat, *s.Lon)
		}
		if sc := nodes["scrubber"]; s.Scrubber.IPv4.String() != sc.ips[s.Name] {
			t.Errorf("dns sites[%d] %s: scrubber %s, want the scrubber's %s address %s", i, s.Name, s.Scrubber.IPv4, s.Name, sc.ips[s.Name])
		}
		var edges []string
		for j, e := range s.Edges {
			n := nodes[e.Name]
			if n == nil || n.cfg == nil || n.cfg.cmd != "edge" || n.cfg.cache.Node.Region != s.Name {
				t.Errorf("dns sites[%d].edges[%d] %s: not an edge of region %s", i, j, e.Name, s.Name)
				continue
			}
			edges = append(edges, e.Name)
			if e.IPv4.String() != n.ips[s.Name] {
				t.Errorf("dns sites[%d].edges[%d] %s: ipv4 %s, want its %s address %s", i, j, e.Name, e.IPv4, s.Name, n.ips[s.Name])
			}
			if target, err := composeResolve(nodes, nodes["dns"], nodeCall{url: e.Probe, want: []string{"admin"}}); err == nil && target != n {
				t.Errorf("dns sites[%d].edges[%d] %s: probe %s reaches %s", i, j, e.Name, e.Probe, target.name)
			}
		}
		var want []string
		for _, n := range nodes {
			if n.cfg != nil && n.cfg.cmd == "edge" && n.cfg.cache.Node.Region == s.Name {
				want = append(want, n.name)
			}
		}
		slices.Sort(edges)
		slices.Sort(want)
		if !slices.Equal(edges, want) {
			t.Errorf("dns site %s: edges %v, want %v", s.Name, edges, want)
		}
	}
	if !d.Health.Enabled {
		t.Error("dns: health probes off")
	}

	// Start order: a node starts once what it needs serves: hubs after
	// management (their purge log peer), edges after their hub, the
	// scrubber and DNS after the edges they send clients to.
	for _, n := range nodes {
		for dep, d := range n.svc.DependsOn {
			if nodes[dep] == nil {
				t.Errorf("%s: depends on %s, which is not a service", n.name, dep)
			} else if want := map[bool]string{true: "service_completed_successfully", false: "service_healthy"}[dep == "geo"]; d.Condition != want {
				t.Errorf("%s: depends on %s with condition %q, want %q", n.name, dep, d.Condition, want)
			}
		}
		if n.cfg == nil {
			continue
		}
		var needs []string
		switch n.cfg.cmd {
		case "hub":
			needs = []string{"manage"}
		case "edge":
			needs = []string{"hub-" + n.cfg.cache.Node.Region}
		case "scrubber", "dns":
			needs = []string{"edge-eu-1", "edge-eu-2", "edge-us-1", "edge-us-2"}
		}
		for _, need := range needs {
			if _, ok := n.svc.DependsOn[need]; !ok {
				t.Errorf("%s: want depends_on %s", n.name, need)
			}
		}
	}

	// The geo job builds the mmdb DNS reads, before DNS starts.
	g := nodes["geo"].svc
	outIdx := slices.Index(g.Command, "-out")
	dnsMount, _ := mountOf(nodes["dns"].mounts(), d.MMDB)
	if outIdx < 0 || g.Command[1] != "build" {
		t.Errorf("geo: command %q, want mmdb build -csv FILE -out FILE", g.Command)
	} else if gm, ok := mountOf(nodes["geo"].mounts(), g.Command[outIdx+1]); !ok || gm.src != dnsMount.src || path.Base(g.Command[outIdx+1]) != path.Base(d.MMDB) {
		t.Errorf("geo writes %s, dns reads %s: not the same file of one volume", g.Command[outIdx+1], d.MMDB)
	}
	if nodes["dns"].svc.DependsOn["geo"].Condition != "service_completed_successfully" {
		t.Error("dns: want depends_on geo: service_completed_successfully")
	}

	// The scrubber's backends are the four edges.
	var backends []string
	for _, b := range nodes["scrubber"].cfg.scrub.Upstream.Backends {
		if target, err := composeResolve(nodes, nodes["scrubber"], nodeCall{url: b.URL, want: []string{"http"}}); err == nil {
			backends = append(backends, target.name)
		}
	}
	slices.Sort(backends)
	if want := []string{"edge-eu-1", "edge-eu-2", "edge-us-1", "edge-us-2"}; !slices.Equal(backends, want) {
		t.Errorf("scrubber backends %v, want %v", backends, want)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// composeResolve finds the node and listener a URL reaches from node from.
func composeResolve(nodes map[string]*composeNode, from *composeNode, c nodeCall) (*composeNode, error) {
	host, port, err := hostPort(c.url)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		for net, ip := range n.ips {
			if ip != host || n.cfg == nil {
				continue
			}
			if _, shared := from.ips[net]; !shared {
				return nil, fmt.Errorf("%s is %s on network %s, which %s is not on", host, n.name, net, from.name)
			}
			for role, addr := range n.cfg.listens {
				h, p, _ := addrPort(addr)
				if p == port && (h == ip || wildcard(h)) {
					if !slices.Contains(c.want, role) {
						return nil, fmt.Errorf("reaches %s's %s listener, want %v", n.name, role, c.want)
					}
					return n, nil
				}
			}
			return nil, fmt.Errorf("%s (%s) has no listener on port %d", n.name, host, port)
		}
	}
	return nil, fmt.Errorf("no service has address %s", host)
}

// geoRows parses a geo CSV as "verge mmdb build" does.
func geoRows(file string) ([]geo.Network, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return geo.ParseCSV(file, f)
}

// The compose geo rows are the demo's (the networks are the compose ones).
func TestComposeGeoMatchesDemo(t *testing.T) {
	rows, err := geoRows(filepath.Join(deployDir, "compose/geo.csv"))
	if err != nil {
		t.Fatal(err)
	}
	demo, err := geo.ParseCSV("demo", strings.NewReader(demoGeoCSV))
	if err != nil {
		t.Fatal(err)
	}
	strip := func(ns []geo.Network) []geo.Network {
		for i := range ns {
			ns[i].Line = 0
		}
		return ns
	}
	if !slices.Equal(strip(rows), strip(demo)) {
		t.Errorf("deploy/compose/geo.csv differs from demoGeoCSV:\n%v\n%v", rows, demo)
	}
}

// A config with a mistake is refused with its file, line and key: the
// loader the tests use is the strict one the nodes use.
func TestDeployLoaderIsStrict(t *testing.T) {
	for _, tc := range []struct {
		cmd, yaml, want string
	}{
		{"edge", "listen: {http: 0.0.0.0:8080, admin: 0.0.0.0:9080}\nparents:\n  hubz: []\n", `x.yaml:3: parents.hubz: unknown key`},
		{"hub", "listen: {http: 0.0.0.0:8080, admin: 0.0.0.0:8080}\n", "listen.admin"},
		{"manage", "listen: {api: 0.0.0.0:9300, admin: 0.0.0.0:9301}\ncluster_token_file: c\n", "operator_token_file"},
		{"dns", "listen: 0.0.0.0:53\nttl: 5 minutes\n", "x.yaml:2: ttl"},
		{"origin", "listen: 0.0.0.0:8070\n", "root"},
		{"scrubber", "listen: 0.0.0.0:8080\nupstream: {backends: [{url: nope}]}\n", "upstream.backends[0].url"},
		{"purge", "{}", "no config type"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			_, err := loadNode("x.yaml", tc.cmd, []byte(tc.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
