package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vergecdn/verge/edge/storage"
)

// clock is a settable clock for TTL logic.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// origin is a test origin that counts requests per path.
type origin struct {
	*httptest.Server
	mu      sync.Mutex
	hits    map[string]int
	handler http.HandlerFunc
	last    *http.Request
}

func newOrigin(t *testing.T, h http.HandlerFunc) *origin {
	o := &origin{hits: map[string]int{}, handler: h}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.RequestURI()]++
		o.last = r.Clone(r.Context())
		o.mu.Unlock()
		o.handler(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

func (o *origin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

type testEdge struct {
	*Engine
	srv   *httptest.Server
	clock *clock
}

// newEdge starts an engine in front of upstream on a real loopback server.
func newEdge(t *testing.T, upstream string, mod func(*Config)) *testEdge {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Node.Name = "edge1"
	cfg.ClusterToken = "secret"
	prop := DefaultProperty()
	prop.Name, prop.Hosts, prop.Origin = "site", []string{"www.example.test", "127.0.0.1"}, upstream
	cfg.Properties = []Property{prop}
	if mod != nil {
		mod(&cfg)
	}
	c := newClock()
	e, err := New(cfg, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &testEdge{Engine: e, srv: srv, clock: c}
}

func (te *testEdge) get(t *testing.T, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return te.do(t, http.MethodGet, path, nil, hdr...)
}

func (te *testEdge) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, te.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "www.example.test"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := te.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func cacheStatus(r *http.Response) string { return strings.Join(r.Header.Values("Cache-Status"), ", ") }

func TestHitMissAndHeaders(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "hello")
	})
	te := newEdge(t, o.URL, nil)

	resp, body := te.get(t, "/a")
	if body != "hello" || resp.StatusCode != 200 {
		t.Fatalf("miss: %d %q", resp.StatusCode, body)
	}
	if cs := cacheStatus(resp); cs != "edge1; fwd=uri-miss" {
		t.Errorf("miss Cache-Status = %q", cs)
	}
	if resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop fields leaked: %v", resp.Header)
	}
	if v := resp.Header.Get("Via"); v != "1.1 edge1" {
		t.Errorf("Via = %q", v)
	}
	req := o.lastRequest()
	if xff := req.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("origin saw X-Forwarded-For %q", xff)
	}
	if req.Host != "www.example.test" {
		t.Errorf("origin saw Host %q", req.Host)
	}

	te.clock.Add(10 * time.Second)
	resp, body = te.get(t, "/a")
	if body != "hello" || cacheStatus(resp) != "edge1; hit" {
		t.Fatalf("hit: %q %q", body, cacheStatus(resp))
	}
	if resp.Header.Get("Age") != "10" {
		t.Errorf("Age = %q, want 10", resp.Header.Get("Age"))
	}
	if o.count("/a") != 1 {
		t.Errorf("origin hits = %d", o.count("/a"))
	}

	// A client's conditional request is answered from cache.
	resp, body = te.get(t, "/a", "If-None-Match", `"v1"`)
	if resp.StatusCode != 304 || body != "" || resp.Header.Get("Etag") != `"v1"` {
		t.Errorf("conditional: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// HEAD from the stored GET.
	resp, body = te.do(t, http.MethodHead, "/a", nil)
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "5" || o.count("/a") != 1 {
		t.Errorf("HEAD: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// Expiry with the injected clock: stale, revalidated with a 304.
	o.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Cache-Control", "max-age=120")
			w.Header().Set("X-Updated", "yes")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		t.Errorf("revalidation without If-None-Match")
	}
	te.clock.Add(60 * time.Second)
	resp, body = te.get(t, "/a")
	if body != "hello" || resp.Header.Get("X-Updated") != "yes" || cacheStatus(resp) != "edge1; fwd=stale; fwd-status=304" {
		t.Fatalf("revalidated: %q %v", body, resp.Header)
	}
	resp, _ = te.get(t, "/a")
	if resp.Header.Get("Cache-Control") != "max-age=120" || cacheStatus(resp) != "edge1; hit" {
		t.Errorf("after 304: %v", resp.Header)
	}
}

func TestRefusesUnknownHostsAndProxyRequests(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") })
	te := newEdge(t, o.URL, nil)
	resp, body := te.get(t, "/", "Host", "evil.example")
	if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, "unknown host") {
		t.Errorf("unknown host: %d %q", resp.StatusCode, body)
	}
	// An absolute-form target for another host, over a raw connection.
	for _, raw := range []string{
		"GET http://evil.example/ HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
		"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
		"CONNECT www.example.test:443 HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
	} {
		c, err := net.Dial("tcp", te.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := io.ReadAll(io.LimitReader(c, 12))
		c.Close()
		if got := string(line); got != "HTTP/1.1 421" && got != "HTTP/1.1 405" && got != "HTTP/1.1 400" {
			t.Errorf("%q answered %q", strings.SplitN(raw, "\r\n", 2)[0], got)
		}
	}
	if o.count("/") != 0 {
		t.Errorf("origin was reached %d times", o.count("/"))
	}
	// Cache-control methods are refused, never forwarded.
	for _, m := range []string{"PURGE", "BAN", "TRACE"} {
		resp, _ := te.do(t, m, "/", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d", m, resp.StatusCode)
		}
	}
	// One field over 8 KiB.
	resp, _ = te.get(t, "/", "X-Big", strings.Repeat("a", 9<<10))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("9 KiB field: %d", resp.StatusCode)
	}
	// Too many header fields.
	hdr := []string{}
	for i := 0; i < 120; i++ {
		hdr = append(hdr, fmt.Sprintf("X-F%d", i), "v")
	}
	resp, _ = te.get(t, "/", hdr...)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("120 fields: %d", resp.StatusCode)
	}
}

