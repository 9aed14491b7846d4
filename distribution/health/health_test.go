package health

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vergecdn/verge/configs"
)

// backend is an httptest server whose /healthz answers with a settable status.
type backend struct {
	*httptest.Server
	status atomic.Int32
	load   atomic.Value // string; "" means no header
	hits   atomic.Int64
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.status.Store(http.StatusOK)
	b.load.Store("")
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if l := b.load.Load().(string); l != "" {
			w.Header().Set(LoadHeader, l)
		}
		w.WriteHeader(int(b.status.Load()))
	}))
	t.Cleanup(b.Close)
	return b
}

// changes records onChange calls.
type changes struct {
	mu  sync.Mutex
	got []string
}

func (c *changes) fn(name string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := name + ":down"
	if up {
		s = name + ":up"
	}
	c.got = append(c.got, s)
}

func (c *changes) list() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.got, ",")
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Interval = configs.Duration(time.Second)
	cfg.Timeout = configs.Duration(500 * time.Millisecond)
	return cfg
}

func TestRiseFall(t *testing.T) {
	b := newBackend(t)
	var ch changes
	c := NewChecker(testConfig(), nil, nil, ch.fn)
	c.Add(Target{Name: "a", URL: b.URL})
	ctx := context.Background()

	if !c.Healthy("a") {
		t.Fatal("a new target must start healthy")
	}
	b.status.Store(http.StatusServiceUnavailable)
	for i := 1; i <= 2; i++ {
		c.ProbeOnce(ctx)
		if !c.Healthy("a") {
			t.Fatalf("down after %d failures, fall is 3", i)
		}
	}
	c.ProbeOnce(ctx)
	if c.Healthy("a") {
		t.Fatal("still up after 3 failures")
	}
	b.status.Store(http.StatusNoContent) // any 2xx is healthy
	c.ProbeOnce(ctx)
	if c.Healthy("a") {
		t.Fatal("up after 1 success, rise is 2")
	}
	c.ProbeOnce(ctx)
	if !c.Healthy("a") {
		t.Fatal("still down after 2 successes")
	}
	if got := ch.list(); got != "a:down,a:up" {
		t.Fatalf("onChange calls = %q", got)
	}
}

func TestFlappingDoesNotBounce(t *testing.T) {
	b := newBackend(t)
	var ch changes
	c := NewChecker(testConfig(), nil, nil, ch.fn)
	c.Add(Target{Name: "a", URL: b.URL})
	// Up target: fail, fail, ok, fail, fail, ok ... never 3 failures in a row.
	for i := 0; i < 30; i++ {
		if i%3 == 2 {
			b.status.Store(http.StatusOK)
		} else {
			b.status.Store(http.StatusInternalServerError)
		}
		c.ProbeOnce(context.Background())
		if !c.Healthy("a") {
			t.Fatalf("flapping target went down at probe %d", i)
		}
	}
	// Take it down, then flap ok, fail: never 2 successes in a row.
	b.status.Store(http.StatusInternalServerError)
	for i := 0; i < 3; i++ {
		c.ProbeOnce(context.Background())
	}
	for i := 0; i < 30; i++ {
		if i%2 == 0 {
			b.status.Store(http.StatusOK)
		} else {
			b.status.Store(http.StatusBadGateway)
		}
		c.ProbeOnce(context.Background())
		if c.Healthy("a") {
			t.Fatalf("flapping down target came back at probe %d", i)
		}
	}
	if got := ch.list(); got != "a:down" {
		t.Fatalf("onChange calls = %q", got)
	}
}

