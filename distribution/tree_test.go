package distribution_test

// A whole cache tree in one test process: an origin, hubs and edges on real
// loopback servers (the real edge engine, Parents as the edges' transport),
// a management stand-in holding the authoritative purge log, and each node's
// purge log replica, wired as cmd/verge wires them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vergecdn/verge/distribution"
	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/distribution/purgelog"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/edge/storage"
)

const (
	clusterToken = "cluster-token"
	siteHost     = "www.example.test"
)

// clock is the engines' settable clock.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// origin serves "<path> v<version>" with a strong ETag per version, one hour
// of freshness (Cache-Control max-age in the path's query overrides it) and
// surrogate keys: every object has "site", objects under /img/ "images".
type origin struct {
	*httptest.Server
	mu      sync.Mutex // guards hits, version
	hits    map[string]int
	version map[string]int
}

func newOrigin(t testing.TB) *origin {
	o := &origin{hits: map[string]int{}, version: map[string]int{}}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		v := o.version[r.URL.Path] + 1
		o.mu.Unlock()
		etag := fmt.Sprintf(`"v%d"`, v)
		age := "3600"
		if s := r.URL.Query().Get("max-age"); s != "" {
			age = s
		}
		w.Header().Set("Cache-Control", "max-age="+age)
		w.Header().Set("ETag", etag)
		keys := "site"
		if strings.HasPrefix(r.URL.Path, "/img/") {
			keys += " images"
		}
		w.Header().Set("Surrogate-Key", keys)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "%s v%d", r.URL.Path, v)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// bump publishes a new version of each path.
func (o *origin) bump(paths ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range paths {
		o.version[p]++
	}
}

// server is one listener that can be killed (every connection closed at
// once, as when a process dies) and started again on the same address.
type server struct {
	addr string
	srv  *http.Server
}

func startServer(t testing.TB, addr string, h http.Handler) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), srv: &http.Server{Handler: h}}
	go s.srv.Serve(ln)
	t.Cleanup(s.kill)
	return s
}

func (s *server) kill()       { s.srv.Close() }
func (s *server) url() string { return "http://" + s.addr }

// node is one edge or hub: engine, purge log replica, public and admin
// listeners.
type node struct {
	name, role string
	store      *storage.RAM
	logDir     string
	eng        *edge.Engine
	parents    *distribution.Parents // edges only
	log        *purgelog.Log
	rep        *purgelog.Replica
	pub, adm   *server
	stopRun    context.CancelFunc
	ready      chan struct{} // closed when the replica marks the node ready
}

func (n *node) fanoutNode() fanout.Node {
	return fanout.Node{Name: n.name, Role: n.role, Region: "eu", AdminURL: n.adm.url()}
}

// tree is the whole topology.
type tree struct {
	t       testing.TB
	clock   *clock
	origin  *origin
	mgmt    *purgelog.Log // the authoritative log
	mgmtSrv *httptest.Server
	hubs    []*node
	edges   []*node
	fan     *fanout.Client
	// peerClient, when set, is the HTTP client nodes started from now on
	// use to reach their purge log peers.
	peerClient *http.Client
}

type treeOptions struct {
	hubs, edges int
	history     int // purges already in every log before the nodes start
}

func newTree(t testing.TB, o treeOptions) *tree {
	t.Helper()
	tr := &tree{t: t, clock: &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}, origin: newOrigin(t)}
	dir := t.TempDir()
	var err error
	tr.mgmt, err = purgelog.Open(dir+"/management", purgelog.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.mgmt.Close() })
	tr.mgmtSrv = httptest.NewServer(purgelog.Handler(tr.mgmt, purgelog.BearerAuth(clusterToken), nil))
	t.Cleanup(tr.mgmtSrv.Close)
	tr.fan = fanout.New(clusterToken, nil)

	for i := range o.history {
		if _, err := tr.mgmt.Append(edge.Purge{Kind: edge.PurgeURL, Value: fmt.Sprintf("http://%s/history/%d", siteHost, i)}); err != nil {
			t.Fatal(err)
		}
	}
	history := tr.mgmt.Records(1, uint64(o.history), 0)
	seed := func(logDir string) {
		l, err := purgelog.Open(logDir, purgelog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range history {
			l.Put(p)
		}
		l.Close()
	}
	// Hubs first: edges need their addresses.
	for i := range o.hubs {
		n := &node{name: fmt.Sprintf("hub-%c", 'a'+i), role: "hub", logDir: fmt.Sprintf("%s/hub-%d", dir, i)}
		seed(n.logDir)
		tr.hubs = append(tr.hubs, n)
		tr.start(n, "127.0.0.1:0", "127.0.0.1:0")
	}
	for i := range o.edges {
		n := &node{name: fmt.Sprintf("edge-%d", i+1), role: "edge", logDir: fmt.Sprintf("%s/edge-%d", dir, i)}
		seed(n.logDir)
		tr.edges = append(tr.edges, n)
		tr.start(n, "127.0.0.1:0", "127.0.0.1:0")
	}
	for _, n := range tr.nodes() {
		tr.waitReady(n)
	}
	return tr
}

func (tr *tree) nodes() []*node { return append(append([]*node(nil), tr.hubs...), tr.edges...) }

func (tr *tree) fanoutNodes() []fanout.Node {
	var out []fanout.Node
	for _, n := range tr.nodes() {
		out = append(out, n.fanoutNode())
	}
	return out
}