func TestUpstreamErrors(t *testing.T) {
	// Unreachable: a port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	te := newEdge(t, dead, nil)
	resp, body := te.get(t, "/x")
	if resp.StatusCode != 502 || !strings.Contains(body, "unreachable") {
		t.Errorf("unreachable: %d %q", resp.StatusCode, body)
	}

	// Timeout: the origin holds the response past header_timeout.
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	te2 := newEdge(t, o.URL, func(c *Config) { c.UpstreamHTTP.HeaderTimeout = 1 })
	resp, body = te2.get(t, "/slow")
	if resp.StatusCode != 504 || !strings.Contains(body, "timed out") {
		t.Errorf("timeout: %d %q", resp.StatusCode, body)
	}
}

func TestCollapsing(t *testing.T) {
	const n = 200
	release := make(chan struct{})
	var calls atomic.Int32
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "shared body")
	})
	te := newEdge(t, o.URL, nil)
	te.srv.Client().Transport.(*http.Transport).MaxConnsPerHost = 0
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := te.srv.Client().Get(te.srv.URL + "/cold")
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "shared body" {
				errs <- fmt.Sprintf("%d %q", resp.StatusCode, b)
			}
		}()
	}
	// Let the origin answer once every client is either waiting on the fill
	// or still on its way (late ones hit the cache or the same fill).
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := o.count("/cold"); got != 1 {
		t.Errorf("origin saw %d requests for 200 concurrent misses, want 1", got)
	}
}

// lateStore misses the first Get of key: what a request sees when another
// request's fill stores the object and leaves the fill table between the
// first request's lookup and its join.
type lateStore struct {
	*storage.RAM
	key    string
	missed atomic.Bool
}

func (s *lateStore) Get(key string) (*storage.Object, bool) {
	if key == s.key && s.missed.CompareAndSwap(false, true) {
		return nil, false
	}
	return s.RAM.Get(key)
}

