package distribution

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// topology is an origin and some hubs on loopback.
type topology struct {
	origin *server
	hubs   map[string]*server
	cfg    ParentsConfig
}

func newTopology(t *testing.T, hubs ...string) *topology {
	t.Helper()
	tp := &topology{origin: newServer(t, "origin"), hubs: map[string]*server{}, cfg: DefaultParentsConfig()}
	testHealth(&tp.cfg.Health)
	for _, name := range hubs {
		s := newServer(t, name)
		tp.hubs[name] = s
		tp.cfg.Hubs = append(tp.cfg.Hubs, Hub{Name: name, URL: s.URL})
	}
	return tp
}

func (tp *topology) parents(t *testing.T, opts Options) *Parents {
	t.Helper()
	p, err := NewParents(tp.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// keyFor returns a cache key whose failover order starts with the given hubs.
func keyFor(t *testing.T, p *Parents, first ...string) string {
	t.Helper()
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("www.example.com/obj/%d", i)
		order := p.Order(k)
		match := true
		for j, h := range first {
			if order[j] != h {
				match = false
				break
			}
		}
		if match {
			return k
		}
	}
	t.Fatalf("no key starts with %v", first)
	return ""
}

func TestParentsRouteByKey(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b", "hub-c")
	p := tp.parents(t, Options{})
	got := map[string]int{}
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("www.example.com/k/%d", i)
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/k/"+fmt.Sprint(i)+"?v=1", key))
		want := p.Order(key)[0]
		if resp.StatusCode != 200 || body != "from "+want {
			t.Fatalf("key %q: %d %q, want the owner %s", key, resp.StatusCode, body, want)
		}
		got[want]++
		last := tp.hubs[want].last()
		if last.host != "www.example.com" || last.uri != "/k/"+fmt.Sprint(i)+"?v=1" {
			t.Fatalf("hub saw Host %q URI %q", last.host, last.uri)
		}
		// Nothing added to the response.
		if h := headerNames(resp.Header); h != "Content-Length,Content-Type,Date,X-Served-By" {
			t.Fatalf("response headers %s", h)
		}
	}
	t.Logf("300 keys over 3 hubs: %v", got)
	if len(got) != 3 {
		t.Fatalf("keys went to %v", got)
	}
	if tp.origin.hits.Load() != 0 {
		t.Fatal("the origin was contacted while hubs were up")
	}
}

func TestParentsKeyWithoutContext(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b", "hub-c")
	p := tp.parents(t, Options{})
	for i := 0; i < 50; i++ {
		path := fmt.Sprintf("/p/%d?x=%d", i, i)
		_, body := roundTrip(t, p, request(t, tp.origin.URL, path, ""))
		if want := p.Order("www.example.com" + path)[0]; body != "from "+want {
			t.Fatalf("%s went to %q, want %s (Host + URI)", path, body, want)
		}
	}
}

// TestParentsKillHub: closing the key's hub sends its requests to the next
// hub on the ring, without an error, and after fall failures the hub is
// marked down and no longer tried first.
func TestParentsKillHub(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b", "hub-c")
	ct := &countingTransport{rt: NewTransport(tp.cfg.ConnectTimeout.D(), 0)}
	reg := prometheus.NewRegistry()
	p := tp.parents(t, Options{Transport: ct})
	if err := p.Register(reg); err != nil {
		t.Fatal(err)
	}
	key := keyFor(t, p, "hub-a")
	next := p.Order(key)[1]
	if _, body := roundTrip(t, p, request(t, tp.origin.URL, "/x", key)); body != "from hub-a" {
		t.Fatalf("before: %q", body)
	}
	tp.hubs["hub-a"].Close()
	for i := 0; i < 5; i++ {
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/x", key))
		if resp.StatusCode != 200 || body != "from "+next {
			t.Fatalf("request %d after the kill: %d %q, want from %s", i, resp.StatusCode, body, next)
		}
	}
	// Fall is 3: the first 3 requests tried hub-a, then it was marked down.
	if n := ct.count(hostOf(tp.hubs["hub-a"])); n != 1+3 {
		t.Fatalf("hub-a was tried %d times, want 1 + fall (3)", n)
	}
	if p.Health().Healthy("hub-a") {
		t.Fatal("hub-a still healthy after 3 failures")
	}
	if v := metric(t, reg, "verge_distribution_failovers_total", map[string]string{"pool": "parents", "from": "hub-a"}); v != 3 {
		t.Fatalf("failovers from hub-a = %v", v)
	}
	if v := metric(t, reg, "verge_distribution_upstream_requests_total", map[string]string{"upstream": "hub-a", "result": "error"}); v != 3 {
		t.Fatalf("errors at hub-a = %v", v)
	}
	if v := metric(t, reg, "verge_distribution_health_up", map[string]string{"pool": "parents", "target": "hub-a"}); v != 0 {
		t.Fatalf("health_up{hub-a} = %v", v)
	}
	if tp.origin.hits.Load() != 0 {
		t.Fatal("went to the origin while a hub was up")
	}
	// The active probe agrees: hub-a stays down.
	p.Health().ProbeOnce(context.Background())
	if p.Health().Healthy("hub-a") {
		t.Fatal("probe brought a closed hub back")
	}
}

