package distribution_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/distribution/preload"
	"github.com/vergecdn/verge/distribution/purgelog"
	"github.com/vergecdn/verge/edge"
)

// owner is the hub named first in a Cache-Status chain.
func owner(t *testing.T, tr *tree, cacheStatus string) *node {
	t.Helper()
	for _, h := range tr.hubs {
		if strings.HasPrefix(cacheStatus, h.name+";") {
			return h
		}
	}
	t.Fatalf("no hub in Cache-Status %q", cacheStatus)
	return nil
}

func other(tr *tree, h *node) *node {
	if tr.hubs[0] == h {
		return tr.hubs[1]
	}
	return tr.hubs[0]
}

// checkAcks wants an OK ack from every node named, and nothing else.
func checkAcks(t *testing.T, acks []fanout.Ack, want ...string) []purgelog.Answer {
	t.Helper()
	var got []string
	var answers []purgelog.Answer
	for _, a := range acks {
		if !a.OK {
			t.Errorf("%s did not ack: %d %s", a.Node, a.Status, a.Error)
			continue
		}
		ans, err := purgelog.DecodeAnswer(a.Body)
		if err != nil {
			t.Errorf("%s: %v", a.Node, err)
		}
		answers = append(answers, ans)
		got = append(got, a.Node)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("acks from %v, want %v", got, want)
	}
	return answers
}

