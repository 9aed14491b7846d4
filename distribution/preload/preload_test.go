package preload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/edge"
)

const token = "t0ken"

// fakeNode answers POST /preload the way an edge does; answer can bend it.
func fakeNode(t *testing.T, name string, answer func(urls []string) (int, any)) (*httptest.Server, *[]int) {
	t.Helper()
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/preload" || r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"nope"}`, http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		req, err := edge.ParsePreload(b)
		if err != nil {
			t.Errorf("%s got a bad preload request: %v", name, err)
		}
		mu.Lock()
		sizes = append(sizes, len(req.URLs))
		mu.Unlock()
		code, v := answer(req.URLs)
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(srv.Close)
	return srv, &sizes
}

func stored(name string) func([]string) (int, any) {
	return func(urls []string) (int, any) {
		res := edge.PreloadResponse{Node: name}
		for _, u := range urls {
			r := edge.PreloadResult{URL: u, Status: 200, Cache: name + "; fwd=uri-miss; stored", Bytes: 10}
			if strings.HasSuffix(u, "/missing") {
				r.Status, r.Cache = 404, name+"; fwd=uri-miss"
			}
			res.Results = append(res.Results, r)
		}
		return 200, res
	}
}

func urls(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("http://www.example.test/o/%d", i)
	}
	return out
}

func TestPush(t *testing.T) {
	e1, sizes1 := fakeNode(t, "e1", stored("e1"))
	e2, _ := fakeNode(t, "e2", stored("e2"))
	hub, hubSizes := fakeNode(t, "h1", stored("h1"))
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	nodes := []fanout.Node{
		{Name: "h1", Role: "hub", AdminURL: hub.URL},
		{Name: "e1", Role: "edge", AdminURL: e1.URL},
		{Name: "e2", Role: "edge", AdminURL: e2.URL},
		{Name: "e3", Role: "edge", AdminURL: down.URL},
	}
	list := append(urls(24), "http://www.example.test/missing")
	var mu sync.Mutex
	seen := map[string][]int{}
	rep, err := Push(context.Background(), fanout.New(token, nil), nodes, list, Options{Chunk: 10, Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Total != 25 {
			t.Errorf("total %d", p.Total)
		}
		seen[p.Node] = append(seen[p.Node], p.Done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(*hubSizes) != 0 {
		t.Error("the hub was sent the list")
	}
	if fmt.Sprint(*sizes1) != "[10 10 5]" {
		t.Errorf("chunks %v", *sizes1)
	}
	if len(rep.Nodes) != 3 {
		t.Fatalf("%d node reports", len(rep.Nodes))
	}
	for _, n := range rep.Nodes[:2] {
		if n.OK != 24 || n.Failed != 1 || len(n.Results) != 25 || n.Results[24].Status != 404 {
			t.Errorf("%s: ok %d failed %d", n.Node, n.OK, n.Failed)
		}
		if fmt.Sprint(seen[n.Node]) != fmt.Sprint(seqTo(25)) {
			t.Errorf("%s progress %v", n.Node, seen[n.Node])
		}
	}
	if e3 := rep.Nodes[2]; e3.Node != "e3" || e3.Failed != 25 || !strings.Contains(e3.Results[0].Error, "connection refused") {
		t.Errorf("down node: %+v", e3.Results[0])
	}
	if ok, failed := rep.OK(); ok != 48 || failed != 27 {
		t.Errorf("totals %d %d", ok, failed)
	}
}

func seqTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestPushBadAnswers(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer func([]string) (int, any)
		want   string
	}{
		{"short", func(u []string) (int, any) { return 200, edge.PreloadResponse{} }, "0 results for 2 URLs"},
		{"swapped", func(u []string) (int, any) {
			return 200, edge.PreloadResponse{Results: []edge.PreloadResult{{URL: u[1]}, {URL: u[0]}}}
		}, "result 0 is for"},
		{"not json", func(u []string) (int, any) { return 200, "x" }, "bad answer from the node"},
		{"refused", func(u []string) (int, any) { return 400, map[string]string{"error": "bad preload request: no"} }, "bad preload request: no"},
	} {
		n, _ := fakeNode(t, c.name, c.answer)
		rep, err := Push(context.Background(), fanout.New(token, nil), []fanout.Node{{Name: c.name, AdminURL: n.URL}}, urls(2), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r := rep.Nodes[0]; r.Failed != 2 || !strings.Contains(r.Results[1].Error, c.want) {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
}

func TestPushInput(t *testing.T) {
	c := fanout.New(token, nil)
	for _, cse := range []struct {
		urls []string
		o    Options
		want string
	}{
		{nil, Options{}, "no URLs"},
		{[]string{"ftp://x/y"}, Options{}, `"ftp://x/y" is not an absolute http(s) URL`},
		{urls(3), Options{Chunk: -1}, "chunk -1"},
		{make([]string, MaxURLs+1), Options{}, "at most 100000"},
	} {
		if _, err := Push(context.Background(), c, nil, cse.urls, cse.o); err == nil || !strings.Contains(err.Error(), cse.want) {
			t.Errorf("%v: %v, want %q", cse.o, err, cse.want)
		}
	}
}

func TestTargets(t *testing.T) {
	hubs := []fanout.Node{{Name: "h1", Role: "hub"}, {Name: "h2", Role: "hub"}}
	mixed := append([]fanout.Node{{Name: "e1", Role: "edge"}}, hubs...)
	if got := Targets(mixed, false); len(got) != 1 || got[0].Name != "e1" {
		t.Errorf("%v", got)
	}
	if got := Targets(mixed, true); len(got) != 3 {
		t.Errorf("%v", got)
	}
	if got := Targets(hubs, false); len(got) != 2 {
		t.Errorf("hubs only: %v", got)
	}
}
