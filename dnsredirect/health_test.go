package dnsredirect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vergecdn/verge/configs"
)

// fakeEdge is an edge's health endpoint on loopback whose answer a test
// switches.
type fakeEdge struct {
	srv    *httptest.Server
	status atomic.Int32
	load   atomic.Value // string for the Verge-Load header; "" for none
	probes chan struct{}
}

func newFakeEdge(t *testing.T) *fakeEdge {
	e := &fakeEdge{probes: make(chan struct{}, 1000)}
	e.status.Store(http.StatusOK)
	e.load.Store("")
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if l := e.load.Load().(string); l != "" {
			w.Header().Set("Verge-Load", l)
		}
		w.WriteHeader(int(e.status.Load()))
		select {
		case e.probes <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// healthConfig is the test config with health checking on and every edge's
// probe pointed at its own fake edge.
func healthConfig(t *testing.T) (Config, map[string]*fakeEdge) {
	cfg := testConfig(t)
	cfg.Health.Enabled = true
	cfg.Health.Fall = 3
	cfg.Health.Rise = 2
	cfg.Health.Interval = configs.Duration(time.Hour) // rounds come from ProbeOnce
	cfg.Health.Timeout = configs.Duration(5 * time.Second)
	edges := map[string]*fakeEdge{}
	for i := range cfg.Sites {
		for j := range cfg.Sites[i].Edges {
			e := newFakeEdge(t)
			edges[cfg.Sites[i].Edges[j].Name] = e
			cfg.Sites[i].Edges[j].Probe = e.srv.URL
		}
	}
	return cfg, edges
}

func TestHealthFailover(t *testing.T) {
	cfg, edges := healthConfig(t)
	var logs logBuffer
	reg := prometheus.NewRegistry()
	s, addr := startServer(t, cfg, Options{ManualProbes: true, Logger: newLogger(&logs), Registry: reg})
	ctx := context.Background()
	round := func() { s.ProbeOnce(ctx) }
	// A German client: eu first, then us (nearer than apac).
	eu := func() string {
		return join(addrs(exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA, ecs: "192.0.2.0/24", id: 3})))
	}
	for name, load := range map[string]float64{"eu-1": 0.1, "eu-2": 0.2, "eu-3": 0.3} {
		s.SetLoad(name, load)
	}
	edges["us-1"].load.Store("5")
	edges["us-2"].load.Store("1")
	round()
	if got := eu(); got != "10.101.0.1 10.101.0.2" {
		t.Fatalf("all healthy: %q", got)
	}

	// An edge whose /healthz fails stays in the answers for fall-1 rounds
	// and leaves on the fall-th.
	edges["eu-1"].status.Store(http.StatusServiceUnavailable)
	for i := 1; i < cfg.Health.Fall; i++ {
		round()
		if got := eu(); got != "10.101.0.1 10.101.0.2" {
			t.Fatalf("after %d failed probes (fall %d): %q", i, cfg.Health.Fall, got)
		}
	}
	round()
	if got := eu(); got != "10.101.0.2 10.101.0.3" {
		t.Fatalf("after fall: %q", got)
	}

	// The whole site down: its clients go to the next-nearest site, least
	// loaded first (loads from the probes' Verge-Load header).
	edges["eu-2"].status.Store(http.StatusInternalServerError)
	edges["eu-3"].srv.Close() // refused connections fail too
	for range cfg.Health.Fall {
		round()
	}
	if got := eu(); got != "10.102.0.2 10.102.0.1" {
		t.Fatalf("eu down: %q", got)
	}
	if !strings.Contains(logs.String(), "site down") || !strings.Contains(logs.String(), "site=eu") {
		t.Errorf("no site-down log line:\n%s", logs.String())
	}
	if v := testutil.ToFloat64(s.m.siteUp.WithLabelValues("eu")); v != 0 {
		t.Errorf("verge_dns_site_up{site=eu} = %v", v)
	}

	// Every edge down: fail open with every edge of the nearest site, and
	// say so.
	for _, name := range []string{"us-1", "us-2", "apac-1"} {
		edges[name].status.Store(http.StatusServiceUnavailable)
	}
	for range cfg.Health.Fall {
		round()
	}
	if got := eu(); got != "10.101.0.1 10.101.0.2 10.101.0.3" {
		t.Fatalf("all down: %q", got)
	}
	if !s.Stats().FailOpen || testutil.ToFloat64(s.m.failOpen) != 1 {
		t.Error("fail open not reported")
	}
	if !strings.Contains(logs.String(), "failing open") {
		t.Errorf("no fail-open log line:\n%s", logs.String())
	}
	if n, err := testutil.GatherAndCount(reg, "verge_dns_fail_open", "verge_distribution_health_up"); err != nil || n != 7 {
		t.Errorf("metrics: %d series, %v", n, err)
	}

	// An edge that recovers comes back after rise rounds, and fail open ends.
	edges["eu-2"].status.Store(http.StatusOK)
	round()
	if got := eu(); got != "10.101.0.1 10.101.0.2 10.101.0.3" {
		t.Fatalf("one good probe (rise %d): %q", cfg.Health.Rise, got)
	}
	round()
	if got := eu(); got != "10.101.0.2" {
		t.Fatalf("after rise: %q", got)
	}
	if s.Stats().FailOpen || !strings.Contains(logs.String(), "no longer failing open") {
		t.Error("fail open did not end")
	}
}

// Without ManualProbes, Serve probes by itself.
func TestServeProbes(t *testing.T) {
	cfg, edges := healthConfig(t)
	cfg.Health.Interval = configs.Duration(20 * time.Millisecond)
	cfg.Health.Timeout = configs.Duration(20 * time.Millisecond)
	startServer(t, cfg, Options{})
	for range 2 {
		<-edges["apac-1"].probes // waits for real probes; the test timeout bounds it
	}
}

// With health checking off, probe URLs are never contacted.
func TestHealthOffSendsNothing(t *testing.T) {
	cfg, edges := healthConfig(t)
	cfg.Health.Enabled = false
	s, addr := startServer(t, cfg, Options{})
	s.ProbeOnce(context.Background())
	exchange(t, addr, ask{name: "www.cdn.example.test.", qtype: dns.TypeA})
	for name, e := range edges {
		if len(e.probes) != 0 {
			t.Errorf("edge %s was probed with health checking off", name)
		}
	}
}
