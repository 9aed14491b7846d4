package alerts

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
)

// fakeFleet is a Source whose traffic is a list of timed counts.
type fakeFleet struct {
	nodes  []Node
	events map[string][]event
}

type event struct {
	at time.Time
	c  Counts
}

func (f *fakeFleet) Nodes() []Node { return f.nodes }

func (f *fakeFleet) Window(node string, from, to time.Time) Counts {
	var out Counts
	for _, e := range f.events[node] {
		if !e.at.Before(from) && e.at.Before(to) {
			out.Requests += e.c.Requests
			out.Hits += e.c.Hits
			out.Misses += e.c.Misses
			out.Errors += e.c.Errors
		}
	}
	return out
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time       { return c.t }
func (c *clock) step(d time.Duration) { c.t = c.t.Add(d) }
func rule(name string, k Kind, f func(*Rule)) Rule {
	r := DefaultRule()
	r.Name, r.Kind = name, k
	if f != nil {
		f(&r)
	}
	return r
}

func TestFiringAndResolving(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	rules := []Rule{
		rule("silent", NodeSilent, func(r *Rule) { r.For = configs.Duration(30 * time.Second) }),
		rule("hits", HitRatioBelow, func(r *Rule) { r.Threshold = 0.5; r.Window = configs.Duration(time.Minute); r.MinRequests = 10 }),
		rule("5xx", ErrorRateAbove, func(r *Rule) { r.Threshold = 0.1; r.Window = configs.Duration(time.Minute); r.MinRequests = 10 }),
		rule("attack", Attack, nil),
	}
	if err := Validate("alerts.rules", rules); err != nil {
		t.Fatal(err)
	}
	e := New(rules, clk.now)
	fl := &fakeFleet{
		nodes:  []Node{{Name: "e1", Role: "edge", Seen: clk.t}, {Name: "d1", Role: "dns", Seen: clk.t}},
		events: map[string][]event{},
	}
	if ch := e.Evaluate(fl); len(ch) != 0 {
		t.Fatalf("quiet fleet fired %+v", ch)
	}
	// 40 s of silence from d1 fires node_silent for it only (e1 keeps reporting).
	clk.step(40 * time.Second)
	fl.nodes[0].Seen = clk.t
	ch := e.Evaluate(fl)
	if len(ch) != 1 || ch[0].ID != "silent/d1" || ch[0].State != Firing || ch[0].Value != 40 {
		t.Fatalf("silence: %+v", ch)
	}
	// Firing again changes nothing.
	clk.step(5 * time.Second)
	fl.nodes[0].Seen = clk.t
	if ch := e.Evaluate(fl); len(ch) != 0 {
		t.Fatalf("repeat: %+v", ch)
	}
	// A hit ratio of 20% and 5xx of 30% on e1 (d1 is dns: the ratios do not apply).
	fl.events["e1"] = []event{{at: clk.t.Add(-time.Second), c: Counts{Requests: 100, Hits: 20, Misses: 80, Errors: 30}}}
	fl.events["d1"] = fl.events["e1"]
	ch = e.Evaluate(fl)
	if len(ch) != 2 || ch[0].ID != "5xx/e1" || ch[1].ID != "hits/e1" || ch[1].Value != 0.2 || ch[0].Value != 0.3 {
		t.Fatalf("ratios: %+v", ch)
	}
	// Attack reported.
	fl.nodes[0].UnderAttack, fl.nodes[0].AttackReason = true, "request rate 9000/s"
	ch = e.Evaluate(fl)
	if len(ch) != 1 || ch[0].ID != "attack/e1" || !strings.Contains(ch[0].Summary, "9000/s") {
		t.Fatalf("attack: %+v", ch)
	}
	if a := e.Active(); len(a) != 4 {
		t.Fatalf("active: %+v", a)
	}
	// d1 reports again, the window moves past the bad minute, the attack ends.
	clk.step(2 * time.Minute)
	fl.nodes[0].Seen, fl.nodes[1].Seen = clk.t, clk.t
	fl.nodes[0].UnderAttack = false
	fl.events["e1"] = append(fl.events["e1"], event{at: clk.t.Add(-time.Second), c: Counts{Requests: 100, Hits: 90, Misses: 10}})
	ch = e.Evaluate(fl)
	var ids []string
	for _, a := range ch {
		if a.State != Resolved || a.EndsAt != clk.t {
			t.Errorf("not resolved: %+v", a)
		}
		ids = append(ids, a.ID)
	}
	if strings.Join(ids, ",") != "5xx/e1,attack/e1,hits/e1,silent/d1" {
		t.Fatalf("resolved %v", ids)
	}
	if len(e.Active()) != 0 || len(e.Resolved()) != 4 {
		t.Fatalf("after resolve: %d active, %d resolved", len(e.Active()), len(e.Resolved()))
	}
	// Too little traffic: the ratio rules neither fire nor flap.
	fl.events["e1"] = []event{{at: clk.t.Add(-time.Second), c: Counts{Requests: 5, Hits: 0, Misses: 5, Errors: 5}}}
	if ch := e.Evaluate(fl); len(ch) != 0 {
		t.Fatalf("below min_requests: %+v", ch)
	}
	// A node that leaves the fleet resolves its alerts.
	clk.step(time.Minute)
	fl.nodes = fl.nodes[:1]
	fl.nodes[0].Seen = clk.t.Add(-50 * time.Second)
	ch = e.Evaluate(fl)
	if len(ch) != 1 || ch[0].ID != "silent/e1" || ch[0].State != Firing {
		t.Fatalf("e1 silent: %+v", ch)
	}
	fl.nodes = nil
	ch = e.Evaluate(fl)
	if len(ch) != 1 || ch[0].State != Resolved || !strings.Contains(ch[0].Summary, "no longer in the fleet") {
		t.Fatalf("gone: %+v", ch)
	}
}

func TestNeverReportedNodeIsSilentSinceStart(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e := New([]Rule{rule("silent", NodeSilent, func(r *Rule) { r.For = configs.Duration(10 * time.Second) })}, clk.now)
	fl := &fakeFleet{nodes: []Node{{Name: "static", Role: "edge"}}}
	if ch := e.Evaluate(fl); len(ch) != 0 {
		t.Fatal(ch)
	}
	clk.step(11 * time.Second)
	if ch := e.Evaluate(fl); len(ch) != 1 || !strings.Contains(ch[0].Summary, "never reported") {
		t.Fatalf("%+v", ch)
	}
}

func TestValidate(t *testing.T) {
	bad := []Rule{
		rule("", NodeSilent, nil),
		rule("x", "bogus", nil),
		rule("x", HitRatioBelow, func(r *Rule) { r.Threshold = 2; r.Window = configs.Duration(2 * time.Hour) }),
		rule("y", Attack, func(r *Rule) { r.Roles = []string{"router"}; r.Severity = "" }),
		rule("z", NodeSilent, func(r *Rule) { r.For = 0 }),
		rule("w", "", nil),
	}
	err := Validate("alerts.rules", bad)
	for _, want := range []string{"alerts.rules[0].name: required", "alerts.rules[1].kind: unknown kind", "alerts.rules[2].name: duplicate",
		"alerts.rules[2].threshold", "alerts.rules[2].window", "alerts.rules[3].roles[0]", "alerts.rules[3].severity",
		"alerts.rules[4].for", "alerts.rules[5].kind: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// hook is a real HTTP webhook receiver that fails its first answers.
type hook struct {
	mu       sync.Mutex
	fail     []int // statuses to answer first, in order
	got      []Notification
	attempts []string
	auth     []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts = append(h.attempts, r.Header.Get("Verge-Attempt"))
	h.auth = append(h.auth, r.Header.Get("Authorization"))
	if len(h.fail) > 0 {
		code := h.fail[0]
		h.fail = h.fail[1:]
		if code == -1 { // drop the connection
			panic(http.ErrAbortHandler)
		}
		http.Error(w, "not now", code)
		return
	}
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	h.got = append(h.got, n)
}

func TestWebhookRetriesWithBackoff(t *testing.T) {
	h := &hook{fail: []int{503, -1, 429, 500, 502}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var waits []time.Duration
	var results []string
	var mu sync.Mutex
	w, err := NewWebhook(WebhookOptions{URL: srv.URL, Token: "hooktoken", MaxAttempts: 8, Backoff: time.Second, MaxBackoff: 4 * time.Second,
		Sleep:  func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil },
		Result: func(r string) { mu.Lock(); results = append(results, r); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	a := Alert{ID: "silent/e1", Rule: "silent", Node: "e1", State: Firing, StartsAt: time.Unix(1000, 0).UTC()}
	if err := w.Deliver(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if strings.Join(h.attempts, ",") != "1,2,3,4,5,6" || h.auth[0] != "Bearer hooktoken" {
		t.Fatalf("attempts %v auth %v", h.attempts, h.auth)
	}
	if len(h.got) != 1 || h.got[0].Status != Firing || h.got[0].Alert.ID != "silent/e1" || h.got[0].Version != "1" {
		t.Fatalf("received %+v", h.got)
	}
	if strings.Join(results, ",") != "retry,retry,retry,retry,retry,delivered" {
		t.Fatalf("results %v", results)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	// Bounded: at most MaxAttempts tries.
	h := &hook{fail: []int{500, 500, 500, 500}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	n := 0
	w, _ := NewWebhook(WebhookOptions{URL: srv.URL, MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { n++; return nil }})
	if err := w.Deliver(context.Background(), Alert{ID: "x", State: Resolved}); err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err %v", err)
	}
	if len(h.attempts) != 3 || n != 2 {
		t.Fatalf("%d attempts, %d waits", len(h.attempts), n)
	}
	// A 4xx other than 408/429 is permanent: no retry.
	h2 := &hook{fail: []int{404}}
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	w2, _ := NewWebhook(WebhookOptions{URL: srv2.URL, Sleep: func(context.Context, time.Duration) error { t.Fatal("slept"); return nil }})
	if err := w2.Deliver(context.Background(), Alert{ID: "x"}); err == nil || len(h2.attempts) != 1 {
		t.Fatalf("404: %v, %d attempts", err, len(h2.attempts))
	}
	// Cancelled while waiting: stops.
	h3 := &hook{fail: []int{500, 500}}
	srv3 := httptest.NewServer(h3)
	defer srv3.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w3, _ := NewWebhook(WebhookOptions{URL: srv3.URL, Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }})
	if err := w3.Deliver(ctx, Alert{ID: "x"}); err == nil || len(h3.attempts) != 1 {
		t.Fatalf("cancel: %v, %d attempts", err, len(h3.attempts))
	}
}

func TestWebhookQueueDeliversInOrder(t *testing.T) {
	h := &hook{fail: []int{500}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	delivered := make(chan struct{}, 10)
	w, _ := NewWebhook(WebhookOptions{URL: srv.URL, Queue: 10, Sleep: func(context.Context, time.Duration) error { return nil },
		Result: func(r string) {
			if r == "delivered" {
				delivered <- struct{}{}
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range []string{Firing, Resolved} {
		w.Enqueue(Alert{ID: "a/n", State: s})
	}
	go w.Run(ctx)
	<-delivered
	<-delivered
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) != 2 || h.got[0].Status != Firing || h.got[1].Status != Resolved {
		t.Fatalf("got %+v", h.got)
	}
}