// TestParentsThroughProxy puts Parents under an httputil.ReverseProxy, as
// the edge does, and checks a client sees no error when the hub dies.
func TestParentsThroughProxy(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b")
	p := tp.parents(t, Options{})
	origin, _ := url.Parse(tp.origin.URL)
	edge := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(origin)
			r.Out.Host = r.In.Host
		},
		Transport: p,
	})
	t.Cleanup(edge.Close)
	get := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, edge.URL+"/asset.css", nil)
		req.Host = "www.example.com"
		resp, err := edge.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	owner := p.Order("www.example.com/asset.css")[0]
	other := p.Order("www.example.com/asset.css")[1]
	if code, body := get(); code != 200 || body != "from "+owner {
		t.Fatalf("before: %d %q", code, body)
	}
	tp.hubs[owner].Close()
	for i := 0; i < 5; i++ {
		if code, body := get(); code != 200 || body != "from "+other {
			t.Fatalf("after killing %s: %d %q", owner, code, body)
		}
	}
	// Both hubs gone: the origin answers.
	tp.hubs[other].Close()
	if code, body := get(); code != 200 || body != "from origin" {
		t.Fatalf("no hubs: %d %q", code, body)
	}
}

func TestParentsHealthRiseFall(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b", "hub-c")
	p := tp.parents(t, Options{})
	key := keyFor(t, p, "hub-a")
	next := p.Order(key)[1]
	tp.hubs["hub-a"].health.Store(http.StatusServiceUnavailable)
	for i := 0; i < 3; i++ {
		p.Health().ProbeOnce(context.Background())
	}
	if _, body := roundTrip(t, p, request(t, tp.origin.URL, "/h", key)); body != "from "+next {
		t.Fatalf("hub-a marked down but %q answered", body)
	}
	if tp.hubs["hub-a"].hits.Load() != 0 {
		t.Fatal("a hub marked down was sent a request")
	}
	tp.hubs["hub-a"].health.Store(http.StatusOK)
	p.Health().ProbeOnce(context.Background())
	if _, body := roundTrip(t, p, request(t, tp.origin.URL, "/h", key)); body != "from "+next {
		t.Fatalf("hub-a back after 1 good probe (rise 2): %q", body)
	}
	p.Health().ProbeOnce(context.Background())
	if _, body := roundTrip(t, p, request(t, tp.origin.URL, "/h", key)); body != "from hub-a" {
		t.Fatalf("hub-a not back after 2 good probes: %q", body)
	}
}

