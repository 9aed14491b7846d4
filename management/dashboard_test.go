package management

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management/alerts"
)

// chromium finds a Chromium or Chrome binary.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// livelyFleet is management with real edges and hubs in two regions whose
// reporters replay an hour of traffic (their clocks step through the last
// hour while real requests go through the engines), so the charts fill.
func livelyFleet(t *testing.T) (*mgmt, []*testEdge) {
	t.Helper()
	cfg := testConfig(t)
	hit := alerts.DefaultRule()
	hit.Name, hit.Kind, hit.Threshold, hit.Window, hit.MinRequests, hit.Roles = "low-hit-ratio", alerts.HitRatioBelow, 0.6, 600_000_000_000, 20, []string{"edge"}
	atk := alerts.DefaultRule()
	atk.Name, atk.Kind, atk.Severity = "attack", alerts.Attack, "critical"
	cfg.Alerts.Rules = []alerts.Rule{hit, atk}
	cfg.NodeTimeout = 3_600_000_000_000 // the comparison must not race a node going down
	cfg.Nodes = []NodeConfig{{Name: "edge-ap-1", Role: RoleEdge, Region: "ap"}}
	m := startMgmt(t, cfg, nil) // the real clock: the browser shows ages
	origin := startOrigin(t)
	nodes := []*testEdge{
		startEdge(t, "edge-eu-1", "eu", edge.RoleEdge, origin.URL, "shop", "news", "video"),
		startEdge(t, "edge-eu-2", "eu", edge.RoleEdge, origin.URL, "shop", "news", "video"),
		startEdge(t, "hub-eu", "eu", edge.RoleHub, origin.URL, "shop", "news", "video"),
		startEdge(t, "edge-us-1", "us", edge.RoleEdge, origin.URL, "shop", "news", "video"),
		startEdge(t, "edge-us-2", "us", edge.RoleEdge, origin.URL, "shop", "news", "video"),
		startEdge(t, "hub-us", "us", edge.RoleHub, origin.URL, "shop", "news", "video"),
	}
	const rounds = 60 // one report a minute for the last hour, the last one now
	now := time.Now()
	clk := &clock{t: now.Add(-(rounds - 1) * time.Minute)}
	var reps []*Reporter
	for _, n := range nodes {
		reps = append(reps, n.reporter(t, m.url, clk))
	}
	props := []string{"shop", "news", "video"}
	for round := 0; round < rounds; round++ {
		for i, n := range nodes {
			// A daily-looking curve; edge-us-2 misses more (a cold cache).
			reqs := 6 + int(4*math.Sin(float64(round)/8+float64(i))) + round/8
			if n.role == edge.RoleHub {
				reqs /= 2
			}
			for j := 0; j < reqs; j++ {
				path := fmt.Sprintf("/item/%d", (j*7+round)%12)
				switch {
				case n.name == "edge-us-2" && j%2 == 0:
					path = fmt.Sprintf("/fresh/%d/%d", round, j)
				case j%9 == 8:
					path = "/fail/" + strconv.Itoa(j)
				case j%3 == 1:
					path = fmt.Sprintf("/img/%d.jpg", (j+round)%5)
				}
				n.get(t, props[(i+j)%3], path)
			}
		}
		waitCounted(t, nodes...)
		for _, r := range reps {
			r.Collect()
			if err := r.Deliver(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		clk.Add(time.Minute)
	}
	code, body := call(t, "POST", m.url+"/api/v1/attacks", clusterToken,
		fmt.Sprintf(`{"node":"edge-us-1","under_attack":true,"at":%q,"reason":"2400 req/s from 310 sources, 81%% refused","request_rate":2400,"limited_share":0.81}`,
			time.Now().UTC().Format(time.RFC3339Nano)))
	if code != 200 {
		t.Fatal(code, body)
	}
	m.s.EvaluateAlerts()
	return m, nodes
}

// shown parses a number the dashboard shows ("12.5", "71.4%", "1.2 kB/s").
func shown(t *testing.T, s string) (v, unit float64) {
	t.Helper()
	s = strings.TrimSpace(s)
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "%"):
		s, mult = strings.TrimSuffix(s, "%"), 0.01
	case strings.HasSuffix(s, "B/s"):
		f := strings.Fields(strings.TrimSuffix(s, "/s"))
		if len(f) != 2 {
			t.Fatalf("bandwidth %q", s)
		}
		s = f[0]
		mult = map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[f[1]]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("dashboard shows %q: %v", s, err)
	}
	// One decimal is shown: the API value must lie within half a unit.
	return v * mult, 0.05 * mult
}

