package scrubber

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vergecdn/verge/configs"
)

// fakeClock is the injected clock: time moves only when a test says so.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testEnv struct {
	s     *Scrubber
	clock *fakeClock
	reg   *prometheus.Registry
	logs  *lockedWriter
}

// newTest builds a scrubber with defaults changed by edit; attack detection
// is off unless edit turns it on.
func newTest(t testing.TB, edit func(*Config)) *testEnv {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Attack.Enabled = false
	if edit != nil {
		edit(&cfg)
	}
	env := &testEnv{clock: newClock(), reg: prometheus.NewRegistry(), logs: &lockedWriter{}}
	log := slog.New(slog.NewTextHandler(env.logs, nil))
	s, err := New(cfg, Options{Logger: log, Registerer: env.reg, Now: env.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	env.s = s
	return env
}

// lockedWriter collects log output written from several goroutines.
type lockedWriter struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok")
})

// do sends one request from addr (ip:port) through h.
func do(h http.Handler, addr string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "http://example.test/x", nil)
	r.RemoteAddr = addr
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func counter(t *testing.T, env *testEnv, verdict string) int {
	t.Helper()
	return int(testutil.ToFloat64(env.s.m.requests.WithLabelValues(verdict)))
}

func TestPerIPTokenBucket(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 10, Burst: 5}
		c.Limits.PerPrefix = Bucket{}
	})
	h := env.s.Wrap(okHandler)
	for i := 0; i < 5; i++ {
		if w := do(h, "192.0.2.1:1000"); w.Code != 200 {
			t.Fatalf("burst request %d: %d", i, w.Code)
		}
	}
	w := do(h, "192.0.2.1:1001")
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || w.Header().Get("Connection") != "" {
		t.Fatalf("over the burst: %d %v", w.Code, w.Header())
	}
	if !strings.Contains(w.Body.String(), "too many requests from this address") {
		t.Fatalf("body %q", w.Body.String())
	}
	// Another address has its own bucket.
	if w := do(h, "192.0.2.2:1000"); w.Code != 200 {
		t.Fatalf("another source: %d", w.Code)
	}
	// 100 ms later one token is back, exactly one.
	env.clock.Advance(100 * time.Millisecond)
	if w := do(h, "192.0.2.1:1000"); w.Code != 200 {
		t.Fatalf("after one refill interval: %d", w.Code)
	}
	if w := do(h, "192.0.2.1:1000"); w.Code != 429 {
		t.Fatalf("second request after one interval: %d", w.Code)
	}
	// A source flooding for 10 s gets exactly rate*10 + what was left.
	// (Requests at 0, 1, ..., 10000 ms: the tokens of 10 s of refill.)
	passed := 0
	for i := 0; i <= 10000; i++ {
		if do(h, "192.0.2.9:1").Code == 200 {
			passed++
		}
		env.clock.Advance(time.Millisecond)
	}
	if passed != 10*10+5 {
		t.Fatalf("flooding source passed %d in 10 s, want rate*10+burst = 105", passed)
	}
	if got := counter(t, env, "per_ip"); got != 1+1+(10001-105) {
		t.Fatalf("per_ip counter %d", got)
	}
}