func TestParentsOriginFallback(t *testing.T) {
	t.Run("request URL", func(t *testing.T) {
		tp := newTopology(t, "hub-a", "hub-b")
		p := tp.parents(t, Options{})
		for _, h := range tp.hubs {
			h.Close()
		}
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/o?q=1", ""))
		if resp.StatusCode != 200 || body != "from origin" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if last := tp.origin.last(); last.host != "www.example.com" || last.uri != "/o?q=1" {
			t.Fatalf("origin saw %+v", last)
		}
	})
	t.Run("configured origin", func(t *testing.T) {
		tp := newTopology(t, "hub-a")
		tp.cfg.Origin = tp.origin.URL
		p := tp.parents(t, Options{})
		tp.hubs["hub-a"].health.Store(http.StatusInternalServerError)
		for i := 0; i < 3; i++ {
			p.Health().ProbeOnce(context.Background())
		}
		// The request URL points elsewhere; the configured origin wins.
		resp, body := roundTrip(t, p, request(t, "http://127.0.0.1:1", "/o", ""))
		if resp.StatusCode != 200 || body != "from origin" || tp.hubs["hub-a"].hits.Load() != 0 {
			t.Fatalf("%d %q, hub hits %d", resp.StatusCode, body, tp.hubs["hub-a"].hits.Load())
		}
	})
	t.Run("no hubs", func(t *testing.T) {
		tp := newTopology(t)
		p := tp.parents(t, Options{})
		if _, body := roundTrip(t, p, request(t, tp.origin.URL, "/", "")); body != "from origin" {
			t.Fatalf("%q", body)
		}
	})
	t.Run("disabled, hubs marked down are tried", func(t *testing.T) {
		tp := newTopology(t, "hub-a", "hub-b")
		tp.cfg.OriginFallback = false
		p := tp.parents(t, Options{})
		for _, h := range tp.hubs {
			h.health.Store(http.StatusServiceUnavailable)
		}
		for i := 0; i < 3; i++ {
			p.Health().ProbeOnce(context.Background())
		}
		key := keyFor(t, p, "hub-b")
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/", key))
		if resp.StatusCode != 200 || body != "from hub-b" || tp.origin.hits.Load() != 0 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("disabled, every hub dead", func(t *testing.T) {
		tp := newTopology(t, "hub-a", "hub-b")
		tp.cfg.OriginFallback = false
		reg := prometheus.NewRegistry()
		p := tp.parents(t, Options{Name: "edge-up"})
		if err := p.Register(reg); err != nil {
			t.Fatal(err)
		}
		for _, h := range tp.hubs {
			h.Close()
		}
		_, err := p.RoundTrip(request(t, tp.origin.URL, "/", ""))
		if err == nil || !strings.Contains(err.Error(), "distribution: edge-up: no upstream answered GET www.example.com/") {
			t.Fatalf("err = %v", err)
		}
		if tp.origin.hits.Load() != 0 {
			t.Fatal("origin contacted with origin_fallback false")
		}
		if v := metric(t, reg, "verge_distribution_exhausted_total", map[string]string{"pool": "edge-up"}); v != 1 {
			t.Fatalf("exhausted = %v", v)
		}
	})
}

func TestParentsNoRetryWithBody(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b")
	tp.cfg.Health.Fall = 100 // hub-a stays first choice through these failures
	p := tp.parents(t, Options{})
	key := keyFor(t, p, "hub-a")
	// A POST to a live hub goes through, body once.
	req := request(t, tp.origin.URL, "/form", key)
	req.Method = http.MethodPost
	req.Body = io.NopCloser(strings.NewReader("a=1"))
	req.ContentLength = 3
	if resp, _ := roundTrip(t, p, req); resp.StatusCode != 200 || tp.hubs["hub-a"].last().body != "a=1" {
		t.Fatalf("POST: %d, hub got %+v", resp.StatusCode, tp.hubs["hub-a"].last())
	}
	tp.hubs["hub-a"].Close()
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodGet} {
		req := request(t, tp.origin.URL, "/form", key)
		req.Method = method
		req.Body = io.NopCloser(strings.NewReader("b=2"))
		req.ContentLength = 3
		if _, err := p.RoundTrip(req); err == nil {
			t.Fatalf("%s with a body to a dead hub succeeded: it was retried elsewhere", method)
		}
	}
	if n := tp.hubs["hub-b"].hits.Load() + tp.origin.hits.Load(); n != 0 {
		t.Fatalf("a request with a body was sent again (%d)", n)
	}
	// A DELETE without a body is not idempotent-by-method here either.
	req = request(t, tp.origin.URL, "/x", key)
	req.Method = http.MethodDelete
	if _, err := p.RoundTrip(req); err == nil {
		t.Fatal("DELETE was retried on another hub")
	}
	// HEAD is retried.
	req = request(t, tp.origin.URL, "/x", key)
	req.Method = http.MethodHead
	if resp, err := p.RoundTrip(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v", err)
	} else {
		resp.Body.Close()
	}
}

func TestParents5xx(t *testing.T) {
	t.Run("from a healthy hub is the answer", func(t *testing.T) {
		tp := newTopology(t, "hub-a", "hub-b")
		p := tp.parents(t, Options{})
		key := keyFor(t, p, "hub-a")
		tp.hubs["hub-a"].status.Store(http.StatusBadGateway) // say, the origin failed behind it
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/", key))
		if resp.StatusCode != 502 || body != "from hub-a" || tp.hubs["hub-b"].hits.Load() != 0 {
			t.Fatalf("%d %q; hub-b hits %d", resp.StatusCode, body, tp.hubs["hub-b"].hits.Load())
		}
		if !p.Health().Healthy("hub-a") {
			t.Fatal("a 5xx from a live hub marked it down")
		}
	})
	t.Run("from a hub marked down moves on", func(t *testing.T) {
		tp := newTopology(t, "hub-a", "hub-b")
		p := tp.parents(t, Options{})
		key := keyFor(t, p, "hub-a")
		hub := tp.hubs["hub-a"]
		hub.status.Store(http.StatusServiceUnavailable)
		// While the request is in flight, probes find the hub dead.
		hub.onServe.Store(func() {
			for i := 0; i < 3; i++ {
				p.Health().ReportFailure("hub-a")
			}
		})
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/", key))
		if resp.StatusCode != 200 || body != "from hub-b" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("kept when nothing else answers", func(t *testing.T) {
		tp := newTopology(t, "hub-a")
		tp.cfg.OriginFallback = false
		p := tp.parents(t, Options{})
		hub := tp.hubs["hub-a"]
		hub.status.Store(http.StatusServiceUnavailable)
		hub.onServe.Store(func() {
			for i := 0; i < 3; i++ {
				p.Health().ReportFailure("hub-a")
			}
		})
		resp, body := roundTrip(t, p, request(t, tp.origin.URL, "/", ""))
		if resp.StatusCode != 503 || body != "from hub-a" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
}

func TestParentsCancelled(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b")
	tp.cfg.Health.Fall = 1
	p := tp.parents(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := request(t, tp.origin.URL, "/", "").WithContext(ctx)
	if _, err := p.RoundTrip(req); err == nil {
		t.Fatal("cancelled request succeeded")
	}
	for name := range tp.hubs {
		if !p.Health().Healthy(name) {
			t.Fatalf("%s marked down by a request its caller cancelled", name)
		}
	}
	if tp.origin.hits.Load() != 0 {
		t.Fatal("cancelled request went on to the origin")
	}
}

func TestParentsRegion(t *testing.T) {
	tp := newTopology(t, "eu-1", "eu-2", "us-1", "any-1")
	tp.cfg.Region = "eu"
	for i := range tp.cfg.Hubs {
		switch {
		case strings.HasPrefix(tp.cfg.Hubs[i].Name, "eu"):
			tp.cfg.Hubs[i].Region = "eu"
		case strings.HasPrefix(tp.cfg.Hubs[i].Name, "us"):
			tp.cfg.Hubs[i].Region = "us"
		}
	}
	p := tp.parents(t, Options{})
	if got := fmt.Sprint(p.Order("k")); strings.Contains(got, "us-1") || len(p.Order("k")) != 3 {
		t.Fatalf("order %s: want eu-1, eu-2 and any-1 only", got)
	}
	for i := 0; i < 100; i++ {
		roundTrip(t, p, request(t, tp.origin.URL, fmt.Sprintf("/r/%d", i), ""))
	}
	if tp.hubs["us-1"].hits.Load() != 0 || len(p.Health().Targets()) != 3 {
		t.Fatal("a hub of another region was used or probed")
	}
}

// TestParentsConcurrent runs requests while hubs die and health changes, for
// the race detector; every request must succeed (origin fallback is on).
func TestParentsConcurrent(t *testing.T) {
	tp := newTopology(t, "hub-a", "hub-b", "hub-c")
	p := tp.parents(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				resp, err := p.RoundTrip(request(t, tp.origin.URL, fmt.Sprintf("/c/%d/%d", g, i), ""))
				if err != nil {
					errs <- err
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	tp.hubs["hub-b"].health.Store(http.StatusServiceUnavailable)
	for i := 0; i < 4; i++ {
		p.Health().ProbeOnce(context.Background())
	}
	tp.hubs["hub-c"].Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