// A request whose lookup missed just before another request's fill stored
// the object looks again once it leads a fill, and does not go upstream.
func TestFillLeaderLooksAgain(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "body")
	})
	te := newEdge(t, o.URL, nil)
	if res, body := te.get(t, "/late"); body != "body" || res.Header.Get("Cache-Status") != "edge1; fwd=uri-miss" {
		t.Fatalf("first: %q %q", body, res.Header.Get("Cache-Status"))
	}
	te.store = &lateStore{RAM: te.store.(*storage.Tiered).RAM(), key: "www.example.test/late"}
	if res, body := te.get(t, "/late"); body != "body" || res.Header.Get("Cache-Status") != "edge1; hit" {
		t.Errorf("second: %q %q", body, res.Header.Get("Cache-Status"))
	}
	if n := o.count("/late"); n != 1 {
		t.Errorf("origin saw %d requests, want 1", n)
	}
}

func TestUncacheableReleasesWaiters(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "private")
		io.WriteString(w, "mine")
	})
	te := newEdge(t, o.URL, nil)
	const n = 5
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := te.get(t, "/private")
			if body != "mine" || resp.StatusCode != 200 {
				t.Errorf("%d %q", resp.StatusCode, body)
			}
		}()
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	// Every request got its own upstream answer; none was shared.
	if got := o.count("/private"); got != n {
		t.Errorf("origin saw %d requests, want %d", got, n)
	}
}

func TestStreamsWhileFilling(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "-last")
	})
	te := newEdge(t, o.URL, nil)
	resp, err := te.srv.Client().Get(te.srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first bytes before the origin finished: %q %v", buf, err)
	}
	// A second client joins the fill in progress.
	second := make(chan string)
	go func() {
		r2, err := te.srv.Client().Get(te.srv.URL + "/stream")
		if err != nil {
			second <- err.Error()
			return
		}
		b, _ := io.ReadAll(r2.Body)
		r2.Body.Close()
		second <- string(b)
	}()
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(buf)+string(rest) != "first-last" {
		t.Errorf("first client got %q", string(buf)+string(rest))
	}
	if got := <-second; got != "first-last" {
		t.Errorf("second client got %q", got)
	}
	if o.count("/stream") != 1 {
		t.Errorf("origin saw %d requests", o.count("/stream"))
	}
}

// lastReadBlocks is an upstream body whose bytes all arrive in one read
// while the end of the stream waits for release.
type lastReadBlocks struct {
	body    []byte
	waiting chan struct{} // closed when the read after the bytes begins
	release chan struct{}
	reads   int
}

func (b *lastReadBlocks) Read(p []byte) (int, error) {
	b.reads++
	if b.reads == 1 {
		return copy(p, b.body), nil
	}
	if b.reads == 2 {
		close(b.waiting)
	}
	<-b.release
	return 0, io.EOF
}

func (b *lastReadBlocks) Close() error { return nil }

// A client that has the whole body finds the object stored: the fill
// stores it before the last bytes reach any client.
func TestWholeBodyOnlyOnceStored(t *testing.T) {
	body := &lastReadBlocks{body: []byte("0123456789"), waiting: make(chan struct{}), release: make(chan struct{})}
	var upstream atomic.Int32
	e := engineWithUpstream(t, "127.0.0.1", func(r *http.Request) (*http.Response, error) {
		if upstream.Add(1) > 1 {
			return nil, errors.New("a second upstream request")
		}
		return &http.Response{StatusCode: 200, ContentLength: 10, Body: body, Request: r,
			Header: http.Header{"Cache-Control": {"max-age=60"}, "Content-Length": {"10"}}}, nil
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	type got struct {
		body, status string
	}
	get := func() got {
		res, err := srv.Client().Get(srv.URL + "/x")
		if err != nil {
			return got{body: err.Error()}
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return got{string(b), res.Header.Get("Cache-Status")}
	}
	first := make(chan got, 1)
	go func() { first <- get() }()
	<-body.waiting
	select {
	case g := <-first:
		t.Fatalf("the client had the whole body (%q) before the fill stored it", g.body)
	case <-time.After(50 * time.Millisecond):
	}
	close(body.release)
	if g := <-first; g.body != "0123456789" || g.status != "edge1; fwd=uri-miss" {
		t.Fatalf("first: %+v", g)
	}
	if g := get(); g.body != "0123456789" || g.status != "edge1; hit" {
		t.Fatalf("right after: %+v", g)
	}
}

func TestTruncatedUpstreamIsNotStoredOrPassedAsWhole(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only part")
		w.(http.Flusher).Flush()
		// the connection is closed mid-body
		panic(http.ErrAbortHandler)
	})
	te := newEdge(t, o.URL, nil)
	resp, err := te.srv.Client().Get(te.srv.URL + "/torn")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("client read a torn body without an error")
	}
	if _, ok := te.store.Get("www.example.test/torn"); ok {
		t.Error("torn object was stored")
	}
}