func TestPerPrefixBucket(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 100, Burst: 100}
		c.Limits.PerPrefix = Bucket{Rate: 10, Burst: 4}
	})
	h := env.s.Wrap(okHandler)
	// Four addresses of one /24 share its bucket ...
	for i := 1; i <= 4; i++ {
		if w := do(h, "198.51.100."+strconv.Itoa(i)+":1"); w.Code != 200 {
			t.Fatalf("address %d: %d", i, w.Code)
		}
	}
	w := do(h, "198.51.100.77:1")
	if w.Code != 429 || !strings.Contains(w.Body.String(), "from this network") {
		t.Fatalf("fifth address of the /24: %d %q", w.Code, w.Body.String())
	}
	// ... the next /24 does not.
	if w := do(h, "198.51.101.1:1"); w.Code != 200 {
		t.Fatalf("next /24: %d", w.Code)
	}
	// IPv6: the /64 is the unit.
	for i := 1; i <= 4; i++ {
		if w := do(h, "[2001:db8:0:1::"+strconv.Itoa(i)+"]:1"); w.Code != 200 {
			t.Fatalf("v6 address %d: %d", i, w.Code)
		}
	}
	if w := do(h, "[2001:db8:0:1:ffff::1]:1"); w.Code != 429 {
		t.Fatalf("fifth address of the /64: %d", w.Code)
	}
	if w := do(h, "[2001:db8:0:2::1]:1"); w.Code != 200 {
		t.Fatalf("next /64: %d", w.Code)
	}
	// An IPv4-mapped client is the IPv4 source.
	if w := do(h, "[::ffff:198.51.100.200]:1"); w.Code != 429 {
		t.Fatalf("mapped address of the full /24: %d", w.Code)
	}
}

func TestPrefixLengthsConfigurable(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{}
		c.Limits.PerPrefix = Bucket{Rate: 1, Burst: 1}
		c.Limits.IPv4Prefix = 16
		c.Limits.IPv6Prefix = 48
	})
	h := env.s.Wrap(okHandler)
	if do(h, "10.1.2.3:1").Code != 200 || do(h, "10.1.200.3:1").Code != 429 || do(h, "10.2.0.1:1").Code != 200 {
		t.Fatal("/16 grouping")
	}
	if do(h, "[2001:db8:1:2::1]:1").Code != 200 || do(h, "[2001:db8:1:ffff::1]:1").Code != 429 {
		t.Fatal("/48 grouping")
	}
}

func TestGlobalCeiling(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{}
		c.Limits.PerPrefix = Bucket{}
		c.Limits.Global = Bucket{Rate: 2, Burst: 3}
	})
	h := env.s.Wrap(okHandler)
	for i := 0; i < 3; i++ {
		if w := do(h, "192.0.2."+strconv.Itoa(i+1)+":1"); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := do(h, "192.0.2.99:1")
	if w.Code != 503 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the ceiling: %d %v", w.Code, w.Header())
	}
	env.clock.Advance(500 * time.Millisecond)
	if do(h, "192.0.2.99:1").Code != 200 || do(h, "192.0.2.99:1").Code != 503 {
		t.Fatal("one token per 500 ms")
	}
}

func TestPerSourceStagesRunBeforeGlobal(t *testing.T) {
	// A flooding source's excess is refused by its own bucket and does not
	// use up the node's ceiling, so other sources still get through.
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 1, Burst: 1}
		c.Limits.PerPrefix = Bucket{}
		c.Limits.Global = Bucket{Rate: 1, Burst: 5}
	})
	h := env.s.Wrap(okHandler)
	for i := 0; i < 100; i++ {
		do(h, "203.0.113.1:1")
	}
	for i := 0; i < 4; i++ {
		if w := do(h, "203.0.113."+strconv.Itoa(10+i)+":1"); w.Code != 200 {
			t.Fatalf("legitimate source %d behind a flood: %d", i, w.Code)
		}
	}
}

