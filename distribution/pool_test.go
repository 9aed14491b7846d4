package distribution

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/distribution/balance"
)

// newPoolOf starts n backends and returns them with a pool config over them.
func newPoolOf(t *testing.T, policy string, weights ...int) ([]*server, PoolConfig) {
	t.Helper()
	cfg := DefaultPoolConfig()
	cfg.Policy = policy
	testHealth(&cfg.Health)
	var srvs []*server
	for i, w := range weights {
		s := newServer(t, fmt.Sprintf("b%d", i))
		srvs = append(srvs, s)
		cfg.Backends = append(cfg.Backends, Backend{Name: s.name, URL: s.URL, Weight: w})
	}
	return srvs, cfg
}

func mustPool(t *testing.T, cfg PoolConfig, opts Options) *Pool {
	t.Helper()
	p, err := NewPool(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// served sends n requests built by mk and counts the answers per backend.
func served(t *testing.T, p *Pool, n int, mk func(i int) *http.Request) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		resp, body := roundTrip(t, p, mk(i))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		got[strings.TrimPrefix(body, "from ")]++
	}
	return got
}

func plain(t *testing.T) func(int) *http.Request {
	return func(i int) *http.Request { return request(t, "http://127.0.0.1:1", fmt.Sprintf("/p/%d", i), "") }
}

func TestPoolRoundRobin(t *testing.T) {
	_, cfg := newPoolOf(t, balance.RoundRobinName, 1, 1, 1)
	p := mustPool(t, cfg, Options{})
	if got := served(t, p, 300, plain(t)); got["b0"] != 100 || got["b1"] != 100 || got["b2"] != 100 {
		t.Fatalf("round robin: %v", got)
	}
}

func TestPoolWeightedRoundRobin(t *testing.T) {
	_, cfg := newPoolOf(t, balance.WeightedRoundRobinName, 5, 3, 2)
	p := mustPool(t, cfg, Options{})
	if got := served(t, p, 100, plain(t)); got["b0"] != 50 || got["b1"] != 30 || got["b2"] != 20 {
		t.Fatalf("weights 5:3:2 over 10 cycles: %v", got)
	}
}

func TestPoolURLHash(t *testing.T) {
	_, cfg := newPoolOf(t, balance.URLHashName, 1, 1, 1)
	p := mustPool(t, cfg, Options{})
	home := map[int]string{}
	for round := 0; round < 3; round++ {
		for i := 0; i < 60; i++ {
			_, body := roundTrip(t, p, request(t, "http://127.0.0.1:1", fmt.Sprintf("/u/%d", i), ""))
			if round == 0 {
				home[i] = body
			} else if body != home[i] {
				t.Fatalf("/u/%d went to %q, then %q", i, home[i], body)
			}
		}
	}
	spread := map[string]bool{}
	for _, b := range home {
		spread[b] = true
	}
	if len(spread) != 3 {
		t.Fatalf("60 URLs used only %v", spread)
	}
	// The cache key in the context wins over the URL.
	a, _ := p.RoundTrip(request(t, "http://127.0.0.1:1", "/one", "same-key"))
	b, _ := p.RoundTrip(request(t, "http://127.0.0.1:1", "/two", "same-key"))
	defer a.Body.Close()
	defer b.Body.Close()
	if a.Header.Get("X-Served-By") != b.Header.Get("X-Served-By") {
		t.Fatal("same cache key, different backends")
	}
}