// An upstream body longer than its Content-Length (possible only with a
// transport that does not enforce it) is not stored; the client gets the
// announced bytes.
func TestLongerThanAnnouncedIsNotStored(t *testing.T) {
	var upstream atomic.Int32
	e := engineWithUpstream(t, "127.0.0.1", func(r *http.Request) (*http.Response, error) {
		upstream.Add(1)
		return &http.Response{StatusCode: 200, ContentLength: 5, Body: io.NopCloser(strings.NewReader("0123456789")), Request: r,
			Header: http.Header{"Cache-Control": {"max-age=60"}, "Content-Length": {"5"}}}, nil
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	for i := 0; i < 2; i++ {
		res, err := srv.Client().Get(srv.URL + "/long")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "01234" {
			t.Errorf("request %d: body %q", i, b)
		}
	}
	if n := upstream.Load(); n != 2 {
		t.Errorf("upstream saw %d requests, want 2 (nothing stored)", n)
	}
}

func TestLargeObjectPassesUncached(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 200<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		http.ServeContent(w, r, "big", time.Time{}, bytes.NewReader(big))
	})
	te := newEdge(t, o.URL, func(c *Config) { c.Cache.MaxObjectBytes = 1 << 20 })
	for i := 0; i < 2; i++ {
		_, body := te.get(t, "/big")
		if len(body) != len(big) {
			t.Fatalf("got %d bytes", len(body))
		}
	}
	if o.count("/big") != 2 {
		t.Errorf("origin saw %d requests, want 2 (not cached)", o.count("/big"))
	}
	// A range of an object too big to store is still a range.
	for i := 0; i < 2; i++ {
		resp, body := te.get(t, "/big", "Range", "bytes=1000005-1000009")
		if resp.StatusCode != 206 || body != "56789" {
			t.Errorf("range of an uncached object: %d %q", resp.StatusCode, body)
		}
	}
}

func TestStaleWhileRevalidateAndStaleIfError(t *testing.T) {
	version := "v1"
	var fail atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(503)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=30, stale-if-error=300")
		io.WriteString(w, version)
	})
	te := newEdge(t, o.URL, nil)
	te.get(t, "/s")
	version = "v2"
	te.clock.Add(20 * time.Second) // stale, within stale-while-revalidate
	resp, body := te.get(t, "/s")
	if body != "v1" || !strings.Contains(cacheStatus(resp), "stale-while-revalidate") {
		t.Fatalf("swr: %q %q", body, cacheStatus(resp))
	}
	// the background revalidation lands
	waitFor(t, func() bool { _, b := te.get(t, "/s"); return b == "v2" })

	fail.Store(true)
	te.clock.Add(100 * time.Second) // past swr, within stale-if-error
	resp, body = te.get(t, "/s")
	if body != "v2" || resp.StatusCode != 200 || !strings.Contains(cacheStatus(resp), "stale-if-error") {
		t.Fatalf("stale-if-error: %d %q %q", resp.StatusCode, body, cacheStatus(resp))
	}
	te.clock.Add(time.Hour) // past stale-if-error
	resp, _ = te.get(t, "/s")
	if resp.StatusCode != 503 {
		t.Errorf("beyond stale-if-error: %d", resp.StatusCode)
	}
}

