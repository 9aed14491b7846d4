package purgelog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/edge"
)

// cache is a Purger that remembers what it applied.
type cache struct {
	mu      sync.Mutex // guards applied
	applied []uint64
	fail    error
}

func (c *cache) Purge(p edge.Purge) (edge.PurgeResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return edge.PurgeResult{}, c.fail
	}
	c.applied = append(c.applied, p.Seq)
	return edge.PurgeResult{Node: "n1", Seq: p.Seq, Matched: 1}, nil
}

func (c *cache) seqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.applied...)
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

type node struct {
	r     *Replica
	cache *cache
	srv   *httptest.Server
	ready []bool
	mu    sync.Mutex // guards ready
}

func (n *node) readiness() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprint(n.ready)
}

func newNode(t *testing.T, l *Log, o ReplicaOptions, peers ...string) *node {
	t.Helper()
	n := &node{cache: &cache{}}
	for _, p := range peers {
		c, err := NewClient(p, token, nil)
		if err != nil {
			t.Fatal(err)
		}
		o.Peers = append(o.Peers, c)
	}
	o.Name = "n1"
	o.Auth = BearerAuth(token)
	o.SetReady = func(ok bool) { n.mu.Lock(); n.ready = append(n.ready, ok); n.mu.Unlock() }
	n.r = NewReplica(l, n.cache, o)
	n.srv = httptest.NewServer(n.r.Handler())
	t.Cleanup(n.srv.Close)
	return n
}

func post(t *testing.T, url, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

func purgeJSON(seq uint64) string {
	return fmt.Sprintf(`{"seq":%d,"kind":"tag","value":"tag-%d"}`, seq, seq)
}

func TestReplicaPurge(t *testing.T) {
	authority := openLog(t, t.TempDir())
	for range 50 {
		authority.Append(edge.Purge{Kind: edge.PurgeTag, Value: fmt.Sprintf("tag-%d", authority.Last()+1)})
	}
	_, peer := serve(t, authority, nil)
	dir := t.TempDir()
	l := openLog(t, dir)
	n := newNode(t, l, ReplicaOptions{}, peer.URL())
	for seq := uint64(1); seq <= 10; seq++ {
		if code, body := post(t, n.srv.URL+"/purge", token, purgeJSON(seq)); code != 200 || body != fmt.Sprintf(`{"node":"n1","seq":%d,"matched":1,"took_ns":0}`, seq) {
			t.Fatalf("purge %d: %d %s", seq, code, body)
		}
	}
	// 11..50 were missed: 51 has a gap, so the node catches up first.
	authority.Append(edge.Purge{Kind: edge.PurgeTag, Value: "tag-51"})
	code, body := post(t, n.srv.URL+"/purge", token, purgeJSON(51))
	if code != 200 || body != `{"node":"n1","seq":51,"matched":1,"took_ns":0,"caught_up":40}` {
		t.Errorf("gap: %d %s", code, body)
	}
	if got := n.cache.seqs(); fmt.Sprint(got) != fmt.Sprint(seqRange(1, 51)) {
		t.Errorf("applied in order %v", got)
	}
	// Again: acknowledged, not reapplied.
	code, body = post(t, n.srv.URL+"/purge", token, purgeJSON(51))
	if code != 200 || body != `{"node":"n1","seq":51,"matched":0,"took_ns":0,"duplicate":true}` || len(n.cache.seqs()) != 51 {
		t.Errorf("duplicate: %d %s", code, body)
	}
	// Without a number: applied, not recorded.
	if code, body := post(t, n.srv.URL+"/purge", token, `{"kind":"all"}`); code != 200 || !strings.Contains(body, `"matched":1`) || l.Len() != 51 {
		t.Errorf("local purge: %d %s, %d records", code, body, l.Len())
	}
	for _, c := range []struct {
		tok, body string
		code      int
		want      string
	}{
		{"wrong", purgeJSON(52), 401, "missing or bad cluster token"},
		{token, `{"seq":52,"kind":"tag"}`, 400, "tag must be one non-empty word"},
		{token, `{"seq":52,"kind":"all"} x`, 400, "bad purge request"},
		{token, `{"seq":-1,"kind":"all"}`, 400, "bad purge request"},
		{token, `{"kind":"all","x":1}`, 400, `unknown field \"x\"`},
		{token, `{"kind":"url","value":"http://a.test/` + strings.Repeat("x", maxPurgeBody) + `"}`, 413, "larger than"},
	} {
		if code, body := post(t, n.srv.URL+"/purge", c.tok, c.body); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%.40s: %d %s, want %d %s", c.body, code, body, c.code, c.want)
		}
	}
	// A restart remembers: a node over the same directory is at 51.
	l.Close()
	l2 := openLog(t, dir)
	if l2.Last() != 51 || l2.Len() != 51 {
		t.Errorf("after a restart: last %d, %d records", l2.Last(), l2.Len())
	}
}

func TestReplicaGapPeerDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	n := newNode(t, openLog(t, t.TempDir()), ReplicaOptions{}, down.URL)
	code, body := post(t, n.srv.URL+"/purge", token, purgeJSON(7))
	if code != 200 || !strings.Contains(body, `"seq":7,"matched":1`) || !strings.Contains(body, `"sync_error":"purgelog: peer http://127.0.0.1:`) || !strings.Contains(body, "connection refused") {
		t.Errorf("%d %s", code, body)
	}
	if n.r.Log().Last() != 7 {
		t.Error("the purge was not recorded")
	}
}