func TestPassiveMarking(t *testing.T) {
	b := newBackend(t)
	var ch changes
	c := NewChecker(testConfig(), nil, nil, ch.fn)
	c.Add(Target{Name: "a", URL: b.URL})

	c.ReportFailure("a")
	c.ReportFailure("a")
	c.ReportSuccess("a") // a success in between resets the count
	c.ReportFailure("a")
	c.ReportFailure("a")
	if !c.Healthy("a") {
		t.Fatal("down without 3 consecutive failures")
	}
	c.ReportFailure("a")
	if c.Healthy("a") {
		t.Fatal("still up after 3 consecutive passive failures")
	}
	// Active probes bring it back (the server is fine).
	c.ProbeOnce(context.Background())
	c.ProbeOnce(context.Background())
	if !c.Healthy("a") {
		t.Fatal("probes did not bring it back")
	}

	// Active and passive failures add up.
	b.status.Store(http.StatusInternalServerError)
	c.ProbeOnce(context.Background())
	c.ReportFailure("a")
	if !c.Healthy("a") {
		t.Fatal("down after 2 failures")
	}
	c.ProbeOnce(context.Background())
	if c.Healthy("a") {
		t.Fatal("1 probe + 1 passive + 1 probe failure should take it down")
	}
	if got := ch.list(); got != "a:down,a:up,a:down" {
		t.Fatalf("onChange calls = %q", got)
	}
}

func TestProbeOutcomes(t *testing.T) {
	slow := make(chan struct{})
	t.Cleanup(func() { close(slow) })
	mux := http.NewServeMux()
	mux.HandleFunc("/ok/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/created/healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })
	mux.HandleFunc("/redirect/healthz", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok/healthz", http.StatusFound)
	})
	mux.HandleFunc("/missing/healthz", http.NotFound)
	mux.HandleFunc("/error/healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	mux.HandleFunc("/slow/healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-slow:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	cfg := testConfig()
	cfg.Fall = 1
	cfg.Timeout = configs.Duration(50 * time.Millisecond)
	cases := []struct {
		name, url string
		healthy   bool
	}{
		{"ok", srv.URL + "/ok", true},
		{"created", srv.URL + "/created/", true}, // a trailing slash on the base is fine
		{"redirect is not followed", srv.URL + "/redirect", false},
		{"404", srv.URL + "/missing", false},
		{"500", srv.URL + "/error", false},
		{"timeout", srv.URL + "/slow", false},
		{"connection refused", deadURL, false},
		{"bad url", "http://[::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewChecker(cfg, nil, nil, nil)
			c.Add(Target{Name: "x", URL: tc.url})
			c.ProbeOnce(context.Background())
			if got := c.Healthy("x"); got != tc.healthy {
				t.Fatalf("Healthy = %v, want %v", got, tc.healthy)
			}
		})
	}
}