// waitFor polls cond until it holds (for background work finishing).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition never held")
}

func TestVaryVariants(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	te := newEdge(t, o.URL, nil)
	for i := 0; i < 2; i++ {
		for _, lang := range []string{"en", "de"} {
			_, body := te.get(t, "/v", "Accept-Language", lang)
			if body != "lang="+lang {
				t.Fatalf("%s: %q", lang, body)
			}
		}
	}
	if o.count("/v") != 2 {
		t.Errorf("origin saw %d, want one per variant", o.count("/v"))
	}
	// Purging the URL removes every variant.
	if _, err := te.Purge(Purge{Kind: PurgeURL, Value: "http://www.example.test/v"}); err != nil {
		t.Fatal(err)
	}
	te.get(t, "/v", "Accept-Language", "en")
	if o.count("/v") != 3 {
		t.Errorf("after purge: origin saw %d", o.count("/v"))
	}
}

func TestRangesFromCache(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("ETag", `"r1"`)
		io.WriteString(w, "0123456789")
	})
	te := newEdge(t, o.URL, nil)
	cases := []struct {
		rng, ifRange string
		code         int
		body         string
		cr           string
	}{
		{"bytes=2-4", "", 206, "234", "bytes 2-4/10"},
		{"bytes=-3", "", 206, "789", "bytes 7-9/10"},
		{"bytes=8-", "", 206, "89", "bytes 8-9/10"},
		{"bytes=20-", "", 416, "", "bytes */10"},
		{"bytes=x", "", 200, "0123456789", ""},
		{"bytes=2-4", `"other"`, 200, "0123456789", ""},
		{"bytes=2-4", `"r1"`, 206, "234", "bytes 2-4/10"},
		{"bytes=0-1,1-3", "", 206, "0123", "bytes 0-3/10"}, // overlapping ranges coalesce
	}
	for _, c := range cases {
		hdr := []string{"Range", c.rng}
		if c.ifRange != "" {
			hdr = append(hdr, "If-Range", c.ifRange)
		}
		resp, body := te.get(t, "/r", hdr...)
		if resp.StatusCode != c.code || body != c.body || resp.Header.Get("Content-Range") != c.cr {
			t.Errorf("%s (If-Range %s): %d %q %q", c.rng, c.ifRange, resp.StatusCode, body, resp.Header.Get("Content-Range"))
		}
	}
	// Two disjoint ranges: multipart/byteranges.
	o2 := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(bytes.Repeat([]byte("abcdefghij"), 300))
	})
	te2 := newEdge(t, o2.URL, nil)
	resp, body := te2.get(t, "/m", "Range", "bytes=0-1,10-11")
	if resp.StatusCode != 206 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges; boundary=") ||
		!strings.Contains(body, "Content-Range: bytes 10-11/3000") {
		t.Errorf("multipart: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// Many small ranges on a small object: never much larger than the object.
	var spec []string
	for i := 0; i < 16; i++ {
		spec = append(spec, fmt.Sprintf("%d-%d", i*4, i*4))
	}
	resp, body = te.get(t, "/r", "Range", "bytes="+strings.Join(spec, ","))
	if len(body) > 10+1024 {
		t.Errorf("16 ranges of a 10-byte object: %d bytes", len(body))
	}
	_ = resp
}

func TestInvalidationOnUnsafeMethods(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/other")
			w.WriteHeader(201)
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, r.URL.Path)
	})
	te := newEdge(t, o.URL, nil)
	te.get(t, "/doc")
	te.get(t, "/other")
	te.get(t, "/doc")
	if o.count("/doc") != 1 {
		t.Fatal("not cached")
	}
	resp, _ := te.do(t, http.MethodPost, "/doc", strings.NewReader("payload"))
	if resp.StatusCode != 201 || cacheStatus(resp) != "edge1; fwd=method" {
		t.Fatalf("POST: %d %q", resp.StatusCode, cacheStatus(resp))
	}
	te.get(t, "/doc")
	te.get(t, "/other")
	// /doc: GET, POST, GET again
	if o.count("/doc") != 3 || o.count("/other") != 2 {
		t.Errorf("after POST: /doc %d, /other %d origin requests", o.count("/doc"), o.count("/other"))
	}
}

