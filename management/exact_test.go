package management

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management/store"
)

// recorded is what one reporter instance reported, in order.
type recorded struct {
	at   []time.Time
	snap []map[string]store.Counts
}

// recordingReporter reports an edge and remembers every snapshot it took.
func recordingReporter(t *testing.T, e *testEdge, url string, clk *clock) (*Reporter, *recorded) {
	rec := &recorded{}
	cfg := ReporterConfig{URL: url, Token: clusterToken, Node: e.name, Role: string(e.role), Region: e.region,
		AdminURL: e.admin.URL, Now: clk.Now, Timeout: 5 * time.Second}
	r, err := NewReporter(cfg, func() Report {
		rep := EdgeReport(e.eng, e.reg)
		m := map[string]store.Counts{}
		for _, p := range rep.Properties {
			m[p.Property] = countsOf(p)
		}
		rec.at = append(rec.at, clk.Now())
		rec.snap = append(rec.snap, m)
		return rep
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, rec
}

// perMinute is what management must hold per minute and property if every
// snapshot's counts are attributed to its minute: the difference between the
// last snapshot of each minute and the last one before it.
func (r *recorded) perMinute(out map[time.Time]map[string]store.Counts) {
	prev := map[string]store.Counts{}
	for i := range r.snap {
		last := i == len(r.snap)-1 || !r.at[i+1].Truncate(time.Minute).Equal(r.at[i].Truncate(time.Minute))
		if !last {
			continue
		}
		m := r.at[i].Truncate(time.Minute)
		if out[m] == nil {
			out[m] = map[string]store.Counts{}
		}
		for p, c := range r.snap[i] {
			d := out[m][p]
			pc := prev[p]
			d.Add(store.Counts{Requests: c.Requests - pc.Requests, Hits: c.Hits - pc.Hits, Misses: c.Misses - pc.Misses,
				Bytes: c.Bytes - pc.Bytes, UpstreamBytes: c.UpstreamBytes - pc.UpstreamBytes, Errors: c.Errors - pc.Errors})
			out[m][p] = d
		}
		prev = r.snap[i]
	}
}

// dropOnce answers a report POST with a dropped connection after management
// has processed it: the reporter must retry, and management must not count
// the retry again.
type dropOnce struct {
	h     http.Handler
	armed atomic.Bool
	drops atomic.Int32
}

func (d *dropOnce) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/v1/reports" && d.armed.CompareAndSwap(true, false) {
		rec := httptest.NewRecorder()
		d.h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			panic(fmt.Sprintf("report not accepted: %d %s", rec.Code, rec.Body))
		}
		d.drops.Add(1)
		panic(http.ErrAbortHandler)
	}
	d.h.ServeHTTP(w, r)
}

