package management

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/scrubber"
)

func goodReport() Report {
	t := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return Report{Node: "e1", Role: RoleEdge, Region: "eu", Version: "v1", AdminURL: "http://127.0.0.1:9080",
		Instance: "abc", Started: t, Seq: 1, At: t.Add(time.Second), Ready: true,
		Properties:    []PropertyCounters{{Property: "shop", Requests: Results{Hit: 3, Miss: 1}, Bytes: 10, Latency: []uint64{1, 3}}},
		LatencyBounds: []float64{0.1},
		Tiers:         []Tier{{Name: "ram", Objects: 1, Bytes: 100}},
		Counters:      map[string]uint64{"edge_refused": 2}, Gauges: map[string]float64{"load": 0.5}}
}

func TestDecodeReports(t *testing.T) {
	one, _ := json.Marshal(goodReport())
	reps, err := DecodeReports(one)
	if err != nil || len(reps) != 1 || reps[0].Properties[0].Requests.Hit != 3 {
		t.Fatalf("one: %+v %v", reps, err)
	}
	r2 := goodReport()
	r2.Seq = 2
	batch, _ := json.Marshal([]Report{goodReport(), r2})
	if reps, err := DecodeReports(batch); err != nil || len(reps) != 2 {
		t.Fatalf("batch: %v", err)
	}
	// Unknown fields are ignored (a newer node talking to an older management).
	if _, err := DecodeReports([]byte(strings.Replace(string(one), `{"node"`, `{"future_field":1,"node"`, 1))); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
	mut := func(f func(*Report)) []byte {
		r := goodReport()
		f(&r)
		b, _ := json.Marshal(r)
		return b
	}
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "empty report body"},
		{"spaces", []byte("  \n"), "empty report body"},
		{"not json", []byte("hello"), "bad report JSON"},
		{"trailing", append(append([]byte{}, one...), []byte(" {}")...), "trailing data"},
		{"empty batch", []byte("[]"), "empty report batch"},
		{"number", []byte("42"), "bad report JSON"},
		{"no node", mut(func(r *Report) { r.Node = "" }), "node is required"},
		{"control char", mut(func(r *Report) { r.Node = "a\x01b" }), "control character"},
		{"long node", mut(func(r *Report) { r.Node = strings.Repeat("n", 300) }), "longer than 256"},
		{"no role", mut(func(r *Report) { r.Role = "" }), "role is required"},
		{"bad role", mut(func(r *Report) { r.Role = "router" }), "unknown role"},
		{"no instance", mut(func(r *Report) { r.Instance = "" }), "instance is required"},
		{"seq 0", mut(func(r *Report) { r.Seq = 0 }), "seq must be at least 1"},
		{"no at", mut(func(r *Report) { r.At = time.Time{} }), "at is required"},
		{"at before start", mut(func(r *Report) { r.At = r.Started.Add(-time.Second) }), "before started"},
		{"bad admin url", mut(func(r *Report) { r.AdminURL = "ftp://x" }), "admin_url"},
		{"dup property", mut(func(r *Report) { r.Properties = append(r.Properties, r.Properties[0]) }), "duplicate property"},
		{"huge counter", mut(func(r *Report) { r.Properties[0].Bytes = 1 << 60 }), "exceeds 2^53"},
		{"sum overflow", mut(func(r *Report) { r.Properties[0].Requests = Results{Hit: 1 << 53, Miss: 1 << 53} }), "exceeds 2^53"},
		{"latency len", mut(func(r *Report) { r.Properties[0].Latency = []uint64{1} }), "latency has 1 buckets"},
		{"bounds order", mut(func(r *Report) { r.LatencyBounds = []float64{1, 0.5} }), "strictly increasing"},
		{"bad counter name", mut(func(r *Report) { r.Counters = map[string]uint64{"a b": 1} }), "only letters"},
		{"bad gauge name", mut(func(r *Report) { r.Gauges = map[string]float64{"": 1} }), "1..128"},
		{"attack share", mut(func(r *Report) { r.Attack = &Attack{LimitedShare: 2} }), "limited_share"},
		{"tier name", mut(func(r *Report) { r.Tiers = []Tier{{}} }), "tier name is required"},
		{"batch index", []byte("[" + string(one) + "," + string(mut(func(r *Report) { r.Seq = 0 })) + "]"), "report 1: seq"},
		{"type", []byte(`{"node":1}`), "bad report JSON"},
		{"too big", make([]byte, MaxReportBody+1), "larger than"},
	} {
		_, err := DecodeReports(c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

// Crashers found by FuzzDecodeReports are kept here.
var reportCrashers = []string{
	`[null]`,
	`{"node":"n","role":"edge","instance":"i","seq":1,"at":"2026-01-01T00:00:00Z","started":"2026-01-01T00:00:00Z","properties":[{"property":"p","latency":[1]}],"latency_bounds":[]}`,
	`{"node":"n","role":"dns","instance":"i","seq":1,"at":"9999-12-31T23:59:59Z","started":"0001-01-01T00:00:01Z"}`,
}

func FuzzDecodeReports(f *testing.F) {
	one, _ := json.Marshal(goodReport())
	f.Add(one)
	f.Add([]byte("[" + string(one) + "]"))
	for _, c := range reportCrashers {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		reps, err := DecodeReports(b)
		if err != nil {
			return
		}
		for _, r := range reps {
			if err := r.Validate(); err != nil {
				t.Fatalf("decoded report does not validate: %v", err)
			}
			// What the decoder accepts must survive a round trip.
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeReports(out); err != nil {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func TestReportCrashers(t *testing.T) {
	for _, c := range reportCrashers {
		DecodeReports([]byte(c)) // must not panic
	}
}

func TestFromEdgeSnapshot(t *testing.T) {
	origin := startOrigin(t)
	e := startEdge(t, "e1", "eu", edge.RoleEdge, origin.URL, "shop")
	e.get(t, "shop", "/a")
	e.get(t, "shop", "/a")
	e.get(t, "shop", "/fail/x")
	waitCounted(t, e)
	rep := EdgeReport(e.eng, e.reg)
	if len(rep.Properties) != 1 {
		t.Fatalf("%+v", rep)
	}
	p := rep.Properties[0]
	if p.Requests.Hit != 1 || p.Requests.Miss != 2 || p.Status.C5xx != 1 || p.Status.C2xx != 2 || p.Bytes == 0 ||
		len(p.Latency) != len(edge.LatencyBuckets)+1 || len(rep.LatencyBounds) != len(edge.LatencyBuckets) {
		t.Fatalf("%+v", p)
	}
	if len(rep.Tiers) != 1 || rep.Tiers[0].Name != "ram" || rep.Tiers[0].Objects != 1 || rep.Tiers[0].Bytes == 0 {
		t.Fatalf("tiers %+v", rep.Tiers)
	}
	if !rep.Ready {
		t.Fatal("not ready")
	}
	var sum uint64
	for _, v := range p.Latency {
		sum += v
	}
	if sum != 3 {
		t.Fatalf("latency buckets count %d requests", sum)
	}
}

// intake is a fake management intake that records what it receives.
type intake struct {
	mu     sync.Mutex
	status int
	got    [][]Report
}

func (in *intake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+clusterToken {
		http.Error(w, "no", 401)
		return
	}
	var body []byte
	body = make([]byte, r.ContentLength)
	r.Body.Read(body)
	reps, err := DecodeReports(body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if in.status != 0 {
		http.Error(w, "status", in.status)
		return
	}
	in.got = append(in.got, reps)
}

func TestReporterBacklog(t *testing.T) {
	in := &intake{status: 503}
	srv := httptest.NewServer(in)
	defer srv.Close()
	clk := newClock()
	n := uint64(0)
	r, err := NewReporter(ReporterConfig{URL: srv.URL, Token: clusterToken, Node: "e1", Role: RoleEdge, Now: clk.Now, MaxBacklog: 3},
		func() Report {
			n++
			return Report{Properties: []PropertyCounters{{Property: "p", Requests: Results{Hit: n}}}}
		})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Management answers 503 for 5 minutes of 10-second snapshots.
	for i := 0; i < 30; i++ {
		clk.Add(10 * time.Second)
		r.Collect()
		if err := r.Deliver(ctx); err == nil {
			t.Fatal("delivered to a failing management")
		}
	}
	// One snapshot per minute is kept, and at most MaxBacklog.
	if r.Backlog() != 3 {
		t.Fatalf("backlog %d", r.Backlog())
	}
	in.mu.Lock()
	in.status = 0
	in.mu.Unlock()
	if err := r.Deliver(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Backlog() != 0 || len(in.got) != 1 || len(in.got[0]) != 3 {
		t.Fatalf("backlog %d, got %d posts", r.Backlog(), len(in.got))
	}
	// Oldest first, the newest carries every count.
	b := in.got[0]
	if b[2].Properties[0].Requests.Hit != 30 || b[0].Seq >= b[1].Seq || b[1].Seq >= b[2].Seq || !b[0].At.Before(b[2].At) {
		t.Fatalf("batch %+v", b)
	}
	for i, rep := range b {
		if rep.Node != "e1" || rep.Instance != r.Instance() || (i > 0 && !rep.At.Truncate(time.Minute).After(b[i-1].At)) {
			t.Fatalf("%+v", rep)
		}
	}
	// A 400 drops the batch instead of blocking the node forever.
	in.mu.Lock()
	in.status = 400
	in.mu.Unlock()
	r.Collect()
	if err := r.Deliver(ctx); err != nil || r.Backlog() != 0 {
		t.Fatalf("400: %v, backlog %d", err, r.Backlog())
	}
}

func TestReporterConfigErrors(t *testing.T) {
	snap := func() Report { return Report{} }
	for _, c := range []struct {
		cfg  ReporterConfig
		want string
	}{
		{ReporterConfig{Token: "t", Node: "n", Role: "edge"}, "URL is required"},
		{ReporterConfig{URL: "ftp://x", Token: "t", Node: "n", Role: "edge"}, "absolute http"},
		{ReporterConfig{URL: "http://127.0.0.1:1", Node: "n", Role: "edge"}, "token"},
		{ReporterConfig{URL: "http://127.0.0.1:1", Token: "t", Role: "edge"}, "node is required"},
		{ReporterConfig{URL: "http://127.0.0.1:1", Token: "t", Node: "n", Role: "x"}, "unknown role"},
	} {
		if _, err := NewReporter(c.cfg, snap); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if _, err := NewReporter(ReporterConfig{URL: "http://127.0.0.1:1", Token: "t", Node: "n", Role: "edge"}, nil); err == nil {
		t.Error("nil snapshot accepted")
	}
}

func TestReporterRunDeliversAndFlushesOnStop(t *testing.T) {
	in := &intake{}
	srv := httptest.NewServer(in)
	defer srv.Close()
	var calls atomicCounter
	r, err := NewReporter(ReporterConfig{URL: srv.URL, Token: clusterToken, Node: "e1", Role: RoleEdge, Interval: time.Hour},
		func() Report { calls.add(); return Report{} })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	// The first snapshot goes out at once; stopping sends a last one. (Wait
	// for the first delivery: a snapshot still queued when the last one is
	// taken merges with it, as reports of the same minute do.)
	delivered := func() int {
		in.mu.Lock()
		defer in.mu.Unlock()
		return len(in.got)
	}
	for delivered() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	in.mu.Lock()
	defer in.mu.Unlock()
	total := 0
	for _, b := range in.got {
		total += len(b)
	}
	if total != 2 || calls.get() != 2 {
		t.Fatalf("%d reports delivered, %d snapshots", total, calls.get())
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (a *atomicCounter) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomicCounter) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func TestFromDNSStats(t *testing.T) {
	st := dnsredirect.Stats{
		Queries: []dnsredirect.QueryCount{
			{Type: "A", Rcode: "NOERROR", Site: "eu-west", Count: 10},
			{Type: "AAAA", Rcode: "NOERROR", Site: "us east", Count: 4},
			{Type: "A", Rcode: "NXDOMAIN", Site: "none", Count: 2},
		},
		Truncated: 1, GeoLookups: 3, AnswerCount: 16, AnswerTimeMean: 250 * time.Microsecond,
		Edges: []dnsredirect.EdgeStatus{{Name: "e1", Healthy: true}, {Name: "e2"}},
	}
	rep := FromDNSStats(st)
	rep.Node, rep.Role, rep.Instance, rep.Seq, rep.Started, rep.At = "dns1", RoleDNS, "i", 1, time.Unix(1, 0), time.Unix(2, 0)
	if err := rep.Validate(); err != nil {
		t.Fatal(err)
	}
	c := rep.Counters
	if c["dns_queries"] != 16 || c["dns_type_A"] != 12 || c["dns_rcode_NXDOMAIN"] != 2 || c["dns_site_us_east"] != 4 ||
		c["dns_truncated"] != 1 || rep.Gauges["dns_edges_healthy"] != 1 || rep.Gauges["dns_answer_time_mean_seconds"] != 0.00025 {
		t.Fatalf("%+v", rep)
	}
}

func TestGatherCountersAndAttackState(t *testing.T) {
	reg := prometheus.NewRegistry()
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_scrubber_refused_total", Help: "x"}, []string{"reason"})
	reg.MustRegister(cv, prometheus.NewGauge(prometheus.GaugeOpts{Name: "verge_scrubber_sources", Help: "x"}))
	cv.WithLabelValues("rate limit").Add(7)
	cv.WithLabelValues("deny").Add(2)
	got, err := GatherCounters(reg, "verge_scrubber_")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["verge_scrubber_refused_total.rate_limit"] != 7 || got["verge_scrubber_refused_total.deny"] != 2 {
		t.Fatalf("%v", got)
	}
	a := FromAttackState(scrubber.AttackState{Node: "s1", UnderAttack: true, Reason: "flood", RequestRate: 900, LimitedShare: 0.5})
	rep := Report{Node: "s1", Role: RoleScrubber, Instance: "i", Seq: 1, Started: time.Unix(1, 0), At: time.Unix(2, 0), Counters: got, Attack: a}
	if err := rep.Validate(); err != nil || !rep.Attack.UnderAttack {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestScrubberReporterPostsToIntake(t *testing.T) {
	m := startMgmt(t, testConfig(t), newClock())
	r := &scrubber.HTTPReporter{URL: m.url + "/api/v1/attacks", Token: clusterToken}
	at := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	if err := r.ReportAttack(context.Background(), scrubber.AttackState{Node: "scrub-eu", UnderAttack: true, At: at, Since: at,
		Reason: "request rate 5000/s", RequestRate: 5000, LimitedShare: 0.9, Policy: "attack"}); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, "GET", m.url+"/api/v1/nodes/scrub-eu", opToken, "")
	var n NodeView
	json.Unmarshal([]byte(body), &n)
	if code != 200 || n.Role != RoleScrubber || n.Attack == nil || !n.Attack.UnderAttack || n.Attack.RequestRate != 5000 {
		t.Fatalf("%d %s", code, body)
	}
	bad := &scrubber.HTTPReporter{URL: m.url + "/api/v1/attacks", Token: opToken}
	if err := bad.ReportAttack(context.Background(), scrubber.AttackState{Node: "x", At: at}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("operator token on the intake: %v", err)
	}
}