func TestPenaltyBoxMode(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.Mode = ModePenaltyBox
		c.Limits.PerIP = Bucket{Rate: 10, Burst: 5}
		c.Limits.PerPrefix = Bucket{}
		c.Limits.Penalty = configs.Duration(30 * time.Second)
	})
	h := env.s.Wrap(okHandler)
	for i := 0; i < 5; i++ {
		do(h, "192.0.2.1:1")
	}
	w := do(h, "192.0.2.1:1")
	if w.Code != 429 || w.Header().Get("Retry-After") != "30" || w.Header().Get("Connection") != "close" {
		t.Fatalf("boxed: %d %v", w.Code, w.Header())
	}
	// Flooding for a minute: nothing passes.
	for i := 0; i < 6000; i++ {
		env.clock.Advance(10 * time.Millisecond)
		if do(h, "192.0.2.1:1").Code == 200 {
			t.Fatalf("a boxed source that keeps flooding passed after %v", time.Duration(i)*10*time.Millisecond)
		}
	}
	// Silent for the penalty: out of the box.
	env.clock.Advance(30 * time.Second)
	if w := do(h, "192.0.2.1:1"); w.Code != 200 {
		t.Fatalf("after the penalty: %d", w.Code)
	}
	if counter(t, env, "penalty_box") != 6001 {
		t.Fatalf("penalty_box counter %d", counter(t, env, "penalty_box"))
	}
}

func TestListsStage(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 1, Burst: 1}
		c.Lists.Deny = []string{"203.0.113.0/24", "2001:db8::/32"}
		c.Lists.Allow = []string{"203.0.113.7", "192.0.2.0/24"}
	})
	h := env.s.Wrap(okHandler)
	w := do(h, "203.0.113.1:1")
	if w.Code != 403 || w.Header().Get("Connection") != "close" {
		t.Fatalf("denied: %d %v", w.Code, w.Header())
	}
	if w := do(h, "[2001:db8::5]:1"); w.Code != 403 {
		t.Fatalf("denied v6: %d", w.Code)
	}
	// Allowed sources skip the limits: rate 1 burst 1 would refuse these.
	for i := 0; i < 50; i++ {
		if w := do(h, "203.0.113.7:1"); w.Code != 200 {
			t.Fatalf("allowed host inside a denied network, request %d: %d", i, w.Code)
		}
		if w := do(h, "192.0.2.55:1"); w.Code != 200 {
			t.Fatalf("allowed network, request %d: %d", i, w.Code)
		}
	}
	if counter(t, env, "allowlist") != 100 || counter(t, env, "deny") != 2 {
		t.Fatalf("counters allowlist %d deny %d", counter(t, env, "allowlist"), counter(t, env, "deny"))
	}
}

func TestUnkeyedRequestsPass(t *testing.T) {
	env := newTest(t, func(c *Config) { c.Limits.PerIP = Bucket{Rate: 1, Burst: 1} })
	h := env.s.Wrap(okHandler)
	for i := 0; i < 5; i++ {
		if w := do(h, "@"); w.Code != 200 {
			t.Fatalf("unix-socket style RemoteAddr: %d", w.Code)
		}
	}
	if counter(t, env, "unkeyed") != 5 {
		t.Fatal("unkeyed not counted")
	}
}

func TestListsReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lists.txt")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("deny 203.0.113.0/24\n")
	env := newTest(t, func(c *Config) {
		c.Lists.File = file
		c.Lists.Allow = []string{"10.0.0.0/8"}
	})
	h := env.s.Wrap(okHandler)
	if do(h, "203.0.113.9:1").Code != 403 || do(h, "198.51.100.1:1").Code != 200 {
		t.Fatal("initial lists")
	}
	if changed, err := env.s.listsChanged(); err != nil || changed {
		t.Fatalf("unchanged file reported changed=%v err=%v", changed, err)
	}
	write("deny 198.51.100.0/24\n# 203.0.113.0/24 lifted\n")
	if changed, err := env.s.listsChanged(); err != nil || !changed {
		t.Fatalf("changed file reported changed=%v err=%v", changed, err)
	}
	if err := env.s.Reload(); err != nil {
		t.Fatal(err)
	}
	if do(h, "203.0.113.9:1").Code != 200 || do(h, "198.51.100.1:1").Code != 403 {
		t.Fatal("after reload")
	}
	// A broken file is refused and the lists in force stay.
	write("deny 198.51.100.0/24\nallow 10.0.0.1/8\n")
	err := env.s.Reload()
	if err == nil || !strings.Contains(err.Error(), "lists.txt:2: prefix \"10.0.0.1/8\" has host bits set") {
		t.Fatalf("broken file: %v", err)
	}
	if do(h, "198.51.100.1:1").Code != 403 {
		t.Fatal("lists changed by a failed reload")
	}
	// The inline allow list stays merged in; a file rule conflicting with it
	// is an error.
	write("deny 10.0.0.0/8\n")
	if err := env.s.Reload(); err == nil || !strings.Contains(err.Error(), "both allow and deny") {
		t.Fatalf("conflict with inline rules: %v", err)
	}
	if got := testutil.ToFloat64(env.s.m.listReloads.WithLabelValues("error")); got != 2 {
		t.Fatalf("reload error counter %v", got)
	}
	// A missing file at start is an error naming it.
	cfg := DefaultConfig()
	cfg.Lists.File = filepath.Join(dir, "nope.txt")
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "nope.txt") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSampledRejectionLog(t *testing.T) {
	env := newTest(t, func(c *Config) { c.Limits.PerIP = Bucket{Rate: 1, Burst: 1} })
	h := env.s.Wrap(okHandler)
	for i := 0; i < 1000; i++ {
		do(h, "192.0.2.1:1")
	}
	if n := strings.Count(env.logs.String(), "refusing requests"); n != 1 {
		t.Fatalf("%d log lines for 999 refusals in one instant, want 1", n)
	}
	env.clock.Advance(11 * time.Second)
	do(h, "192.0.2.1:1")
	do(h, "192.0.2.1:1")
	if n := strings.Count(env.logs.String(), "refusing requests"); n != 2 {
		t.Fatalf("%d log lines after 11 s, want 2", n)
	}
	if !strings.Contains(env.logs.String(), "refused=999") {
		t.Fatalf("the second line should count the refusals since the first: %s", env.logs.String())
	}
}