func near(t *testing.T, what, text string, want *float64) {
	t.Helper()
	if want == nil {
		if text != "–" {
			t.Errorf("%s: dashboard shows %q, API has no value", what, text)
		}
		return
	}
	got, tol := shown(t, text)
	if math.Abs(got-*want) > tol+1e-9 {
		t.Errorf("%s: dashboard shows %q, API says %v", what, text, *want)
	}
}

func TestDashboardInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no chromium binary on PATH (Debian: apt-get install chromium); skipping the browser test")
	}
	m, _ := livelyFleet(t)

	actx, cancelA := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.WindowSize(1440, 1200),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("lang", "en-US"))...)
	defer cancelA()
	var logs []string
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }))
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute) // bounds a hung browser, not a speed check
	defer cancelT()

	// The token travels in the fragment, which the browser never sends.
	if err := chromedp.Do(ctx, chromedp.Navigate(m.url+"/#token="+opToken), chromedp.WaitVisible("#regions table")); err != nil {
		t.Fatalf("loading the dashboard: %v (%v)", err, logs)
	}
	_, body := call(t, "GET", m.url+"/api/v1/nodes", opToken, "")
	api := decode[Overview](t, body)
	// Nothing reports any more: wait until the page shows this generation.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.getElementById("main").dataset.generation === "%d"`, api.Generation))); err != nil {
		t.Fatalf("dashboard never showed generation %d: %v", api.Generation, err)
	}
	if u, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); err != nil || strings.Contains(u, "token") {
		t.Errorf("the token stayed in the address bar: %q %v", u, err)
	}

	type row struct {
		Node, Region, Health, RPS, Hit, BW, Err, Version, Age string
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]row](`[...document.querySelectorAll("tr[data-node]")].map(tr => {
		const f = k => tr.querySelector('[data-field="' + k + '"]').textContent;
		return {Node: tr.dataset.node, Region: tr.closest("[data-region]").dataset.region, Health: tr.dataset.health,
			RPS: f("rps"), Hit: f("hit_ratio"), BW: f("bandwidth"), Err: f("error_rate"), Version: f("version"), Age: f("age")};
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(api.Nodes) || len(rows) != 7 {
		t.Fatalf("dashboard shows %d nodes, API %d", len(rows), len(api.Nodes))
	}
	for i, n := range api.Nodes {
		r := rows[i]
		if r.Node != n.Name || r.Region != n.Region || r.Health != n.Health {
			t.Errorf("row %d: %+v, API %s %s %s", i, r, n.Name, n.Region, n.Health)
		}
		if n.Health == HealthUnknown {
			if r.RPS != "0.0" || r.Hit != "–" || r.Age != "never" {
				t.Errorf("never-reported node shows %+v", r)
			}
			continue
		}
		rps, bw := n.RequestsPerSecond, n.BytesPerSecond
		near(t, n.Name+" req/s", r.RPS, &rps)
		near(t, n.Name+" hit ratio", r.Hit, n.HitRatio)
		near(t, n.Name+" bandwidth", r.BW, &bw)
		near(t, n.Name+" 5xx", r.Err, n.ErrorRate)
		if r.Version != "test" || !strings.HasSuffix(r.Age, "s ago") {
			t.Errorf("%s: version %q, age %q", n.Name, r.Version, r.Age)
		}
		if rps == 0 || n.HitRatio == nil {
			t.Errorf("%s: no live traffic in the fixture (%+v)", n.Name, n)
		}
	}
	cards, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries(["total-edge-rps","total-edge-hit","total-edge-bw","total-hub-rps","total-up","total-alerts"].map(id => [id, document.getElementById(id).textContent]))`))
	if err != nil {
		t.Fatal(err)
	}
	et, ht := api.Totals[RoleEdge], api.Totals[RoleHub]
	near(t, "edge req/s", cards["total-edge-rps"], &et.RequestsPerSecond)
	near(t, "edge hit ratio", cards["total-edge-hit"], et.HitRatio)
	near(t, "edge bandwidth", cards["total-edge-bw"], &et.BytesPerSecond)
	near(t, "hub req/s", cards["total-hub-rps"], &ht.RequestsPerSecond)
	if cards["total-up"] != "6 / 7" {
		t.Errorf("nodes up: %q", cards["total-up"])
	}
	_, body = call(t, "GET", m.url+"/api/v1/alerts", opToken, "")
	var al struct{ Active []alerts.Alert }
	json.Unmarshal([]byte(body), &al)
	if len(al.Active) < 2 || cards["total-alerts"] != strconv.Itoa(len(al.Active)) {
		t.Errorf("alerts card %q, API has %d", cards["total-alerts"], len(al.Active))
	}
	shownAlerts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("li[data-alert]")].map(li => li.dataset.alert)`))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range al.Active {
		if i >= len(shownAlerts) || shownAlerts[i] != a.ID {
			t.Errorf("alerts shown %v, API %v", shownAlerts, al.Active)
			break
		}
	}
	// The charts drew a line over the hour.
	points, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`["chart-rps","chart-hit","chart-bw"].map(id => {
		const p = document.querySelector("#" + id + " path.line"); return p ? p.getAttribute("d").split(/[ML]/).length - 1 : 0; })`))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range points {
		if n < 50 {
			t.Errorf("chart %d has %d points", i, n)
		}
	}

	// Purge from the form and watch every node acknowledge.
	if err := chromedp.Do(ctx,
		chromedp.SetValue("#purge-kind", "prefix"),
		chromedp.SetValue("#purge-value", "http://shop.test/item/"),
		chromedp.Click("#purge-submit"),
	); err != nil {
		t.Fatal(err)
	}
	state, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => { const s = document.getElementById("purge-status").dataset.state; return s && s !== "running" ? s : ""; })()`))
	if err != nil {
		t.Fatalf("purge never finished on the page: %v", err)
	}
	id, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("purge-status").dataset.purgeId`))
	_, body = call(t, "GET", m.url+"/api/v1/purge/"+id, opToken, "")
	ps := decode[PurgeStatus](t, body)
	acks, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("tr[data-ack-node]")].map(tr => [tr.dataset.ackNode, tr.dataset.state]))`))
	if err != nil {
		t.Fatal(err)
	}
	if state != StateDone || ps.State != StateDone || ps.Kind != "prefix" || len(ps.Nodes) != 6 || len(acks) != 6 {
		t.Fatalf("purge: page %q %v, API %+v", state, acks, ps)
	}
	matched := 0
	for _, n := range ps.Nodes {
		if acks[n.Node] != AckOK || n.State != AckOK || n.Matched == nil {
			t.Errorf("node %s: page %q, API %+v", n.Node, acks[n.Node], n)
			continue
		}
		matched += *n.Matched
	}
	if matched == 0 {
		t.Error("the purge matched nothing anywhere")
	}

	if path := os.Getenv("VERGE_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("dashboard screenshot: %s (%d bytes)", path, len(png))
	}
	// A wrong token sends the page back to the login form.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("verge-operator-token", "wrong")`),
		chromedp.Navigate(m.url+"/"), chromedp.WaitVisible("#login-form")); err != nil {
		t.Fatalf("wrong token: %v", err)
	}
	msg, _ := chromedp.Run(ctx, chromedp.Text("#login-error"))
	if !strings.Contains(msg, "refused") {
		t.Errorf("login error %q", msg)
	}
}