// TestTree is the integration test: origin, 2 hubs, 3 edges of one
// region.
func TestTree(t *testing.T) {
	tr := newTree(t, treeOptions{hubs: 2, edges: 3, history: 5000})
	e1, e2, e3 := tr.edges[0], tr.edges[1], tr.edges[2]
	all := []string{"hub-a", "hub-b", "edge-1", "edge-2", "edge-3"}

	t.Run("cold object reaches the origin once", func(t *testing.T) {
		var chain []string
		for _, e := range tr.edges {
			code, body, cs := get(t, e, "/a")
			if code != 200 || body != "/a v1" {
				t.Fatalf("%s: %d %q", e.name, code, body)
			}
			chain = append(chain, cs)
		}
		h := owner(t, tr, chain[0])
		if chain[0] != h.name+"; fwd=uri-miss, edge-1; fwd=uri-miss" ||
			chain[1] != h.name+"; hit, edge-2; fwd=uri-miss" || chain[2] != h.name+"; hit, edge-3; fwd=uri-miss" ||
			tr.origin.count("/a") != 1 {
			t.Errorf("Cache-Status %q; origin saw %d", chain, tr.origin.count("/a"))
		}
		// At once through all three edges, ten clients each: still once.
		var wg sync.WaitGroup
		for _, e := range tr.edges {
			for range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if code, body, _ := get(t, e, "/b"); code != 200 || body != "/b v1" {
						t.Errorf("%s: %d %q", e.name, code, body)
					}
				}()
			}
		}
		wg.Wait()
		if n := tr.origin.count("/b"); n != 1 {
			t.Errorf("30 concurrent requests through 3 edges: origin saw %d", n)
		}
	})

	t.Run("kill the object's hub", func(t *testing.T) {
		_, _, cs := get(t, e1, "/a")
		if !strings.HasSuffix(cs, "edge-1; hit") {
			t.Fatalf("/a not cached at edge-1: %q", cs)
		}
		dead := owner(t, tr, cs) // /a's hub
		next := other(tr, dead)
		// Before the kill: objects cached at their hubs and edge-1 only, and
		// one that goes stale at edge-1 after a minute.
		var deadOwns []string
		for i := range 20 {
			path := fmt.Sprintf("/x/%d", i)
			_, _, cs := get(t, e1, path)
			if owner(t, tr, cs) == dead {
				deadOwns = append(deadOwns, path)
			}
		}
		short := ""
		for i := 0; short == ""; i++ {
			path := fmt.Sprintf("/short/%d?max-age=60", i)
			if _, _, cs := get(t, e1, path); owner(t, tr, cs) == dead {
				short = path
			}
		}
		tr.stop(dead)

		// Cached at the edges: hits, no error.
		for _, e := range tr.edges {
			if code, body, cs := get(t, e, "/a"); code != 200 || body != "/a v1" || !strings.HasSuffix(cs, e.name+"; hit") {
				t.Errorf("%s /a with %s dead: %d %q %q", e.name, dead.name, code, body, cs)
			}
		}
		// Not cached at edge-2: the dead hub's keys go to the next hub.
		for _, path := range deadOwns {
			code, body, cs := get(t, e2, path)
			if code != 200 || body != path+" v1" || !strings.HasPrefix(cs, next.name+";") {
				t.Errorf("%s through edge-2 with %s dead: %d %q %q", path, dead.name, code, body, cs)
			}
		}
		if len(deadOwns) == 0 {
			t.Errorf("%s owns none of 20 keys", dead.name)
		}
		// Stale at edge-1: revalidated through the surviving hub.
		tr.clock.Add(2 * time.Minute)
		code, body, cs := get(t, e1, short)
		if want := strings.TrimSuffix(short, "?max-age=60") + " v1"; code != 200 || body != want || !strings.HasPrefix(cs, next.name+";") {
			t.Errorf("stale object with %s dead: %d %q %q", dead.name, code, body, cs)
		}
		// The probes take the dead hub out (fall = 3), then back (rise = 2).
		for _, e := range tr.edges {
			for range 3 {
				e.parents.Health().ProbeOnce(context.Background())
			}
			if e.parents.Health().Healthy(dead.name) || !e.parents.Health().Healthy(next.name) {
				t.Errorf("%s: health after 3 failed probes of %s", e.name, dead.name)
			}
		}
		dead.store = nil // its RAM cache died with it
		tr.restart(dead)
		tr.waitReady(dead)
		for _, e := range tr.edges {
			for range 2 {
				e.parents.Health().ProbeOnce(context.Background())
			}
			if !e.parents.Health().Healthy(dead.name) {
				t.Errorf("%s: %s not back after 2 good probes", e.name, dead.name)
			}
		}
	})

	t.Run("purge by url, prefix and tag", func(t *testing.T) {
		paths := []string{"/p/one", "/p/two", "/dir/x", "/dir/y", "/img/1.png", "/img/2.png", "/keep"}
		warm := func() {
			for _, n := range tr.nodes() {
				for _, p := range paths {
					get(t, n, p)
				}
				get(t, n, "static.example.test@/s.css")
			}
		}
		warm()
		tr.origin.bump(append(paths, "/s.css")...)
		for _, c := range []struct {
			p       edge.Purge
			matched map[string]int // per node
		}{
			{edge.Purge{Kind: edge.PurgeURL, Value: "http://" + siteHost + "/p/one"}, nil},
			{edge.Purge{Kind: edge.PurgePrefix, Value: "http://" + siteHost + "/dir/"}, nil},
			{edge.Purge{Kind: edge.PurgeTag, Value: "images"}, nil},
			{edge.Purge{Kind: edge.PurgeHost, Value: "static.example.test", Soft: true}, nil},
		} {
			p, acks := tr.purge(c.p)
			for _, ans := range checkAcks(t, acks, all...) {
				if ans.Seq != p.Seq || ans.Matched < 1 || ans.Duplicate || ans.CaughtUp != 0 {
					t.Errorf("%s %s: answer %+v", p.Kind, p.Value, ans)
				}
			}
		}
		// No node serves the old bytes of what was purged; what was not
		// purged is still the cached old version everywhere.
		for _, n := range tr.nodes() {
			for _, path := range paths {
				want := path + " v2"
				if path == "/p/two" || path == "/keep" {
					want = path + " v1"
				}
				if _, body, cs := get(t, n, path); body != want {
					t.Errorf("%s %s: %q (%s), want %q", n.name, path, body, cs, want)
				}
			}
			if _, body, _ := get(t, n, "static.example.test@/s.css"); body != "/s.css v2" {
				t.Errorf("%s: soft-purged /s.css is %q", n.name, body)
			}
		}
		for _, n := range tr.nodes() {
			if n.log.Last() != tr.mgmt.Last() {
				t.Errorf("%s applied up to %d, management is at %d", n.name, n.log.Last(), tr.mgmt.Last())
			}
		}
	})

	t.Run("a node stopped during 1000 purges serves none of them", func(t *testing.T) {
		var objects []string
		for i := range 50 {
			objects = append(objects, fmt.Sprintf("/obj/%d", i))
		}
		for _, p := range objects {
			if _, body, _ := get(t, e3, p); body != p+" v1" {
				t.Fatalf("warming %s: %q", p, body)
			}
		}
		tr.stop(e3)
		for i := range 1000 {
			_, acks := tr.purge(edge.Purge{Kind: edge.PurgeURL, Value: fmt.Sprintf("http://%s/obj/%d", siteHost, i)})
			for _, a := range acks {
				if a.OK == (a.Node == "edge-3") {
					t.Fatalf("purge %d: %s ok=%v %s", i, a.Node, a.OK, a.Error)
				}
			}
		}
		tr.origin.bump(objects...)

		// edge-3 comes back over the same cache and log. Its first peer
		// request finds it not ready.
		var d countingDialer
		var readyAtStart error
		d.first.Store(func() { readyAtStart = e3.eng.Healthy() })
		tr.peerClient = d.client()
		tr.restart(e3)
		tr.peerClient = nil
		tr.waitReady(e3)
		if readyAtStart == nil {
			t.Error("edge-3 was ready before catching up")
		}
		if e3.log.Last() != tr.mgmt.Last() || e3.log.Len() != tr.mgmt.Len() {
			t.Errorf("edge-3 at %d (%d records), management at %d (%d)", e3.log.Last(), e3.log.Len(), tr.mgmt.Last(), tr.mgmt.Len())
		}
		for _, p := range objects {
			if code, body, cs := get(t, e3, p); code != 200 || body != p+" v2" {
				t.Errorf("edge-3 serves %s: %d %q (%s)", p, code, body, cs)
			}
		}
		// What the catch-up cost, against copying the whole log.
		catchUp := d.read.Load() + d.written.Load()
		var full countingDialer
		c, _ := purgelog.NewClient(tr.hubs[0].adm.url(), clusterToken, full.client())
		st, err := c.FetchAll(context.Background(), func(edge.Purge) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		fullBytes := full.read.Load() + full.written.Load()
		t.Logf("edge-3 missed 1000 of %d purges; catch-up: %d requests, %d bytes on the wire; full log: %d requests, %d bytes (%.1fx)",
			tr.mgmt.Len(), d.reqs.Load(), catchUp, full.reqs.Load(), fullBytes, float64(fullBytes)/float64(catchUp))
		if st.Fetched != tr.mgmt.Len() {
			t.Errorf("the full log has %d records, management %d", st.Fetched, tr.mgmt.Len())
		}
		if catchUp*3 > fullBytes {
			t.Errorf("catch-up moved %d bytes, the full log is %d", catchUp, fullBytes)
		}
	})

	t.Run("preload fills each URL once per region", func(t *testing.T) {
		var urls []string
		for i := range 20 {
			urls = append(urls, fmt.Sprintf("http://%s/pre/%d", siteHost, i))
		}
		var mu sync.Mutex
		progress := map[string]int{}
		rep, err := preload.Push(context.Background(), tr.fan, tr.fanoutNodes(), urls, preload.Options{Chunk: 5, Progress: func(p preload.Progress) {
			mu.Lock()
			progress[p.Node]++
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		if ok, failed := rep.OK(); ok != 60 || failed != 0 || len(rep.Nodes) != 3 {
			t.Errorf("preload: %d ok, %d failed on %d nodes", ok, failed, len(rep.Nodes))
		}
		if fmt.Sprint(progress) != "map[edge-1:20 edge-2:20 edge-3:20]" {
			t.Errorf("progress %v", progress)
		}
		for i := range 20 {
			path := fmt.Sprintf("/pre/%d", i)
			if n := tr.origin.count(path); n != 1 {
				t.Errorf("origin saw %s %d times", path, n)
			}
			for _, e := range tr.edges {
				if _, _, cs := get(t, e, path); !strings.HasSuffix(cs, e.name+"; hit") {
					t.Errorf("%s %s after preload: %q", e.name, path, cs)
				}
			}
		}
	})
}