func TestEdgeHubChainCacheStatus(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Verge-Cache-Control", "max-age=600")
		io.WriteString(w, "tree")
	})
	hub := newEdge(t, o.URL, func(c *Config) { c.Role = RoleHub; c.Node.Name = "hub1" })
	edge := newEdge(t, o.URL, func(c *Config) { c.Upstream = hub.srv.URL })
	resp, body := edge.get(t, "/t")
	if body != "tree" || cacheStatus(resp) != "hub1; fwd=uri-miss, edge1; fwd=uri-miss" {
		t.Errorf("first: %q %q", body, cacheStatus(resp))
	}
	if resp.Header.Get("Verge-Cache-Control") != "" {
		t.Error("Verge-Cache-Control reached the client")
	}
	if v := resp.Header.Values("Via"); strings.Join(v, ", ") != "1.1 hub1, 1.1 edge1" {
		t.Errorf("Via = %q", v)
	}
	edge2 := newEdge(t, o.URL, func(c *Config) { c.Upstream = hub.srv.URL; c.Node.Name = "edge2" })
	resp, _ = edge2.get(t, "/t")
	if cs := cacheStatus(resp); cs != "hub1; hit, edge2; fwd=uri-miss" {
		t.Errorf("second edge: %q", cs)
	}
	if o.count("/t") != 1 {
		t.Errorf("origin saw %d", o.count("/t"))
	}
	// The edge obeys Verge-Cache-Control (600s), not Cache-Control (60s).
	edge.clock.Add(120 * time.Second)
	resp, _ = edge.get(t, "/t")
	if cs := cacheStatus(resp); !strings.HasSuffix(cs, "edge1; hit") {
		t.Errorf("after 120s: %q", cs)
	}
}