// start builds n's engine (over n.store, kept across restarts, as a disk
// tier would be) and purge log replica, and serves them. Hubs catch up from
// management, edges from their hubs.
func (tr *tree) start(n *node, pubAddr, admAddr string) {
	t := tr.t
	t.Helper()
	if n.store == nil {
		n.store = storage.NewRAM(64<<20, 8)
	}
	cfg := edge.DefaultConfig()
	cfg.Node.Name, cfg.Node.Region = n.name, "eu"
	cfg.ClusterToken = clusterToken
	prop := edge.DefaultProperty()
	prop.Name, prop.Hosts, prop.Origin = "site", []string{siteHost, "static.example.test"}, tr.origin.URL
	cfg.Properties = []edge.Property{prop}
	opts := edge.Options{Store: n.store, Now: tr.clock.Now}
	var peers []string
	if n.role == "hub" {
		cfg.Role = edge.RoleHub
		peers = []string{tr.mgmtSrv.URL}
	} else {
		cfg.Role = edge.RoleEdge
		pc := distribution.DefaultParentsConfig()
		pc.Region = "eu"
		for _, h := range tr.hubs {
			pc.Hubs = append(pc.Hubs, distribution.Hub{Name: h.name, URL: h.pub.url(), HealthURL: h.adm.url(), Region: "eu"})
			peers = append(peers, h.adm.url())
		}
		p, err := distribution.NewParents(pc, distribution.Options{Name: "parents"})
		if err != nil {
			t.Fatal(err)
		}
		n.parents = p
		opts.Transport = p
		cfg.ViaParents = true
	}
	eng, err := edge.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	n.eng = eng
	if n.log, err = purgelog.Open(n.logDir, purgelog.Options{}); err != nil {
		t.Fatal(err)
	}
	var clients []*purgelog.Client
	for _, p := range peers {
		c, err := purgelog.NewClient(p, clusterToken, tr.peerClient)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	n.ready = make(chan struct{})
	var once sync.Once
	n.rep = purgelog.NewReplica(n.log, eng, purgelog.ReplicaOptions{
		Name: n.name, Peers: clients, Auth: eng.Authorized, Retry: 10 * time.Millisecond,
		SetReady: func(ok bool) {
			eng.SetReady(ok)
			if ok {
				once.Do(func() { close(n.ready) })
			}
		},
	})
	n.pub = startServer(t, pubAddr, eng)
	n.adm = startServer(t, admAddr, adminHandler(eng, n.rep))
	ctx, cancel := context.WithCancel(context.Background())
	n.stopRun = cancel
	eng.SetReady(false) // until Run has caught up
	go n.rep.Run(ctx)
	t.Cleanup(func() { cancel(); n.log.Close() })
}

// adminHandler is a node's admin listener as cmd/verge serves it.
func adminHandler(eng *edge.Engine, rep *purgelog.Replica) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := eng.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.Handle("POST /purge", rep.Handler())
	mux.Handle("/purgelog/", rep.Handler())
	mux.Handle("/", eng.Admin()) // POST /preload
	return mux
}

func (tr *tree) waitReady(n *node) {
	tr.t.Helper()
	select {
	case <-n.ready:
	case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
		tr.t.Fatalf("%s never became ready", n.name)
	}
}

// stop kills n: its listeners and connections close, its replica stops and
// its log is closed. Its store is kept.
func (tr *tree) stop(n *node) {
	n.pub.kill()
	n.adm.kill()
	n.stopRun()
	n.log.Close()
}

// restart starts n again on its old addresses.
func (tr *tree) restart(n *node) {
	tr.start(n, n.pub.addr, n.adm.addr)
}

// purge numbers p in the authoritative log and sends it to every node, hubs
// first.
func (tr *tree) purge(p edge.Purge) (edge.Purge, []fanout.Ack) {
	tr.t.Helper()
	p, err := tr.mgmt.Append(p)
	if err != nil {
		tr.t.Fatal(err)
	}
	body, _ := json.Marshal(p)
	return p, tr.fan.PostTiers(context.Background(), fanout.Tiers(tr.fanoutNodes()), "/purge", body, nil)
}

// get fetches path from a node's public listener.
func get(t testing.TB, n *node, path string) (status int, body, cacheStatus string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.pub.url()+path, nil)
	req.Host = siteHost
	if h, p, ok := strings.Cut(path, "@"); ok { // "host@/path"
		req, _ = http.NewRequest(http.MethodGet, n.pub.url()+p, nil)
		req.Host = h
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, n.name, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s from %s: body: %v", path, n.name, err)
	}
	return res.StatusCode, string(b), strings.Join(res.Header.Values("Cache-Status"), ", ")
}

// countingDialer counts the bytes and connections of the clients it dials.
type countingDialer struct {
	reqs, conns, read, written atomic.Int64
	first                      atomic.Value // func(), run once before the first dial
}

func (d *countingDialer) client() *http.Client {
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Client{Transport: countRequests{d, &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if f, ok := d.first.Swap(func() {}).(func()); ok && f != nil {
				f()
			}
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			d.conns.Add(1)
			return &countingConn{Conn: c, d: d}, nil
		},
	}}}
}

type countRequests struct {
	d  *countingDialer
	rt http.RoundTripper
}

func (c countRequests) RoundTrip(req *http.Request) (*http.Response, error) {
	c.d.reqs.Add(1)
	return c.rt.RoundTrip(req)
}

type countingConn struct {
	net.Conn
	d *countingDialer
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.d.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.d.written.Add(int64(n))
	return n, err
}
