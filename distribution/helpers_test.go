package distribution

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution/health"
	"github.com/vergecdn/verge/edge/cachekey"
)

// server is a hub, backend or origin on 127.0.0.1 that records what it gets.
type server struct {
	name string
	*httptest.Server
	health  atomic.Int32 // status of /healthz
	status  atomic.Int32 // status of everything else
	hits    atomic.Int64 // requests other than /healthz
	onServe atomic.Value // func(), run before answering a request (not /healthz)

	mu   sync.Mutex // guards reqs
	reqs []seen
}

// seen is one request as a server saw it.
type seen struct {
	host, uri, method, body string
}

func newServer(t *testing.T, name string) *server {
	t.Helper()
	s := &server{name: name}
	s.health.Store(http.StatusOK)
	s.status.Store(http.StatusOK)
	s.onServe.Store(func() {})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(int(s.health.Load()))
			return
		}
		s.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{host: r.Host, uri: r.RequestURI, method: r.Method, body: string(body)})
		s.mu.Unlock()
		s.onServe.Load().(func())()
		w.Header().Set("X-Served-By", name)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(int(s.status.Load()))
		io.WriteString(w, "from "+name)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) last() seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return seen{}
	}
	return s.reqs[len(s.reqs)-1]
}

// testHealth is a health config for tests: Run is never called, rounds are
// driven with ProbeOnce.
func testHealth(c *health.Config) {
	c.Interval = configs.Duration(time.Hour)
	c.Timeout = configs.Duration(2 * time.Second)
}

// request builds a GET for path on the property www.example.com, aimed at
// base (what the edge would do: the origin URL, the property's Host), with
// the cache key in the context when key is not "".
func request(t *testing.T, base, path, key string) *http.Request {
	t.Helper()
	ctx := context.Background()
	if key != "" {
		ctx = cachekey.NewContext(ctx, key)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "www.example.com"
	return req
}

// roundTrip sends req and returns the status and body.
func roundTrip(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// metric returns the value of the series of name whose labels include want,
// summed when several match.
func metric(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// headerNames lists a header's names, sorted.
func headerNames(h http.Header) string {
	var names []string
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// countingTransport counts the requests it passes on, per host.
type countingTransport struct {
	rt http.RoundTripper
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[req.URL.Host]++
	c.mu.Unlock()
	return c.rt.RoundTrip(req)
}

func (c *countingTransport) count(host string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[host]
}

func hostOf(s *server) string { return strings.TrimPrefix(s.URL, "http://") }