func TestUsageExactAcrossManagementRestart(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t)
	origin := startOrigin(t)
	m := startMgmt(t, cfg, clk)
	drop := &dropOnce{h: m.s.Handler()}
	m.srv.Config.Handler = drop
	addr := m.addr

	edges := []*testEdge{
		startEdge(t, "edge-eu-1", "eu", edge.RoleEdge, origin.URL, "shop", "blog"),
		startEdge(t, "edge-eu-2", "eu", edge.RoleEdge, origin.URL, "shop", "blog"),
		startEdge(t, "edge-us-1", "us", edge.RoleEdge, origin.URL, "shop", "blog"),
		startEdge(t, "hub-eu", "eu", edge.RoleHub, origin.URL, "shop", "blog"),
	}
	type live struct {
		e   *testEdge
		r   *Reporter
		rec *recorded
	}
	var nodes []*live
	var all []*recorded
	var allEdges []*testEdge
	for _, e := range edges {
		r, rec := recordingReporter(t, e, m.url, clk)
		nodes = append(nodes, &live{e, r, rec})
		all = append(all, rec)
		allEdges = append(allEdges, e)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	paths := []string{"/a", "/b", "/c", "/d", "/nocache/x", "/fail/y", "/e", "/f"}
	down, up := 8, 22 // management is stopped for these rounds
	var drops int32
	for round := 0; round < 40; round++ {
		for _, n := range nodes {
			for i := rng.IntN(12); i >= 0; i-- {
				n.e.get(t, []string{"shop", "blog"}[rng.IntN(2)], paths[rng.IntN(len(paths))])
			}
		}
		clk.Add(20 * time.Second)
		switch round {
		case down:
			m.stop()
		case up:
			m = startMgmtAt(t, cfg, clk, addr)
		case 5:
			drop.armed.Store(true)
		case 30:
			drops += drop.drops.Load()
			drop = &dropOnce{h: m.s.Handler()}
			drop.armed.Store(true)
			m.srv.Config.Handler = drop
		}
		for i, n := range nodes {
			waitCounted(t, n.e)
			n.r.Collect()
			err := n.r.Deliver(ctx)
			if err != nil && i == 0 && (round == 5 || round == 30) {
				// The answer was lost after management counted the report:
				// the retry must not count it again.
				err = n.r.Deliver(ctx)
			}
			if (round >= down && round < up) != (err != nil) {
				t.Fatalf("round %d: delivery error %v", round, err)
			}
		}
		if round > down && round < up && nodes[0].r.Backlog() > (round-down)/3+2 {
			t.Fatalf("round %d: backlog %d: snapshots of one minute should coalesce", round, nodes[0].r.Backlog())
		}
		if round == 26 {
			// edge-us-1 restarts: its last counts are delivered, then a new
			// process (counters from zero, a new instance) takes over.
			old := nodes[2]
			old.r.Collect()
			if err := old.r.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
			ne := startEdge(t, "edge-us-1", "us", edge.RoleEdge, origin.URL, "shop", "blog")
			r, rec := recordingReporter(t, ne, m.url, clk)
			nodes[2] = &live{ne, r, rec}
			all = append(all, rec)
			allEdges = append(allEdges, ne)
		}
	}
	if drops += drop.drops.Load(); drops != 2 {
		t.Fatalf("%d dropped answers, want 2", drops)
	}

	// Totals: management's usage equals the sum of every node's own counters.
	own := ownTotals(allEdges...)
	from, to := clk.Now().Add(-24*time.Hour), clk.Now().Add(time.Hour)
	checkTotals := func(when string) {
		t.Helper()
		q := fmt.Sprintf("%s/api/v1/usage?role=all&step=day&from=%d&to=%d", m.url, from.Unix(), to.Unix())
		code, body := call(t, "GET", q, opToken, "")
		if code != 200 {
			t.Fatalf("%s: usage %d %s", when, code, body)
		}
		var a UsageAnswer
		json.Unmarshal([]byte(body), &a)
		got := map[string][3]uint64{}
		for _, r := range a.Rows {
			g := got[r.Property]
			g[0] += r.Requests
			g[1] += r.Hits
			g[2] += r.Bytes
			got[r.Property] = g
		}
		for p, want := range own {
			if got[p] != want {
				t.Errorf("%s: property %s: management has requests, hits, bytes = %v, the nodes counted %v", when, p, got[p], want)
			}
		}
		if len(got) != len(own) || own["shop"][0] == 0 {
			t.Errorf("%s: properties %v vs %v", when, got, own)
		}
	}
	checkTotals("after reporting")

	// Per-minute attribution: each minute holds exactly what the nodes
	// counted in it, including the minutes management was down.
	want := map[time.Time]map[string]store.Counts{}
	for _, rec := range all {
		rec.perMinute(want)
	}
	q := fmt.Sprintf("%s/api/v1/usage?role=all&step=minute&from=%d&to=%d", m.url, from.Unix(), to.Unix())
	code, body := call(t, "GET", q, opToken, "")
	if code != 200 {
		t.Fatal(code, body)
	}
	var a UsageAnswer
	json.Unmarshal([]byte(body), &a)
	got := map[time.Time]map[string]store.Counts{}
	for _, r := range a.Rows {
		if got[r.Start] == nil {
			got[r.Start] = map[string]store.Counts{}
		}
		got[r.Start][r.Property] = r.Counts
	}
	var minutes []time.Time
	for mnt := range want {
		minutes = append(minutes, mnt)
	}
	sort.Slice(minutes, func(i, j int) bool { return minutes[i].Before(minutes[j]) })
	outage := 0
	for _, mnt := range minutes {
		for p, w := range want[mnt] {
			if w.IsZero() {
				continue
			}
			if got[mnt][p] != w {
				t.Errorf("minute %s property %s: management %+v, nodes %+v", mnt.Format("15:04"), p, got[mnt][p], w)
			}
			start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			if mnt.After(start.Add(time.Duration(down+1)*20*time.Second)) && mnt.Before(start.Add(time.Duration(up)*20*time.Second)) {
				outage++
			}
		}
	}
	if outage < 4 {
		t.Errorf("only %d property-minutes inside the outage: late reports were not attributed to their minutes", outage)
	}

	// Rolling everything up to hours keeps the totals.
	clk.Add(50 * time.Hour)
	m.s.Maintain(ctx)
	from, to = from.Add(-time.Hour), clk.Now()
	checkTotals("after rollup")
}
