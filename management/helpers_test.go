package management

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/edge"
)

const (
	opToken      = "operator-secret"
	clusterToken = "cluster-secret"
)

// clock is a settable clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

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

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Listen = ListenConfig{API: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	dir := t.TempDir()
	cfg.Database = filepath.Join(dir, "manage.db")
	cfg.PurgeLogDir = filepath.Join(dir, "purgelog")
	cfg.OperatorToken, cfg.ClusterToken = opToken, clusterToken
	cfg.NodeTimeout = 15_000_000_000
	return cfg
}

// mgmt is a management server on a real loopback listener.
type mgmt struct {
	s    *Server
	srv  *httptest.Server
	url  string
	clk  *clock
	reg  *prometheus.Registry
	addr string
}

func startMgmt(t *testing.T, cfg Config, clk *clock) *mgmt {
	t.Helper()
	return startMgmtAt(t, cfg, clk, "127.0.0.1:0")
}

// startMgmtAt listens on addr (to restart on the same address).
func startMgmtAt(t *testing.T, cfg Config, clk *clock, addr string) *mgmt {
	t.Helper()
	opts := Options{WebhookSleep: func(context.Context, time.Duration) error { return nil }}
	if clk != nil {
		opts.Now = clk.Now
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // the old listener's port may take a moment to free
		ln, err = net.Listen("tcp", addr)
		if err == nil || i > 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	m := &mgmt{s: s, srv: srv, url: srv.URL, clk: clk, reg: reg, addr: ln.Addr().String()}
	t.Cleanup(m.stop)
	return m
}

func (m *mgmt) stop() {
	if m.srv != nil {
		m.srv.CloseClientConnections()
		m.srv.Close()
		m.s.Close()
		m.srv = nil
	}
}

// call does an API request and returns the status and body.
func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// testEdge is a real edge engine with its public and admin listeners.
type testEdge struct {
	eng    *edge.Engine
	reg    *prometheus.Registry
	pub    *httptest.Server
	admin  *httptest.Server
	name   string
	region string
	role   edge.Role
	sent   atomic.Uint64 // requests answered through get
}

func startEdge(t *testing.T, name, region string, role edge.Role, origin string, props ...string) *testEdge {
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.Node = edge.NodeConfig{Name: name, Region: region}
	cfg.Role = role
	cfg.ClusterToken = clusterToken
	cfg.Listen = edge.ListenConfig{HTTP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Cache.RAMBytes = 8 << 20
	for _, p := range props {
		pc := edge.DefaultProperty()
		pc.Name, pc.Hosts, pc.Origin = p, []string{p + ".test"}, origin
		cfg.Properties = append(cfg.Properties, pc)
	}
	eng, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := eng.Register(reg); err != nil {
		t.Fatal(err)
	}
	e := &testEdge{eng: eng, reg: reg, pub: httptest.NewServer(eng), admin: httptest.NewServer(eng.Admin()), name: name, region: region, role: role}
	t.Cleanup(func() { e.pub.Close(); e.admin.Close() })
	return e
}

// get requests path of property prop through the edge.
func (e *testEdge) get(t *testing.T, prop, path string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.pub.URL+path, nil)
	req.Host = prop + ".test"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	e.sent.Add(1)
}

// counted is how many requests the engine has counted.
func (e *testEdge) counted() uint64 {
	var n uint64
	for _, p := range e.eng.Stats().Snapshot().Properties {
		for _, v := range p.Requests {
			n += v
		}
	}
	return n
}

// waitCounted waits until each engine has counted every request sent
// through get (an engine counts a request after writing its response).
func waitCounted(t *testing.T, edges ...*testEdge) {
	t.Helper()
	for _, e := range edges {
		for i := 0; e.counted() < e.sent.Load(); i++ {
			if i > 10000 {
				t.Fatalf("%s counted %d of %d requests", e.name, e.counted(), e.sent.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func (e *testEdge) reporter(t *testing.T, url string, clk *clock) *Reporter {
	t.Helper()
	cfg := ReporterConfig{URL: url, Token: clusterToken, Node: e.name, Role: string(e.role), Region: e.region,
		Version: "test", AdminURL: e.admin.URL, Timeout: 5 * time.Second}
	if clk != nil {
		cfg.Now = clk.Now
	}
	r, err := NewReporter(cfg, func() Report { return EdgeReport(e.eng, e.reg) })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ownTotals sums the edges' own counters per property.
func ownTotals(edges ...*testEdge) map[string][3]uint64 {
	out := map[string][3]uint64{}
	for _, e := range edges {
		for _, p := range e.eng.Stats().Snapshot().Properties {
			var req uint64
			for _, v := range p.Requests {
				req += v
			}
			t := out[p.Property]
			t[0] += req
			t[1] += p.Requests["hit"] + p.Requests["stale"]
			t[2] += p.Bytes
			out[p.Property] = t
		}
	}
	return out
}

// origin serves cacheable bodies of a size given by the path.
func startOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			http.Error(w, "origin failure", http.StatusServiceUnavailable)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/nocache") {
			w.Header().Set("Cache-Control", "no-store")
		} else {
			w.Header().Set("Cache-Control", "max-age=3600")
		}
		w.Header().Set("Surrogate-Key", "all "+strings.Trim(r.URL.Path, "/"))
		size := 100 + len(r.URL.Path)*10
		if strings.HasPrefix(r.URL.Path, "/img/") {
			size = 24 << 10
		}
		fmt.Fprintf(w, "%s %s", r.URL.Path, strings.Repeat("x", size))
	}))
	t.Cleanup(o.Close)
	return o
}