func TestLoadHeader(t *testing.T) {
	b := newBackend(t)
	c := NewChecker(testConfig(), nil, nil, nil)
	c.Add(Target{Name: "a", URL: b.URL})
	if _, ok := c.Load("a"); ok {
		t.Fatal("load before any probe")
	}
	cases := []struct {
		header string
		want   float64
		ok     bool
	}{
		{"0.75", 0.75, true},
		{" 12 ", 12, true},
		{"0", 0, true},
		{"", 0, false},
		{"abc", 0, false},
		{"NaN", 0, false},
		{"+Inf", 0, false},
		{"-1", 0, false},
	}
	for _, tc := range cases {
		b.load.Store(tc.header)
		c.ProbeOnce(context.Background())
		got, ok := c.Load("a")
		if ok != tc.ok || got != tc.want {
			t.Errorf("Verge-Load %q: Load = %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := c.Load("nope"); ok {
		t.Error("load of unknown target")
	}
}

func TestDisabled(t *testing.T) {
	b := newBackend(t)
	b.status.Store(http.StatusInternalServerError)
	cfg := testConfig()
	cfg.Enabled = false
	var ch changes
	c := NewChecker(cfg, nil, nil, ch.fn)
	c.Add(Target{Name: "a", URL: b.URL})
	for i := 0; i < 5; i++ {
		c.ProbeOnce(context.Background())
		c.ReportFailure("a")
	}
	if !c.Healthy("a") {
		t.Fatal("disabled checker marked a target down")
	}
	if n := b.hits.Load(); n != 0 {
		t.Fatalf("disabled checker sent %d probes", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	cancel()
	<-done
	if n := b.hits.Load(); n != 0 || ch.list() != "" {
		t.Fatalf("disabled checker: %d probes, changes %q", n, ch.list())
	}
}

func TestRunProbesUntilCancelled(t *testing.T) {
	probed := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		select {
		case probed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig()
	cfg.Fall = 1
	down := make(chan struct{})
	c := NewChecker(cfg, nil, nil, func(name string, up bool) {
		if !up {
			close(down)
		}
	})
	c.Add(Target{Name: "a", URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	<-probed // Run probes at once, without waiting an interval
	<-down
	cancel()
	<-done
	if c.Healthy("a") {
		t.Fatal("Run's failed probe did not take the target down")
	}
}

func TestCancelledProbeRecordsNothing(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig()
	cfg.Fall = 1
	c := NewChecker(cfg, nil, nil, nil)
	c.Add(Target{Name: "a", URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	c.ProbeOnce(ctx)
	if !c.Healthy("a") {
		t.Fatal("a probe interrupted by shutdown marked the target down")
	}
}

func TestAddRemove(t *testing.T) {
	b := newBackend(t)
	b2 := newBackend(t)
	cfg := testConfig()
	cfg.Fall = 1
	c := NewChecker(cfg, nil, nil, nil)
	if c.Healthy("a") {
		t.Fatal("unknown target is healthy")
	}
	c.ReportFailure("nope") // ignored, no panic
	c.ReportSuccess("nope")
	c.Remove("nope")

	c.Add(Target{Name: "a", URL: b.URL})
	c.ReportFailure("a")
	c.Add(Target{Name: "a", URL: b.URL}) // same URL: keeps state
	if c.Healthy("a") {
		t.Fatal("re-adding the same target reset its state")
	}
	c.Add(Target{Name: "a", URL: b2.URL}) // new URL: a new target
	if !c.Healthy("a") {
		t.Fatal("a replaced target must start healthy")
	}
	if got := c.Targets(); len(got) != 1 || got[0].URL != b2.URL {
		t.Fatalf("Targets = %v", got)
	}
	c.ProbeOnce(context.Background())
	if b.hits.Load() != 0 || b2.hits.Load() != 1 {
		t.Fatalf("probes went to old %d / new %d", b.hits.Load(), b2.hits.Load())
	}
	c.Remove("a")
	if c.Healthy("a") || len(c.Targets()) != 0 {
		t.Fatal("removed target still tracked")
	}
	c.ProbeOnce(context.Background())
	if b2.hits.Load() != 1 {
		t.Fatal("removed target still probed")
	}
}

// TestCallbackOutsideLock calls back into the checker from onChange, which
// would deadlock if onChange ran under a lock, and checks that concurrent
// changes are delivered in order: the last call matches the final state.
func TestCallbackOutsideLock(t *testing.T) {
	cfg := testConfig()
	cfg.Rise, cfg.Fall = 1, 1
	var (
		mu   sync.Mutex
		last = map[string]bool{}
	)
	var c *Checker
	c = NewChecker(cfg, nil, nil, func(name string, up bool) {
		_ = c.Healthy(name)
		c.Add(Target{Name: "other-" + name, URL: "http://127.0.0.1:1"})
		c.Remove("other-" + name)
		mu.Lock()
		last[name] = up
		mu.Unlock()
	})
	names := []string{"a", "b", "c"}
	for _, n := range names {
		c.Add(Target{Name: n, URL: "http://127.0.0.1:1"})
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				n := names[(g+i)%len(names)]
				if (i+g)%2 == 0 {
					c.ReportFailure(n)
				} else {
					c.ReportSuccess(n)
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		if got, ok := last[n]; ok && got != c.Healthy(n) {
			t.Errorf("%s: last onChange said up=%v, Healthy says %v", n, got, c.Healthy(n))
		}
	}
}

func TestMetricsAndLogs(t *testing.T) {
	b := newBackend(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := testConfig()
	cfg.Rise, cfg.Fall = 1, 1
	c := NewChecker(cfg, nil, log, nil)
	reg := prometheus.NewRegistry()
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(reg); err == nil {
		t.Fatal("registering the same checker twice should fail")
	}
	// Several checkers share a registry when each has a distinguishing label.
	shared := prometheus.NewRegistry()
	for _, pool := range []string{"one", "two"} {
		cc := NewChecker(cfg, nil, nil, nil)
		if err := cc.Register(prometheus.WrapRegistererWith(prometheus.Labels{"pool": pool}, shared)); err != nil {
			t.Fatalf("checker with pool label %q: %v", pool, err)
		}
	}
	c.Add(Target{Name: "a", URL: b.URL})
	if v := value(t, c.m.up.WithLabelValues("a")); v != 1 {
		t.Fatalf("up = %v before any probe", v)
	}
	b.status.Store(http.StatusInternalServerError)
	c.ProbeOnce(context.Background())
	c.ReportFailure("a")
	if v := value(t, c.m.up.WithLabelValues("a")); v != 0 {
		t.Fatalf("up = %v after failure", v)
	}
	b.status.Store(http.StatusOK)
	c.ProbeOnce(context.Background())
	for _, tc := range []struct {
		c    prometheus.Metric
		want float64
	}{
		{c.m.up.WithLabelValues("a"), 1},
		{c.m.changes.WithLabelValues("a", "down"), 1},
		{c.m.changes.WithLabelValues("a", "up"), 1},
		{c.m.failures.WithLabelValues("a", "probe"), 1},
		{c.m.failures.WithLabelValues("a", "passive"), 1},
	} {
		if v := value(t, tc.c); v != tc.want {
			t.Errorf("metric = %v, want %v", v, tc.want)
		}
	}
	if n := series(t, reg, "verge_distribution_health_probe_duration_seconds"); n != 1 {
		t.Errorf("probe histogram series = %d", n)
	}
	out := logs.String()
	if !strings.Contains(out, "health: target down") || !strings.Contains(out, "target=a") ||
		!strings.Contains(out, "health: target up") {
		t.Errorf("state changes not logged:\n%s", out)
	}
	c.Remove("a")
	if n := series(t, reg, "verge_distribution_health_up"); n != 0 {
		t.Errorf("removed target still exported (%d series)", n)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate("health"); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"path", func(c *Config) { c.Path = "healthz" }, "up.health.path: must start with"},
		{"path space", func(c *Config) { c.Path = "/a b" }, "up.health.path: must not contain"},
		{"interval", func(c *Config) { c.Interval = 0 }, "up.health.interval: must be at least"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "up.health.timeout: must be positive"},
		{"timeout over interval", func(c *Config) { c.Timeout = configs.Duration(3 * time.Second) }, "up.health.timeout: must not exceed"},
		{"rise", func(c *Config) { c.Rise = 0 }, "up.health.rise: must be between"},
		{"fall", func(c *Config) { c.Fall = 1001 }, "up.health.fall: must be between"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate("up.health")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// fileConfig is how a role's config embeds a health section.
type fileConfig struct {
	Health Config `yaml:"health"`
}

func (f *fileConfig) Validate() error { return f.Health.Validate("health") }

func TestConfigFromYAML(t *testing.T) {
	f := fileConfig{Health: DefaultConfig()}
	err := configs.LoadBytes("h.yaml", []byte("health:\n  interval: 5s\n  rise: 4\n  enabled: false\n"), &f)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Interval, want.Rise, want.Enabled = configs.Duration(5*time.Second), 4, false
	if f.Health != want {
		t.Fatalf("got %+v, want %+v", f.Health, want)
	}
	f = fileConfig{Health: DefaultConfig()}
	err = configs.LoadBytes("h.yaml", []byte("health:\n  path: /up\n  fall: 0\n"), &f)
	if err == nil || !strings.Contains(err.Error(), "h.yaml:3: health.fall: must be between") {
		t.Fatalf("got %v", err)
	}
}

func FuzzConfig(f *testing.F) {
	f.Add([]byte("health:\n  interval: 5s\n  timeout: 1s\n  rise: 4\n"))
	f.Add([]byte("health: {path: x, fall: -1}\n"))
	f.Add([]byte("health:\n  interval: 1ns\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := fileConfig{Health: DefaultConfig()}
		if err := configs.LoadBytes("fuzz.yaml", data, &cfg); err != nil {
			return
		}
		// Whatever loads must be usable: a checker built from it works.
		c := NewChecker(cfg.Health, nil, nil, nil)
		c.Add(Target{Name: "x", URL: "http://127.0.0.1:1"})
		c.ReportFailure("x")
		if cfg.Health.Fall > 1 && !c.Healthy("x") {
			t.Fatalf("down after 1 failure with fall %d", cfg.Health.Fall)
		}
	})
}

// value reads a single counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", m.Desc())
	return 0
}

// series counts the series of one metric family in reg.
func series(t *testing.T, reg prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
