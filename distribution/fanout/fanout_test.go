package fanout

import (
	"context"
	"encoding/json"
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
)

const token = "s3cret"

// node is an admin listener on 127.0.0.1 that records what it got.
type node struct {
	*httptest.Server
	got  atomic.Int32
	body atomic.Value // string: the last body
}

func newNode(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *node {
	t.Helper()
	n := &node{}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"missing or bad cluster token"}`)
			return
		}
		b, _ := io.ReadAll(r.Body)
		n.body.Store(string(b))
		n.got.Add(1)
		h(w, r)
	}))
	t.Cleanup(n.Close)
	return n
}

func okHandler(name string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"node":%q,"matched":1}`, name)
	}
}

func TestPostCollectsEveryAck(t *testing.T) {
	release := make(chan struct{})
	fast := newNode(t, okHandler("fast"))
	slow := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		<-release // answers only once the fast ones have been reported
		okHandler("slow")(w, r)
	})
	failing := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"bad purge request: unknown kind \"x\""}`)
	})
	plain := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream exploded\nsecond line", http.StatusInternalServerError)
	})
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused from now on

	nodes := []Node{
		{Name: "slow", Role: "edge", AdminURL: slow.URL},
		{Name: "fast", Role: "hub", AdminURL: fast.URL + "/"},
		{Name: "failing", AdminURL: failing.URL},
		{Name: "plain", AdminURL: plain.URL},
		{Name: "down", AdminURL: downURL},
		{Name: "nourl", AdminURL: "ftp://x"},
	}
	var order []string
	var mu sync.Mutex
	progress := func(a Ack) {
		mu.Lock()
		order = append(order, a.Node)
		if len(order) == len(nodes)-1 {
			close(release) // everyone but the slow node has been reported
		}
		mu.Unlock()
	}
	acks := New(token, nil).Post(context.Background(), nodes, "/purge", []byte(`{"kind":"all"}`), progress)

	if len(acks) != len(nodes) {
		t.Fatalf("%d acks for %d nodes", len(acks), len(nodes))
	}
	for i, a := range acks {
		if a.Node != nodes[i].Name {
			t.Errorf("ack %d is %q, want %q (nodes order)", i, a.Node, nodes[i].Name)
		}
		if a.Took <= 0 {
			t.Errorf("%s: took %v", a.Node, a.Took)
		}
	}
	if order[len(order)-1] != "slow" || len(order) != len(nodes) {
		t.Errorf("progress order %v: want every node once, slow last", order)
	}
	check := func(a Ack, ok bool, status int, errHas, body string) {
		t.Helper()
		if a.OK != ok || a.Status != status || !strings.Contains(a.Error, errHas) || (errHas == "" && a.Error != "") || string(a.Body) != body {
			t.Errorf("%s: got ok=%v status=%d error=%q body=%s; want ok=%v status=%d error~%q body=%s",
				a.Node, a.OK, a.Status, a.Error, a.Body, ok, status, errHas, body)
		}
	}
	check(acks[0], true, 200, "", `{"node":"slow","matched":1}`)
	check(acks[1], true, 200, "", `{"node":"fast","matched":1}`)
	check(acks[2], false, 400, `bad purge request: unknown kind "x"`, `{"error":"bad purge request: unknown kind \"x\""}`)
	check(acks[3], false, 500, "500 Internal Server Error: upstream exploded", "")
	check(acks[4], false, 0, "connection refused", "")
	check(acks[5], false, 0, `admin URL "ftp://x" is not http(s)`, "")
	if acks[0].Took < acks[1].Took {
		t.Errorf("slow node took %v, less than the fast one's %v", acks[0].Took, acks[1].Took)
	}
	if got := fast.body.Load(); got != `{"kind":"all"}` {
		t.Errorf("node got body %q", got)
	}
}

func TestPostContextEnds(t *testing.T) {
	hanging := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; ends when the client gives up
	})
	fast := newNode(t, okHandler("fast"))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var calls atomic.Int32
	progress := func(a Ack) {
		calls.Add(1)
		if a.Node == "fast" {
			cancel(errors.New("operator gave up"))
		}
	}
	nodes := []Node{{Name: "hanging", AdminURL: hanging.URL}, {Name: "fast", AdminURL: fast.URL}}
	acks := New(token, nil).Post(ctx, nodes, "/purge", []byte(`{}`), progress)
	if !acks[1].OK {
		t.Errorf("fast: %+v", acks[1])
	}
	if acks[0].OK || acks[0].Error != "no answer: operator gave up" {
		t.Errorf("hanging: %+v", acks[0])
	}
	if calls.Load() != 2 {
		t.Errorf("progress called %d times, want once per node", calls.Load())
	}
}

func TestPostTimeout(t *testing.T) {
	hanging := newNode(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c := New(token, nil)
	c.Timeout = time.Millisecond // per node; the hanging node cannot beat it
	acks := c.Post(context.Background(), []Node{{Name: "h", AdminURL: hanging.URL}}, "/purge", nil, nil)
	if acks[0].OK || acks[0].Error != "no answer: context deadline exceeded" {
		t.Errorf("%+v", acks[0])
	}
}

func TestPostToken(t *testing.T) {
	n := newNode(t, okHandler("n"))
	acks := New("wrong", nil).Post(context.Background(), []Node{{Name: "n", AdminURL: n.URL}}, "/purge", []byte(`{}`), nil)
	if acks[0].OK || acks[0].Status != 401 || acks[0].Error != "missing or bad cluster token" || n.got.Load() != 0 {
		t.Errorf("%+v", acks[0])
	}
}

func TestPostNoNodes(t *testing.T) {
	if acks := New(token, nil).Post(context.Background(), nil, "/purge", nil, func(Ack) { t.Error("progress without nodes") }); len(acks) != 0 {
		t.Errorf("%v", acks)
	}
}

func TestPostBadPathAndHugeAnswer(t *testing.T) {
	huge := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`"` + strings.Repeat("x", MaxBody) + `"`))
	})
	redirect := newNode(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
	})
	c := New(token, nil)
	acks := c.Post(context.Background(), []Node{{Name: "huge", AdminURL: huge.URL}, {Name: "redirect", AdminURL: redirect.URL}}, "/purge", nil, nil)
	if acks[0].OK || !strings.Contains(acks[0].Error, "answer larger than") || acks[0].Body != nil {
		t.Errorf("huge: ok=%v err=%q", acks[0].OK, acks[0].Error)
	}
	if acks[1].OK || acks[1].Status != http.StatusFound {
		t.Errorf("redirect was followed or hidden: %+v", acks[1])
	}
	acks = c.Post(context.Background(), []Node{{Name: "huge", AdminURL: huge.URL}}, "purge", nil, nil)
	if acks[0].OK || !strings.Contains(acks[0].Error, "does not start with /") {
		t.Errorf("relative path: %+v", acks[0])
	}
}

func TestAckJSON(t *testing.T) {
	b, err := json.Marshal(Ack{Node: "e1", OK: true, Status: 200, Took: 1500, Body: json.RawMessage(`{"matched":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"node":"e1","ok":true,"status":200,"took_ns":1500,"body":{"matched":2}}`; string(b) != want {
		t.Errorf("got %s\nwant %s", b, want)
	}
}

func TestTiers(t *testing.T) {
	nodes := []Node{{Name: "e1", Role: "edge"}, {Name: "h1", Role: "hub"}, {Name: "x"}, {Name: "h2", Role: "hub"}}
	got := fmt.Sprint(Tiers(nodes))
	if want := "[[{h1  hub } {h2  hub }] [{e1  edge } {x   }]]"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got := Tiers([]Node{{Name: "e", Role: "edge"}}); len(got) != 1 {
		t.Errorf("edges only: %v", got)
	}
}

// TestPostTiersOrder checks that no edge hears of a purge before every hub
// has answered it.
func TestPostTiersOrder(t *testing.T) {
	var hubsDone atomic.Int32
	var early atomic.Int32
	hub := func(w http.ResponseWriter, r *http.Request) {
		hubsDone.Add(1)
		okHandler("hub")(w, r)
	}
	edge := func(w http.ResponseWriter, r *http.Request) {
		if hubsDone.Load() != 2 {
			early.Add(1)
		}
		okHandler("edge")(w, r)
	}
	h1, h2, e1, e2 := newNode(t, hub), newNode(t, hub), newNode(t, edge), newNode(t, edge)
	nodes := []Node{
		{Name: "e1", Role: "edge", AdminURL: e1.URL}, {Name: "h1", Role: "hub", AdminURL: h1.URL},
		{Name: "e2", Role: "edge", AdminURL: e2.URL}, {Name: "h2", Role: "hub", AdminURL: h2.URL},
	}
	acks := New(token, nil).PostTiers(context.Background(), Tiers(nodes), "/purge", []byte(`{}`), nil)
	var names []string
	for _, a := range acks {
		if !a.OK {
			t.Errorf("%+v", a)
		}
		names = append(names, a.Node)
	}
	if strings.Join(names, ",") != "h1,h2,e1,e2" || early.Load() != 0 {
		t.Errorf("acks %v, %d edges purged before the hubs", names, early.Load())
	}
	// A tier not reached before the context ended is reported, not skipped.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	acks = New(token, nil).PostTiers(ctx, Tiers(nodes), "/purge", []byte(`{}`), nil)
	if len(acks) != 4 || acks[3].OK || !strings.Contains(acks[3].Error, "no answer") {
		t.Errorf("cancelled: %+v", acks)
	}
}