func TestPurgeAPI(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"e"`)
		if strings.HasPrefix(r.URL.Path, "/img/") {
			w.Header().Set("Surrogate-Key", "images all")
		}
		io.WriteString(w, r.URL.Path)
	})
	te := newEdge(t, o.URL, nil)
	admin := httptest.NewServer(te.Admin())
	defer admin.Close()
	post := func(token, body string) (int, string) {
		req, _ := http.NewRequest("POST", admin.URL+"/purge", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	warm := func() {
		for _, p := range []string{"/img/a.png", "/img/b.png", "/css/x.css", "/index.html"} {
			te.get(t, p)
		}
	}
	warm()
	for _, c := range []struct {
		token, body string
		code        int
		want        string
	}{
		{"", `{"kind":"all"}`, 401, "token"},
		{"wrong", `{"kind":"all"}`, 401, "token"},
		{"secret", `{"kind":"nope"}`, 400, "unknown kind"},
		{"secret", `{"kind":"url","value":"not a url"}`, 400, "absolute"},
		{"secret", `{"kind":"all","extra":1}`, 400, "unknown field"},
		{"secret", `{"kind":"tag"}`, 400, "tag"},
		{"secret", `not json`, 400, "bad purge request"},
		{"secret", `{"kind":"tag","value":"images"}`, 200, `"matched":2`},
		{"secret", `{"kind":"prefix","value":"http://www.example.test/css/"}`, 200, `"matched":1`},
		{"secret", `{"kind":"url","value":"http://www.example.test/index.html"}`, 200, `"matched":1`},
		{"secret", `{"kind":"host","value":"www.example.test"}`, 200, `"matched":0`},
	} {
		code, body := post(c.token, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s with %q: %d %s", c.body, c.token, code, body)
		}
	}
	before := o.count("/img/a.png")
	warm()
	if o.count("/img/a.png") != before+1 || o.count("/css/x.css") != 2 || o.count("/index.html") != 2 {
		t.Errorf("purged objects were not refetched")
	}
	// Soft purge: the object is kept but revalidated.
	code, body := post("secret", `{"kind":"url","value":"http://www.example.test/index.html","soft":true}`)
	if code != 200 || !strings.Contains(body, `"matched":1`) {
		t.Fatalf("soft purge: %d %s", code, body)
	}
	o.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != `"e"` {
			t.Errorf("soft-purged object fetched without validator")
		}
		w.WriteHeader(304)
	}
	resp, b := te.get(t, "/index.html")
	if b != "/index.html" || !strings.Contains(cacheStatus(resp), "fwd-status=304") {
		t.Errorf("after soft purge: %q %q", b, cacheStatus(resp))
	}
	var res PurgeResult
	json.Unmarshal([]byte(`{"node":"x","matched":3,"took_ns":5}`), &res)
	if res.Matched != 3 {
		t.Error("PurgeResult JSON shape changed")
	}
}

func TestMetrics(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "m")
	})
	te := newEdge(t, o.URL, nil)
	te.get(t, "/m")
	te.get(t, "/m")
	te.get(t, "/m", "Host", "unknown.example")
	reg := prometheus.NewRegistry()
	if err := te.Register(reg); err != nil {
		t.Fatal(err)
	}
	expect := `
# HELP verge_edge_requests_total Requests answered, by property and cache result (hit, stale, miss, pass, error).
# TYPE verge_edge_requests_total counter
verge_edge_requests_total{cache="error",property="site"} 0
verge_edge_requests_total{cache="hit",property="site"} 1
verge_edge_requests_total{cache="miss",property="site"} 1
verge_edge_requests_total{cache="pass",property="site"} 0
verge_edge_requests_total{cache="stale",property="site"} 0
# HELP verge_edge_refused_requests_total Requests refused: unknown host, not a proxy target, too many header fields.
# TYPE verge_edge_refused_requests_total counter
verge_edge_refused_requests_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "verge_edge_requests_total", "verge_edge_refused_requests_total"); err != nil {
		t.Error(err)
	}
	snap := te.Stats().Snapshot()
	if len(snap.Properties) != 1 || snap.Properties[0].Bytes != 2 || snap.Properties[0].UpstreamRequests != 1 {
		t.Errorf("snapshot: %+v", snap)
	}
	var total uint64
	for _, n := range snap.Properties[0].LatencyBuckets {
		total += n
	}
	if total != 2 {
		t.Errorf("latency histogram holds %d requests, want 2", total)
	}
	_ = strconv.Itoa
}

func TestReload(t *testing.T) {
	a := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "A") })
	b := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "B") })
	te := newEdge(t, a.URL, nil)
	if _, body := te.get(t, "/x"); body != "A" {
		t.Fatalf("before: %q", body)
	}
	cfg := te.cfg
	cfg.Properties = append([]Property(nil), cfg.Properties...)
	cfg.Properties[0].Origin = b.URL
	extra := DefaultProperty()
	extra.Name, extra.Hosts, extra.Origin = "new", []string{"new.example.test"}, b.URL
	cfg.Properties = append(cfg.Properties, extra)
	if err := te.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, body := te.get(t, "/x"); body != "B" {
		t.Errorf("after reload the old origin answered: %q", body)
	}
	if resp, body := te.get(t, "/y", "Host", "new.example.test"); resp.StatusCode != 200 || body != "B" {
		t.Errorf("new property: %d %q", resp.StatusCode, body)
	}
	bad := cfg
	bad.Node.Name = "renamed"
	if err := te.Reload(bad); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("renaming the node: %v", err)
	}
	bad = cfg
	bad.Properties = nil
	if err := te.Reload(bad); err == nil {
		t.Error("a config without properties was accepted")
	}
	if _, body := te.get(t, "/x"); body != "B" {
		t.Errorf("a failed reload changed the routing: %q", body)
	}
}