func TestPoolIPHash(t *testing.T) {
	_, cfg := newPoolOf(t, balance.IPHashName, 1, 1, 1)
	p := mustPool(t, cfg, Options{})
	mk := func(ip string) *http.Request {
		req := request(t, "http://127.0.0.1:1", "/any", "")
		req.RemoteAddr = ip + ":4711"
		return req
	}
	home := map[string]string{}
	for i := 0; i < 60; i++ {
		ip := fmt.Sprintf("203.0.113.%d", i)
		for j := 0; j < 3; j++ {
			_, body := roundTrip(t, p, mk(ip))
			if j == 0 {
				home[ip] = body
			} else if body != home[ip] {
				t.Fatalf("client %s moved from %q to %q", ip, home[ip], body)
			}
		}
	}
	spread := map[string]int{}
	for _, b := range home {
		spread[b]++
	}
	if len(spread) != 3 {
		t.Fatalf("60 clients used only %v", spread)
	}
	if got := clientIP(&http.Request{RemoteAddr: "[2001:db8::1]:443"}); got != "2001:db8::1" {
		t.Fatalf("clientIP = %q", got)
	}
	h := http.Header{}
	h.Add("X-Forwarded-For", "198.51.100.1, 10.0.0.1")
	h.Add("X-Forwarded-For", "192.0.2.7, 192.0.2.8")
	if got := clientIP(&http.Request{Header: h}); got != "192.0.2.8" {
		t.Fatalf("clientIP from X-Forwarded-For = %q", got)
	}
	if got := clientIP(&http.Request{Header: http.Header{}}); got != "" {
		t.Fatalf("clientIP of nothing = %q", got)
	}
}

func TestPoolLeastConn(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.LeastConnName, 1, 1, 1)
	p := mustPool(t, cfg, Options{})
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	for _, s := range srvs[:2] {
		s.onServe.Store(func() { entered <- struct{}{}; <-release })
	}
	// Two slow requests occupy two backends (one each: ties rotate).
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.RoundTrip(request(t, "http://127.0.0.1:1", "/slow", ""))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		<-entered
	}
	busy := srvs[0].hits.Load() + srvs[1].hits.Load()
	if busy != 2 {
		t.Fatalf("slow requests landed %d/%d/%d", srvs[0].hits.Load(), srvs[1].hits.Load(), srvs[2].hits.Load())
	}
	// Every new request goes to the idle backend.
	if got := served(t, p, 10, plain(t)); got["b2"] != 10 {
		t.Fatalf("with b0 and b1 busy: %v", got)
	}
	close(release)
	wg.Wait()
	lc := p.picker.(*balance.LeastConn)
	for i := 0; i < 3; i++ {
		if n := lc.InFlight(i); n != 0 {
			t.Fatalf("backend %d has %d in flight after every body was closed", i, n)
		}
	}
}

// latencyTransport advances a fake clock by a per-host latency, so the pool
// measures response times without waiting.
type latencyTransport struct {
	rt  http.RoundTripper
	mu  sync.Mutex // guards now and lat
	now time.Time
	lat map[string]time.Duration
}

func (l *latencyTransport) clock() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

func (l *latencyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.now = l.now.Add(l.lat[req.URL.Host])
	l.mu.Unlock()
	return l.rt.RoundTrip(req)
}

func TestPoolLeastTime(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.LeastTimeName, 1, 1, 1)
	lt := &latencyTransport{rt: NewTransport(time.Second, 0), now: time.Unix(1e9, 0), lat: map[string]time.Duration{
		hostOf(srvs[0]): 40 * time.Millisecond,
		hostOf(srvs[1]): 5 * time.Millisecond,
		hostOf(srvs[2]): 90 * time.Millisecond,
	}}
	p := mustPool(t, cfg, Options{Transport: lt, Now: lt.clock})
	got := served(t, p, 200, plain(t))
	t.Logf("200 requests at 40/5/90 ms: %v", got)
	if got["b1"] < 190 {
		t.Fatalf("the fastest backend got %d of 200", got["b1"])
	}
}

func TestPoolFailover(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.RoundRobinName, 1, 1, 1)
	ct := &countingTransport{rt: NewTransport(time.Second, 0)}
	reg := prometheus.NewRegistry()
	p := mustPool(t, cfg, Options{Name: "origin-pool", Transport: ct})
	if err := p.Register(reg); err != nil {
		t.Fatal(err)
	}
	srvs[1].Close()
	got := served(t, p, 30, plain(t))
	if got["b1"] != 0 || got["b0"]+got["b2"] != 30 {
		t.Fatalf("with b1 dead: %v", got)
	}
	if p.Health().Healthy("b1") {
		t.Fatal("b1 not marked down by live failures")
	}
	if n := ct.count(hostOf(srvs[1])); n != 3 {
		t.Fatalf("b1 tried %d times, want fall (3)", n)
	}
	if v := metric(t, reg, "verge_distribution_failovers_total", map[string]string{"pool": "origin-pool", "from": "b1"}); v != 3 {
		t.Fatalf("failovers = %v", v)
	}
	if v := metric(t, reg, "verge_distribution_upstream_requests_total", map[string]string{"pool": "origin-pool", "result": "2xx"}); v != 30 {
		t.Fatalf("2xx = %v", v)
	}
	if v := metric(t, reg, "verge_distribution_picks_total", map[string]string{"pool": "origin-pool"}); v != 30 {
		t.Fatalf("picks = %v", v)
	}
	if v := metric(t, reg, "verge_distribution_upstream_duration_seconds", map[string]string{"pool": "origin-pool"}); v != 33 {
		t.Fatalf("duration samples = %v, want 33 (30 answers, 3 failures)", v)
	}
}