// TestRotationThroughStages is the memory-cap check at the scrubber level:
// one request from each of 65,000 sources (127.3.x.y, as the flood
// harness's rotation sends them) through a table capped at 16,384 keeps the
// table at its cap, and the heap does not grow with further rotations.
func TestRotationThroughStages(t *testing.T) {
	env := newTest(t, func(c *Config) {
		c.Limits.MaxSources = 16384
		c.Limits.PerPrefix = Bucket{}
	})
	s := env.s
	rotate := func(round int) {
		for i := 0; i < 65000; i++ {
			a := netip.AddrFrom4([4]byte{127, byte(3 + round), byte(i >> 8), byte(i)})
			s.admit(a, s.nowNanos())
		}
	}
	rotate(0)
	if n := s.perIP.Len(); n != 16384 {
		t.Fatalf("table holds %d after 65000 sources, cap 16384", n)
	}
	before := heapInUse()
	for r := 1; r <= 5; r++ {
		rotate(r)
	}
	after := heapInUse()
	if s.perIP.Len() != 16384 {
		t.Fatalf("table holds %d", s.perIP.Len())
	}
	if after > before+256<<10 {
		t.Fatalf("heap grew %d bytes over 5 more rotations of 65000 sources", after-before)
	}
	t.Logf("heap %d -> %d bytes; evictions %d", before, after, s.perIP.Evictions())
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// reuseWriter is a ResponseWriter whose header map is reused, so the
// allocation count is the stages' own.
type reuseWriter struct {
	h    http.Header
	code int
}

func (w *reuseWriter) Header() http.Header         { return w.h }
func (w *reuseWriter) WriteHeader(code int)        { w.code = code }
func (w *reuseWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestRejectPathDoesNotAllocate(t *testing.T) {
	env := newTest(t, func(c *Config) { c.Limits.PerIP = Bucket{Rate: 1, Burst: 1} })
	h := env.s.Wrap(okHandler)
	r := httptest.NewRequest("GET", "http://example.test/x", nil)
	r.RemoteAddr = "192.0.2.1:5555"
	w := &reuseWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	h.ServeHTTP(w, r) // fill the header map's keys once
	if w.code != 429 {
		t.Fatalf("setup: %d", w.code)
	}
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Fatalf("middleware reject path: %v allocs per request", n)
	}
	// The fast front end's decision and response bytes.
	a := netip.MustParseAddr("192.0.2.1")
	s := env.s
	if n := testing.AllocsPerRun(1000, func() {
		now := s.nowNanos()
		rr, p := s.admit(a, now)
		_ = p.wireReject(rr, false, (s.epochNS+now)/1e9)
	}); n != 0 {
		t.Fatalf("front end reject decision: %v allocs per request", n)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"bad mode", func(c *Config) { c.Limits.Mode = "leaky" }, "limits.mode: want token_bucket or penalty_box"},
		{"negative rate", func(c *Config) { c.Limits.PerIP.Rate = -1 }, "limits.per_ip.rate"},
		{"burst without rate", func(c *Config) { c.Limits.Global = Bucket{Burst: 5} }, "limits.global.burst: set without a rate"},
		{"zero burst", func(c *Config) { c.Limits.PerIP.Burst = 0 }, "limits.per_ip.burst: want 1..1000000"},
		{"prefix", func(c *Config) { c.Limits.IPv4Prefix = 33 }, "limits.ipv4_prefix"},
		{"looser attack", func(c *Config) { c.Attack.Limits.PerIP.Rate = 1000 }, "attack.limits.per_ip.rate: 1000 is above limits.per_ip.rate 100"},
		{"attack off bucket", func(c *Config) { c.Attack.Limits.PerPrefix = Bucket{} }, "attack.limits.per_prefix.rate: 0 turns the bucket off"},
		{"no trigger", func(c *Config) { c.Attack.RequestRate, c.Attack.LimitedShare = 0, 0 }, "nothing can trigger it"},
		{"share", func(c *Config) { c.Attack.LimitedShare = 1.5 }, "attack.limited_share: want 0..1"},
		{"report without token", func(c *Config) { c.Attack.Report.URL = "http://127.0.0.1:1/x" }, "attack.report.token_file: required"},
		{"report url", func(c *Config) { c.Attack.Report.URL = "ftp://x"; c.Attack.Report.TokenFile = "t" }, "attack.report.url"},
		{"challenge kind", func(c *Config) { c.Attack.Challenge.Enabled = true; c.Attack.Challenge.Kind = "captcha" }, "attack.challenge.kind"},
		{"cookie", func(c *Config) { c.Attack.Challenge.Enabled = true; c.Attack.Challenge.Cookie = "a b" }, "attack.challenge.cookie"},
		{"list entry", func(c *Config) { c.Lists.Deny = []string{"1.2.3.4", "nope"} }, "lists.deny[1]: bad address \"nope\""},
		{"list conflict", func(c *Config) { c.Lists.Deny = []string{"1.2.3.0/24"}; c.Lists.Allow = []string{"1.2.3.0/24"} }, "both allow and deny"},
		{"timeout", func(c *Config) { c.Connections.ReadHeaderTimeout = 0 }, "connections.read_header_timeout: must be positive"},
		{"header bytes", func(c *Config) { c.Connections.MaxHeaderBytes = 10 }, "connections.max_header_bytes"},
		{"penalty", func(c *Config) { c.Limits.Mode = ModePenaltyBox; c.Limits.Penalty = 0 }, "limits.penalty: want 1s..24h"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := cfg.ValidateAt("scrubber"); err != nil {
		t.Fatal(err)
	}
	cfg.Limits.MaxSources = 0
	if err := cfg.ValidateAt("scrubber"); err == nil || !strings.Contains(err.Error(), "scrubber.limits.max_sources") {
		t.Fatalf("prefix: %v", err)
	}
}
