package management

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vergecdn/verge/distribution/purgelog"
	"github.com/vergecdn/verge/edge"
)

// fleetFixture is management with three reporting edges and a hub.
type fleetFixture struct {
	m     *mgmt
	edges []*testEdge
	reps  []*Reporter
}

func newFleetFixture(t *testing.T, clk *clock, mutate func(*Config)) *fleetFixture {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	origin := startOrigin(t)
	f := &fleetFixture{m: startMgmt(t, cfg, clk)}
	for _, n := range []struct{ name, region string }{{"edge-eu-1", "eu"}, {"edge-eu-2", "eu"}, {"edge-us-1", "us"}} {
		f.edges = append(f.edges, startEdge(t, n.name, n.region, edge.RoleEdge, origin.URL, "shop", "blog"))
	}
	f.edges = append(f.edges, startEdge(t, "hub-eu", "eu", edge.RoleHub, origin.URL, "shop", "blog"))
	for _, e := range f.edges {
		f.reps = append(f.reps, e.reporter(t, f.m.url, clk))
	}
	return f
}

// report makes every node report once.
func (f *fleetFixture) report(t *testing.T) {
	t.Helper()
	for _, r := range f.reps {
		r.Collect()
		if err := r.Deliver(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// traffic sends n requests per edge: a miss then hits, plus one 5xx.
func (f *fleetFixture) traffic(t *testing.T, n int) {
	t.Helper()
	for _, e := range f.edges {
		for i := 0; i < n; i++ {
			e.get(t, "shop", fmt.Sprintf("/p%d", i%3))
		}
		e.get(t, "blog", "/fail/1")
	}
	waitCounted(t, f.edges...)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

func TestAPIAuthMethodsAndNotFound(t *testing.T) {
	m := startMgmt(t, testConfig(t), newClock())
	u := m.url + "/api/v1"
	endpoints := []struct {
		path    string
		methods []string
		token   string
	}{
		{"/reports", []string{"POST"}, clusterToken},
		{"/attacks", []string{"POST"}, clusterToken},
		{"/loads", []string{"GET"}, clusterToken},
		{"/nodes", []string{"GET"}, opToken},
		{"/nodes/x", []string{"GET"}, opToken},
		{"/series", []string{"GET"}, opToken},
		{"/properties", []string{"GET"}, opToken},
		{"/usage", []string{"GET"}, opToken},
		{"/alerts", []string{"GET"}, opToken},
		{"/purge", []string{"GET", "POST"}, opToken},
		{"/purge/1", []string{"GET"}, opToken},
		{"/preload", []string{"GET", "POST"}, opToken},
		{"/preload/1", []string{"GET"}, opToken},
	}
	for _, ep := range endpoints {
		other := opToken
		if ep.token == opToken {
			other = clusterToken
		}
		for _, method := range ep.methods {
			for _, tok := range []string{"", "wrong", other} {
				code, body := call(t, method, u+ep.path, tok, "{}")
				if code != http.StatusUnauthorized || !strings.Contains(body, "token") {
					t.Errorf("%s %s with token %q: %d %s", method, ep.path, tok, code, body)
				}
			}
		}
		for _, method := range []string{"PUT", "DELETE", "PATCH"} {
			req, _ := http.NewRequest(method, u+ep.path, nil)
			req.Header.Set("Authorization", "Bearer "+ep.token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != strings.Join(ep.methods, ", ") {
				t.Errorf("%s %s: %d Allow=%q", method, ep.path, res.StatusCode, res.Header.Get("Allow"))
			}
		}
	}
	res, err := http.Get(m.url + "/api/v1/purge")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	for _, p := range []string{"/api/v1/nope", "/api/v2/nodes", "/api/v1/nodes/a/b", "/api/"} {
		code, body := call(t, "GET", m.url+p, opToken, "")
		if code != http.StatusNotFound || !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	for path, want := range map[string]string{
		"/api/v1/nodes/nobody": "no node", "/api/v1/purge/77": "no purge 77", "/api/v1/preload/5": "no preload 5",
		"/api/v1/series?node=nobody": "no node",
	} {
		code, body := call(t, "GET", m.url+path, opToken, "")
		if code != http.StatusNotFound || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
}

func TestAPIBadRequests(t *testing.T) {
	m := startMgmt(t, testConfig(t), newClock())
	u := m.url + "/api/v1"
	for _, c := range []struct {
		method, path, token, body string
		code                      int
		want                      string
	}{
		{"POST", "/purge", opToken, ``, 400, "empty body"},
		{"POST", "/purge", opToken, `{`, 400, "bad purge request"},
		{"POST", "/purge", opToken, `{"kind":"url"}`, 400, "needs an absolute http(s) URL"},
		{"POST", "/purge", opToken, `{"kind":"nuke"}`, 400, `unknown kind "nuke"`},
		{"POST", "/purge", opToken, `{"kind":"all","value":"x"}`, 400, `takes no value`},
		{"POST", "/purge", opToken, `{"kind":"all","seq":5}`, 400, `unknown field "seq"`},
		{"POST", "/purge", opToken, `{"kind":"tag","value":"a b"}`, 400, `one non-empty word`},
		{"POST", "/purge", opToken, `{"kind":"all"} {}`, 400, `trailing data`},
		{"POST", "/purge", opToken, `{"kind":"host","value":"a/b"}`, 400, `bad host`},
		{"POST", "/purge", opToken, `{"value":"x"}`, 400, `"kind" is required`},
		{"POST", "/purge", opToken, `{"kind":"all"}` + strings.Repeat(" ", maxPurgeRequest), 413, "larger than"},
		{"GET", "/purge/abc", opToken, ``, 400, "positive integer"},
		{"GET", "/purge/0", opToken, ``, 400, "positive integer"},
		{"GET", "/purge?limit=0", opToken, ``, 400, "limit"},
		{"GET", "/preload?limit=x", opToken, ``, 400, "limit"},
		{"GET", "/preload/-1", opToken, ``, 400, "positive integer"},
		{"POST", "/preload", opToken, `{}`, 400, "at least one URL"},
		{"POST", "/preload", opToken, `{"urls":["/relative"]}`, 400, "absolute http(s) URL"},
		{"POST", "/preload", opToken, `{"urls":["http://a.test/"],"roles":["dns"]}`, 400, "unknown role"},
		{"POST", "/preload", opToken, `{"urls":["http://a.test/"],"x":1}`, 400, "unknown field"},
		{"POST", "/preload", opToken, `{"urls":["` + strings.Repeat("a", maxPreloadRequest) + `"]}`, 413, "larger than"},
		{"POST", "/reports", clusterToken, `{}`, 400, "node is required"},
		{"POST", "/reports", clusterToken, `[`, 400, "bad report JSON"},
		{"POST", "/reports", clusterToken, strings.Repeat(" ", MaxReportBody+1), 413, "larger than"},
		{"POST", "/attacks", clusterToken, `{"node":""}`, 400, "node is required"},
		{"POST", "/attacks", clusterToken, `{"node":"s1"}`, 400, "at is required"},
		{"POST", "/attacks", clusterToken, `nope`, 400, "bad attack report"},
		{"POST", "/attacks", clusterToken, strings.Repeat(" ", 70<<10), 413, "larger than"},
		{"GET", "/usage?step=week", opToken, ``, 400, "step: want minute, hour or day"},
		{"GET", "/usage?from=yesterday", opToken, ``, 400, "from: want RFC 3339"},
		{"GET", "/usage?to=nope", opToken, ``, 400, "to: want RFC 3339"},
		{"GET", "/usage?from=2000&to=1000", opToken, ``, 400, "to must be after from"},
		{"GET", "/usage?role=dns", opToken, ``, 400, "role: want edge, hub or all"},
		{"GET", "/usage?format=xml", opToken, ``, 400, "format: want json or csv"},
		{"GET", "/usage?colour=red", opToken, ``, 400, `unknown parameter "colour"`},
		{"GET", "/usage?step=minute&from=0&to=100000000", opToken, ``, 400, "at most 50000"},
		{"GET", "/usage?property=%01", opToken, ``, 400, "control character"},
		{"GET", "/series?window=2h", opToken, ``, 400, "window: at most 1h0m0s"},
		{"GET", "/series?step=5s", opToken, ``, 400, "step: a multiple of 10s"},
		{"GET", "/series?step=15s", opToken, ``, 400, "step: a multiple of 10s"},
		{"GET", "/series?window=1h&step=7m10s", opToken, ``, 400, "window must be a multiple of step"},
		{"GET", "/series?window=-1h", opToken, ``, 400, "window: want a positive duration"},
		{"GET", "/series?role=router", opToken, ``, 400, "role: want"},
		{"GET", "/series?node=a&property=b", opToken, ``, 400, "exclusive"},
		{"GET", "/properties?role=x", opToken, ``, 400, "role: want"},
	} {
		code, body := call(t, c.method, u+c.path, c.token, c.body)
		var e APIError
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
			t.Errorf("%s %s: error body is not JSON: %s", c.method, c.path, body)
		}
		if code != c.code || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s %.40q: %d %s, want %d %q", c.method, c.path, c.body, code, e.Error, c.code, c.want)
		}
	}
}

func TestAPIFleetEndpoints(t *testing.T) {
	clk := newClock()
	f := newFleetFixture(t, clk, func(c *Config) {
		c.Nodes = []NodeConfig{{Name: "edge-ap-1", Role: RoleEdge, Region: "ap"}}
	})
	u := f.m.url + "/api/v1"
	f.report(t)
	clk.Add(10 * time.Second)
	f.traffic(t, 10) // per edge: 3 misses, 7 hits on shop; a 503 on blog
	f.report(t)

	code, body := call(t, "GET", u+"/nodes", opToken, "")
	if code != 200 {
		t.Fatal(code, body)
	}
	o := decode[Overview](t, body)
	if len(o.Nodes) != 5 || o.Generation == 0 {
		t.Fatalf("nodes %+v", o)
	}
	byName := map[string]NodeView{}
	for _, n := range o.Nodes {
		byName[n.Name] = n
	}
	if n := byName["edge-ap-1"]; n.Health != HealthUnknown || n.LastReportAge != nil {
		t.Errorf("configured, silent node: %+v", n)
	}
	e1 := byName["edge-eu-1"]
	// Per edge: 10 shop requests (3 misses, 7 hits) and a blog 503 (a miss).
	if e1.Health != HealthUp || e1.Region != "eu" || e1.Version != "test" || e1.RequestsPerSecond != 11.0/10 ||
		e1.HitRatio == nil || *e1.HitRatio != 7.0/11 || e1.Window.Requests != 11 || e1.Totals.Requests != 11 ||
		e1.ErrorRate == nil || *e1.ErrorRate != 1.0/11 || len(e1.Tiers) != 1 || e1.Load != e1.RequestsPerSecond || *e1.LastReportAge != 0 {
		t.Errorf("edge-eu-1: %+v", e1)
	}
	if tot := o.Totals[RoleEdge]; tot.Nodes != 4 || tot.Up != 3 || math.Abs(tot.RequestsPerSecond-3.3) > 1e-9 || *tot.HitRatio != 21.0/33 {
		t.Errorf("edge totals %+v", tot)
	}
	if o.Nodes[0].Region != "ap" || o.Nodes[1].Name != "edge-eu-1" || o.Nodes[3].Name != "hub-eu" {
		t.Errorf("order: %v %v %v", o.Nodes[0].Name, o.Nodes[1].Name, o.Nodes[3].Name)
	}

	code, body = call(t, "GET", u+"/nodes/hub-eu", opToken, "")
	if n := decode[NodeView](t, body); code != 200 || n.Role != RoleHub || n.Totals.Requests != 11 {
		t.Errorf("hub: %d %+v", code, n)
	}

	// A node silent past node_timeout is down.
	clk.Add(20 * time.Second)
	f.reps[0].Collect()
	f.reps[0].Deliver(context.Background())
	_, body = call(t, "GET", u+"/nodes/edge-eu-2", opToken, "")
	if n := decode[NodeView](t, body); n.Health != HealthDown || *n.LastReportAge != 20 {
		t.Errorf("silent edge: %+v", n)
	}

	code, body = call(t, "GET", u+"/series?window=10m&step=1m", opToken, "")
	s := decode[SeriesAnswer](t, body)
	if code != 200 || len(s.Points) != 10 || s.Role != RoleEdge {
		t.Fatalf("series %d %+v", code, s)
	}
	var req uint64
	for _, p := range s.Points {
		req += p.Requests
	}
	if req != 33 {
		t.Errorf("series holds %d edge requests, want 33", req)
	}
	code, body = call(t, "GET", u+"/series?node=hub-eu&window=1m&step=10s", opToken, "")
	if s := decode[SeriesAnswer](t, body); code != 200 || len(s.Points) != 6 || s.Node != "hub-eu" {
		t.Errorf("node series %d %+v", code, s)
	}
	code, body = call(t, "GET", u+"/series?property=shop&window=5m&step=5m", opToken, "")
	if s := decode[SeriesAnswer](t, body); code != 200 || s.Points[0].Requests != 30 || *s.Points[0].HitRatio != 0.7 {
		t.Errorf("property series %d %s", code, body)
	}

	code, body = call(t, "GET", u+"/properties", opToken, "")
	if code != 200 || !strings.Contains(body, `"property": "blog"`) || !strings.Contains(body, `"requests": 30`) {
		t.Errorf("properties %d %s", code, body)
	}

	// Usage as JSON and CSV.
	code, body = call(t, "GET", u+"/usage?property=shop&step=minute", opToken, "")
	ua := decode[UsageAnswer](t, body)
	if code != 200 || ua.Totals.Requests != 30 || ua.Totals.Hits != 21 || ua.Role != RoleEdge || len(ua.Rows) != 1 || ua.Rows[0].Seconds != 60 {
		t.Errorf("usage %d %s", code, body)
	}
	code, body = call(t, "GET", u+"/usage?role=all&format=csv", opToken, "")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if code != 200 || len(lines) != 3 || lines[0] != "start,seconds,property,role,requests,hits,misses,bytes,upstream_bytes,errors_5xx" ||
		!strings.HasPrefix(lines[1], "2026-03-01T12:00:00Z,3600,blog,all,4,0,4,") || !strings.Contains(lines[2], ",shop,all,40,28,12,") {
		t.Errorf("csv %d:\n%s", code, body)
	}
	req2, _ := http.NewRequest("GET", u+"/usage", nil)
	req2.Header.Set("Authorization", "Bearer "+opToken)
	req2.Header.Set("Accept", "text/csv")
	res, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Errorf("Accept: text/csv gave %s", res.Header.Get("Content-Type"))
	}

	// Attack reports (the scrubber's JSON) and loads for GeoDNS.
	code, body = call(t, "POST", u+"/attacks", clusterToken,
		`{"node":"edge-us-1","under_attack":true,"at":"2026-03-01T12:00:30Z","since":"2026-03-01T12:00:25Z","reason":"4000 req/s","request_rate":4000,"limited_share":0.8,"policy":"attack"}`)
	if code != 200 {
		t.Fatal(code, body)
	}
	code, body = call(t, "GET", u+"/loads", clusterToken, "")
	l := decode[Loads](t, body)
	if code != 200 || len(l.Edges) != 4 || !l.Edges[3].UnderAttack || l.Edges[3].Node != "edge-us-1" || !l.Edges[1].Known || l.Edges[2].Known {
		t.Errorf("loads %d %s", code, body)
	}
	code, body = call(t, "GET", u+"/alerts", opToken, "")
	if code != 200 || !strings.Contains(body, `"active": []`) {
		t.Errorf("alerts %d %s", code, body)
	}
}

func TestPurgeAndPreloadReachEveryNode(t *testing.T) {
	clk := newClock()
	f := newFleetFixture(t, clk, nil)
	u := f.m.url + "/api/v1"
	f.traffic(t, 3)
	f.report(t)

	code, body := call(t, "POST", u+"/purge", opToken, `{"kind":"url","value":"http://shop.test/p1"}`)
	if code != http.StatusAccepted {
		t.Fatal(code, body)
	}
	st := decode[PurgeStatus](t, body)
	if st.ID != 1 || len(st.Nodes) != 4 || st.Progress.Nodes != 4 {
		t.Fatalf("purge: %+v", st)
	}
	done, err := f.m.s.WaitPurge(context.Background(), st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != StateDone || done.Progress.OK != 4 {
		t.Fatalf("purge finished %+v", done)
	}
	// Hubs first (tiered), every ack with its time and what it matched.
	if done.Nodes[0].Node != "edge-eu-1" || done.Nodes[3].Node != "hub-eu" {
		t.Errorf("order %+v", done.Nodes)
	}
	for _, a := range done.Nodes {
		if a.State != AckOK || a.Status != 200 || a.Matched == nil || *a.Matched != 1 || a.At.IsZero() {
			t.Errorf("ack %+v", a)
		}
	}
	code, body = call(t, "GET", fmt.Sprintf("%s/purge/%d", u, st.ID), opToken, "")
	if got := decode[PurgeStatus](t, body); code != 200 || got.State != StateDone || len(got.Nodes) != 4 {
		t.Errorf("status %d %s", code, body)
	}

	// One node unreachable: its ack fails and the purge says so.
	f.edges[1].admin.Close()
	code, body = call(t, "POST", u+"/purge", opToken, `{"kind":"tag","value":"p2","soft":true}`)
	if code != http.StatusAccepted {
		t.Fatal(code, body)
	}
	st = decode[PurgeStatus](t, body)
	done, _ = f.m.s.WaitPurge(context.Background(), st.ID)
	if done.State != StateFailed || done.Progress.OK != 3 || done.Progress.Failed != 1 || !done.Soft {
		t.Fatalf("purge with a dead node: %+v", done)
	}
	for _, a := range done.Nodes {
		if (a.Node == "edge-eu-2") != (a.State == AckFailed) || (a.State == AckFailed && a.Error == "") {
			t.Errorf("ack %+v", a)
		}
	}
	code, body = call(t, "GET", u+"/purge?limit=5", opToken, "")
	if code != 200 || strings.Count(body, `"kind"`) != 2 {
		t.Errorf("list %d %s", code, body)
	}

	// After a restart the status comes from the database.
	f.m.stop()
	m2 := startMgmt(t, f.m.s.cfg, clk)
	code, body = call(t, "GET", m2.url+"/api/v1/purge/2", opToken, "")
	if got := decode[PurgeStatus](t, body); code != 200 || got.State != StateFailed || len(got.Nodes) != 4 || got.Value != "p2" {
		t.Errorf("after restart %d %s", code, body)
	}
	// Sequence numbers continue.
	code, body = call(t, "POST", m2.url+"/api/v1/purge", opToken, `{"kind":"all"}`)
	if st := decode[PurgeStatus](t, body); code != 202 || st.ID != 3 {
		t.Errorf("third purge %d %s", code, body)
	}

	// Preload: edges only by default; every edge fetches every URL.
	code, body = call(t, "POST", m2.url+"/api/v1/preload", opToken, `{"urls":["http://shop.test/new1","http://blog.test/new2"]}`)
	if code != http.StatusAccepted {
		t.Fatal(code, body)
	}
	pst := decode[PreloadStatus](t, body)
	pdone, ok := m2.s.WaitPreload(context.Background(), pst.ID)
	if !ok || pdone.Progress.Nodes != 3 || pdone.Progress.OK != 2 || pdone.Progress.Failed != 1 {
		t.Fatalf("preload %+v", pdone)
	}
	for _, a := range pdone.Nodes {
		if a.Node != "edge-eu-2" && (a.URLs != 2 || a.FailedURLs != 0 || a.Bytes == 0) {
			t.Errorf("preload ack %+v", a)
		}
	}
	code, body = call(t, "GET", fmt.Sprintf("%s/api/v1/preload/%d", m2.url, pst.ID), opToken, "")
	if code != 200 || !strings.Contains(body, `"state": "failed"`) {
		t.Errorf("preload status %d %s", code, body)
	}
	// A URL the nodes cannot serve fails on every node.
	code, body = call(t, "POST", m2.url+"/api/v1/preload", opToken, `{"urls":["http://unknown.test/x"],"roles":["hub"]}`)
	pst = decode[PreloadStatus](t, body)
	pdone, _ = m2.s.WaitPreload(context.Background(), pst.ID)
	if code != 202 || pdone.Progress.Nodes != 1 || pdone.Nodes[0].FailedURLs != 1 || !strings.Contains(pdone.Nodes[0].Error, "unknown host") {
		t.Errorf("unknown host preload: %+v", pdone)
	}
	code, body = call(t, "GET", m2.url+"/api/v1/preload", opToken, "")
	if code != 200 || strings.Count(body, `"roles"`) != 2 {
		t.Errorf("preload list %d %s", code, body)
	}
}

func TestDashboardAssets(t *testing.T) {
	m := startMgmt(t, testConfig(t), newClock())
	for path, want := range map[string]string{"/": "<title>Verge", "/assets/app.js": "use strict", "/assets/style.css": "system-ui"} {
		res, err := http.Get(m.url + path)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, _ := res.Body.Read(buf)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(buf[:n]), want) || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: %d %q", path, res.StatusCode, buf[:min(n, 80)])
		}
	}
	for _, path := range []string{"/nope", "/assets/nope.js"} {
		if code, _ := call(t, "GET", m.url+path, "", ""); code != 404 {
			t.Errorf("%s: %d", path, code)
		}
	}
	if code, _ := call(t, "POST", m.url+"/", "", "x"); code != 405 {
		t.Errorf("POST /: %d", code)
	}
	// Nothing on the page comes from another origin.
	for _, path := range []string{"/", "/assets/app.js", "/assets/style.css"} {
		_, body := call(t, "GET", m.url+path, "", "")
		for _, bad := range []string{"http://", "https://", "@import", "fonts.googleapis"} {
			if strings.Contains(body, bad) && !strings.Contains(body, "https://www.example.test") {
				t.Errorf("%s refers to %q", path, bad)
			}
		}
	}
}

func TestPurgeLogServedToNodes(t *testing.T) {
	m := startMgmt(t, testConfig(t), newClock())
	for _, b := range []string{`{"kind":"all"}`, `{"kind":"tag","value":"t1","soft":true}`} {
		code, body := call(t, "POST", m.url+"/api/v1/purge", opToken, b)
		if code != 202 {
			t.Fatal(code, body)
		}
	}
	// A node catches up from management's log with the cluster token.
	c, err := purgelog.NewClient(m.url, clusterToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []edge.Purge
	if _, err := c.FetchAll(context.Background(), func(p edge.Purge) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 1 || got[1].Kind != edge.PurgeTag || !got[1].Soft {
		t.Fatalf("log %+v", got)
	}
	bad, _ := purgelog.NewClient(m.url, opToken, nil)
	if _, err := bad.Summary(context.Background(), &purgelog.Stats{}); err == nil {
		t.Fatal("the operator token read the purge log")
	}
}