func TestReplicaApplyFails(t *testing.T) {
	n := newNode(t, openLog(t, t.TempDir()), ReplicaOptions{})
	n.cache.fail = errors.New("disk on fire")
	if code, body := post(t, n.srv.URL+"/purge", token, purgeJSON(1)); code != 500 || !strings.Contains(body, "disk on fire") {
		t.Errorf("%d %s", code, body)
	}
	if n.r.Log().Len() != 0 {
		t.Error("a purge that failed was recorded")
	}
}

// clock is an injected clock: After returns a channel the test fires, and
// reports each wait on waits.
type clock struct {
	mu    sync.Mutex // guards now
	now   time.Time
	waits chan time.Duration
	fire  chan time.Time
}

func newClock() *clock {
	return &clock{now: time.Unix(1e9, 0), waits: make(chan time.Duration, 100), fire: make(chan time.Time)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d) // the wait has passed once it fires
	c.mu.Unlock()
	c.waits <- d
	return c.fire
}

// TestReplicaRun: not ready while the peer fails, and the log endpoints
// refuse; ready after the first successful catch-up; then a round every
// interval.
func TestReplicaRun(t *testing.T) {
	authority := openLog(t, t.TempDir())
	fill(t, authority, 1, 1000)
	var failures atomic.Int32
	failures.Store(2)
	var nodeURL atomic.Value
	var seenWhileBehind atomic.Value
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failures.Add(-1) >= 0 {
			// While the node cannot catch up, nobody may copy its log.
			code, body := get(t, nodeURL.Load().(string)+"/purgelog/summary", token)
			seenWhileBehind.Store(fmt.Sprint(code, " ", body))
			http.Error(w, "management restarting", http.StatusServiceUnavailable)
			return
		}
		Handler(authority, BearerAuth(token), nil).ServeHTTP(w, r)
	}))
	defer peer.Close()
	clk := newClock()
	l := openLog(t, t.TempDir())
	fill(t, l, 1, 200)
	n := newNode(t, l, ReplicaOptions{Interval: 30 * time.Second, Retry: time.Second, Now: clk.Now, After: clk.After}, peer.URL)
	nodeURL.Store(n.srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.r.Run(ctx); close(done) }()

	for i := range 2 {
		if d := <-clk.waits; d != time.Second {
			t.Fatalf("wait %d: %v, want the retry", i, d)
		}
		if n.r.CaughtUp() || n.readiness() != "[false]" {
			t.Fatalf("ready while failing: %s", n.readiness())
		}
		clk.fire <- time.Time{}
	}
	if got := seenWhileBehind.Load(); !strings.HasPrefix(got.(string), "503 ") {
		t.Errorf("log endpoints while behind: %s", got)
	}
	if d := <-clk.waits; d != 30*time.Second {
		t.Fatalf("after catching up: waits %v, want the interval", d)
	}
	if !n.r.CaughtUp() || n.readiness() != "[false true]" || l.Last() != 1000 || len(n.cache.seqs()) != 800 {
		t.Fatalf("after the catch-up: caught up %v, readiness %s, last %d, applied %d", n.r.CaughtUp(), n.readiness(), l.Last(), len(n.cache.seqs()))
	}
	// Purges the node never heard of arrive with the next round.
	fill(t, authority, 1001, 1100)
	clk.fire <- time.Time{}
	<-clk.waits
	if l.Last() != 1100 {
		t.Errorf("anti-entropy round: last %d", l.Last())
	}
	reg := prometheus.NewRegistry()
	if err := n.r.Register(reg); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"verge_distribution_purge_log_last_seq": 1100, "verge_distribution_purge_caught_up": 1,
		"verge_distribution_purges_applied_total": 900, "verge_distribution_purge_syncs_total": 4,
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	cancel()
	<-done
}

// gathered sums a metric's series.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestReplicaStartWait(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	clk := newClock()
	var logs bytes.Buffer
	n := newNode(t, openLog(t, t.TempDir()), ReplicaOptions{Retry: time.Second, StartWait: 3 * time.Second, Now: clk.Now, After: clk.After, Log: testLogger(&logs)}, down.URL)
	done := make(chan struct{})
	go func() { n.r.Run(context.Background()); close(done) }()
	for range 3 {
		<-clk.waits
		clk.fire <- time.Time{}
	}
	<-done // Interval 0: Run returns once ready
	if n.readiness() != "[false true]" || n.r.CaughtUp() {
		t.Errorf("readiness %s, caught up %v", n.readiness(), n.r.CaughtUp())
	}
	if !strings.Contains(logs.String(), "serving without having caught up") {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestReplicaWithoutPeers(t *testing.T) {
	n := newNode(t, openLog(t, t.TempDir()), ReplicaOptions{})
	n.r.Run(context.Background())
	if n.readiness() != "[true]" || !n.r.CaughtUp() {
		t.Errorf("readiness %s", n.readiness())
	}
	if code, _ := post(t, n.srv.URL+"/purge", token, purgeJSON(9)); code != 200 {
		t.Error(code)
	}
	if st, err := n.r.Sync(context.Background()); err != nil || st.Requests != 0 {
		t.Errorf("%+v %v", st, err)
	}
}
