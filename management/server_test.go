package management

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/management/alerts"
)

// webhookSink is a real webhook receiver that fails its first answers.
type webhookSink struct {
	mu    sync.Mutex
	fails int
	tries int
	got   []alerts.Notification
	seen  chan struct{}
}

func (h *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tries++
	if h.fails > 0 {
		h.fails--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var n alerts.Notification
	b, _ := io.ReadAll(r.Body)
	json.Unmarshal(b, &n)
	h.got = append(h.got, n)
	h.seen <- struct{}{}
}

func TestAlertsFireResolveAndNotify(t *testing.T) {
	sink := &webhookSink{fails: 2, seen: make(chan struct{}, 100)}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	clk := newClock()
	rule := func(name string, k alerts.Kind, mod func(*alerts.Rule)) alerts.Rule {
		r := alerts.DefaultRule()
		r.Name, r.Kind = name, k
		if mod != nil {
			mod(&r)
		}
		return r
	}
	f := newFleetFixture(t, clk, func(c *Config) {
		c.Alerts.Webhook.URL = hook.URL
		c.Alerts.Rules = []alerts.Rule{
			rule("silent", alerts.NodeSilent, func(r *alerts.Rule) { r.For = configs.Duration(30 * time.Second) }),
			rule("low-hits", alerts.HitRatioBelow, func(r *alerts.Rule) {
				r.Threshold, r.Window, r.MinRequests, r.Roles = 0.5, configs.Duration(time.Minute), 5, []string{"edge"}
			}),
			rule("errors", alerts.ErrorRateAbove, func(r *alerts.Rule) {
				r.Threshold, r.Window, r.MinRequests, r.Severity = 0.2, configs.Duration(time.Minute), 5, "critical"
			}),
			rule("attack", alerts.Attack, nil),
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.m.s.hook.Run(ctx)
	s := f.m.s

	f.report(t)
	clk.Add(10 * time.Second)
	// Misses only on the first edge (hit ratio 0); 503s on the second.
	for i := 0; i < 6; i++ {
		f.edges[0].get(t, "shop", fmt.Sprintf("/m%d", i))
		f.edges[1].get(t, "blog", "/fail/x")
	}
	waitCounted(t, f.edges...)
	f.report(t)
	ch := s.EvaluateAlerts()
	ids := []string{}
	for _, a := range ch {
		ids = append(ids, a.ID+":"+a.State)
	}
	if strings.Join(ids, ",") != "errors/edge-eu-2:firing,low-hits/edge-eu-1:firing" {
		t.Fatalf("transitions %v", ids)
	}
	// A node goes silent, another reports an attack.
	clk.Add(35 * time.Second)
	for _, i := range []int{0, 1, 3} {
		f.reps[i].Collect()
		f.reps[i].Deliver(ctx)
	}
	if code, body := call(t, "POST", f.m.url+"/api/v1/attacks", clusterToken,
		`{"node":"edge-eu-1","under_attack":true,"at":"2026-03-01T12:00:45Z","reason":"flood"}`); code != 200 {
		t.Fatal(code, body)
	}
	ch = s.EvaluateAlerts()
	ids = ids[:0]
	for _, a := range ch {
		ids = append(ids, a.ID+":"+a.State)
	}
	if strings.Join(ids, ",") != "attack/edge-eu-1:firing,silent/edge-us-1:firing" {
		t.Fatalf("transitions %v", ids)
	}
	code, body := call(t, "GET", f.m.url+"/api/v1/alerts", opToken, "")
	var aa struct {
		Active []alerts.Alert `json:"active"`
	}
	json.Unmarshal([]byte(body), &aa)
	if code != 200 || len(aa.Active) != 4 {
		t.Fatalf("alerts %d %s", code, body)
	}
	if m := scrape(t, f.m); !strings.Contains(m, `verge_management_alerts_firing{rule="low-hits",severity="warning"} 1`) {
		t.Errorf("firing gauge missing:\n%s", m)
	}

	// Everything recovers: the window passes, the node reports, the attack ends.
	clk.Add(2 * time.Minute)
	for i := 0; i < 6; i++ {
		f.edges[0].get(t, "shop", "/m0")
	}
	waitCounted(t, f.edges...)
	f.report(t)
	call(t, "POST", f.m.url+"/api/v1/attacks", clusterToken, `{"node":"edge-eu-1","under_attack":false,"at":"2026-03-01T12:03:00Z"}`)
	ch = s.EvaluateAlerts()
	if len(ch) != 4 {
		t.Fatalf("resolved %+v", ch)
	}
	for _, a := range ch {
		if a.State != alerts.Resolved {
			t.Errorf("%+v", a)
		}
	}
	// The webhook got all eight transitions, in order, despite failing twice.
	for i := 0; i < 8; i++ {
		select {
		case <-sink.seen:
		case <-time.After(30 * time.Second):
			t.Fatalf("webhook got %d notifications", i)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.tries != 10 || sink.got[0].Status != "firing" || sink.got[7].Status != "resolved" || sink.got[0].Alert.ID != "errors/edge-eu-2" {
		t.Errorf("webhook: %d tries, %+v", sink.tries, sink.got)
	}
	if v := testutil.ToFloat64(f.m.s.m.webhook.WithLabelValues("retry")); v != 2 {
		t.Errorf("retries metric %v", v)
	}
}

func promHandler(m *mgmt) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// scrape returns /metrics of m as text.
func scrape(t *testing.T, m *mgmt) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promHandler(m).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestMetricsPerNodeAndProperty(t *testing.T) {
	clk := newClock()
	f := newFleetFixture(t, clk, nil)
	f.report(t)
	clk.Add(10 * time.Second)
	f.traffic(t, 4)
	f.report(t)
	want := []string{
		`verge_management_node_up{node="edge-eu-1",region="eu",role="edge"} 1`,
		`verge_management_node_requests_total{cache="hit",node="edge-eu-1",region="eu",role="edge"} 1`,
		`verge_management_node_requests_total{cache="miss",node="hub-eu",region="eu",role="hub"} 4`,
		`verge_management_node_responses_total{class="5xx",node="edge-us-1",region="us",role="edge"} 1`,
		`verge_management_node_cache_objects{node="edge-eu-2",region="eu",role="edge",tier="ram"} 3`,
		`verge_management_node_requests_per_second{node="edge-eu-1",region="eu",role="edge"} 0.5`,
		`verge_management_node_counter_total{name="edge_refused",node="edge-eu-1",region="eu",role="edge"} 0`,
		`verge_management_property_requests_total{cache="hit",property="shop",role="edge"} 3`,
		`verge_management_property_requests_total{cache="miss",property="shop",role="edge"} 9`,
		`verge_management_property_responses_total{class="5xx",property="blog",role="edge"} 3`,
		`verge_management_property_requests_total{cache="miss",property="shop",role="hub"} 3`,
		`verge_management_property_request_duration_seconds_count{property="shop",role="edge"} 12`,
		`verge_management_fleet_nodes{health="up",role="edge"} 3`,
		`verge_management_reports_total{result="accepted"} 8`,
	}
	body := scrape(t, f.m)
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestSampleConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	if err := configs.Load("../configs/manage.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.API != "127.0.0.1:9300" || len(cfg.Alerts.Rules) != 4 || cfg.Alerts.Rules[1].MinRequests != 100 {
		t.Errorf("%+v", cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`listen:
  api: nope
database: ""
operator_token: a
operator_token_file: /x
node_timeout: 0s
usage:
  rollup_after: 10m
purge:
  roles: [dns]
nodes:
  - name: e1
    role: router
    admin_url: ftp://x
  - name: e1
    role: edge
alerts:
  webhook:
    url: nope
    max_attempts: 0
  rules:
    - name: r
      kind: nope
`), 0o644)
	cfg := DefaultConfig()
	err := configs.Load(bad, &cfg)
	for _, want := range []string{
		"bad.yaml:2: listen.api: want host:port", "bad.yaml:3: database: required", "operator_token_file: set operator_token or",
		"cluster_token_file: required", "node_timeout: must be positive", "usage.rollup_after: must be at least 1h",
		"purge.roles[0]: unknown role", "nodes[0].role", "nodes[0].admin_url", "nodes[1].name: duplicate",
		"alerts.webhook.url", "alerts.webhook.max_attempts", "alerts.rules[0].kind: unknown kind",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// Equal tokens are refused.
	c := testConfig(t)
	c.ClusterToken = opToken
	if _, err := New(c, Options{}); err == nil || !strings.Contains(err.Error(), "must differ") {
		t.Errorf("same tokens: %v", err)
	}
	c = testConfig(t)
	c.OperatorToken, c.OperatorTokenFile = "", filepath.Join(dir, "missing")
	if _, err := New(c, Options{}); err == nil {
		t.Error("missing token file accepted")
	}
}

type fakeSink struct {
	loads  map[string]float64
	attack map[string]bool
}

func (f *fakeSink) SetLoad(e string, l float64) error {
	if e == "edge-us-1" {
		return errUnknownEdge
	}
	f.loads[e] = l
	return nil
}

func (f *fakeSink) SetUnderAttack(e string, on bool) error {
	f.attack[e] = on
	return nil
}

var errUnknownEdge = io.ErrUnexpectedEOF

func TestLoadPuller(t *testing.T) {
	clk := newClock()
	f := newFleetFixture(t, clk, nil)
	f.report(t)
	clk.Add(10 * time.Second)
	f.traffic(t, 9)
	f.report(t)
	call(t, "POST", f.m.url+"/api/v1/attacks", clusterToken, `{"node":"edge-eu-2","under_attack":true,"at":"2026-03-01T12:00:10Z"}`)
	sink := &fakeSink{loads: map[string]float64{}, attack: map[string]bool{}}
	p := &LoadPuller{URL: f.m.url, Token: clusterToken}
	l, err := p.Pull(context.Background(), sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Edges) != 3 || sink.loads["edge-eu-1"] != 1 || !sink.attack["edge-eu-2"] || sink.attack["edge-eu-1"] || len(sink.loads) != 2 {
		t.Fatalf("%+v %+v", l, sink)
	}
	if _, err := (&LoadPuller{URL: f.m.url, Token: "bad"}).Pull(context.Background(), sink); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad token: %v", err)
	}
}