func TestPoolMaxAttempts(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.RoundRobinName, 1, 1, 1, 1)
	cfg.MaxAttempts = 2
	ct := &countingTransport{rt: NewTransport(time.Second, 0)}
	p := mustPool(t, cfg, Options{Transport: ct})
	for _, s := range srvs {
		s.Close()
	}
	_, err := p.RoundTrip(request(t, "http://127.0.0.1:1", "/", ""))
	if err == nil || !strings.Contains(err.Error(), "no upstream answered") {
		t.Fatalf("err = %v", err)
	}
	total := 0
	for _, s := range srvs {
		total += ct.count(hostOf(s))
	}
	if total != 2 {
		t.Fatalf("%d backends tried, max_attempts is 2", total)
	}
}

func TestPoolHealth(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.RoundRobinName, 1, 1)
	p := mustPool(t, cfg, Options{})
	srvs[0].health.Store(http.StatusServiceUnavailable)
	for i := 0; i < 3; i++ {
		p.Health().ProbeOnce(context.Background())
	}
	if got := served(t, p, 10, plain(t)); got["b1"] != 10 {
		t.Fatalf("b0 marked down but got traffic: %v", got)
	}
	// Every backend marked down: they are tried anyway.
	srvs[1].health.Store(http.StatusServiceUnavailable)
	for i := 0; i < 3; i++ {
		p.Health().ProbeOnce(context.Background())
	}
	if got := served(t, p, 4, plain(t)); got["b0"]+got["b1"] != 4 {
		t.Fatalf("all marked down: %v", got)
	}
}

func TestPoolNoRetryWithBody(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.RoundRobinName, 1, 1)
	p := mustPool(t, cfg, Options{})
	srvs[0].Close()
	fails := 0
	for i := 0; i < 4; i++ {
		req := request(t, "http://127.0.0.1:1", "/post", "")
		req.Method = http.MethodPost
		req.Body = io.NopCloser(strings.NewReader("x"))
		req.ContentLength = 1
		resp, err := p.RoundTrip(req)
		if err != nil {
			fails++
			continue
		}
		resp.Body.Close()
	}
	// Round robin sends 2 of the 4 to the dead b0; they fail, not retried.
	if fails != 2 || srvs[1].hits.Load() != 2 {
		t.Fatalf("fails %d, b1 hits %d", fails, srvs[1].hits.Load())
	}
}

func TestPoolBackendNameDefault(t *testing.T) {
	srvs, cfg := newPoolOf(t, balance.RoundRobinName, 1)
	cfg.Backends[0].Name = ""
	p := mustPool(t, cfg, Options{})
	if got := p.Health().Targets(); len(got) != 1 || got[0].Name != hostOf(srvs[0]) {
		t.Fatalf("targets %v", got)
	}
}

// TestRegistryShared: several pools and parents in one registry.
func TestRegistryShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := newPoolOf(t, balance.RoundRobinName, 1)
	tp := newTopology(t, "hub-a")
	for _, r := range []interface {
		Register(prometheus.Registerer) error
	}{
		mustPool(t, cfg, Options{Name: "one"}),
		mustPool(t, cfg, Options{Name: "two"}),
		tp.parents(t, Options{}),
	} {
		if err := r.Register(reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := mustPool(t, cfg, Options{Name: "one"}).Register(reg); err == nil {
		t.Fatal("a second pool named one registered")
	}
	mfs, _ := reg.Gather()
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"verge_distribution_health_up", "verge_distribution_picks_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not exported; have %v", want, names)
		}
	}
}
