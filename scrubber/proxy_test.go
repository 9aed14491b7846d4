package scrubber

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// serveBoth runs the test once behind Front and once behind net/http with
// Wrap, both on 127.0.0.1.
func serveBoth(t *testing.T, edit func(*Config), run func(t *testing.T, env *testEnv, serve func(http.Handler) string)) {
	t.Run("fast", func(t *testing.T) {
		env := newTest(t, edit)
		run(t, env, func(h http.Handler) string { _, addr := startFront(t, env, h); return addr })
	})
	t.Run("stdlib", func(t *testing.T) {
		env := newTest(t, edit)
		run(t, env, func(h http.Handler) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := env.s.HTTPServer(env.s.Wrap(h), nil)
			go srv.Serve(env.s.Listener(ln))
			t.Cleanup(func() { srv.Close() })
			return ln.Addr().String()
		})
	})
}

func upstreamURL(t testing.TB, srv *httptest.Server) *url.URL {
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestProxyHeadersAndStreaming(t *testing.T) {
	serveBoth(t, nil, func(t *testing.T, env *testEnv, serve func(http.Handler) string) {
		seen := make(chan *http.Request, 4)
		release := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			seen <- r
			switch r.URL.Path {
			case "/stream":
				io.WriteString(w, "first ")
				w.(http.Flusher).Flush()
				<-release
				io.WriteString(w, "second")
			default:
				w.Header().Set("Connection", "X-Hop")
				w.Header().Set("X-Hop", "should not pass")
				w.Header().Set("Keep-Alive", "timeout=5")
				io.WriteString(w, "upstream got "+string(body))
			}
		}))
		defer up.Close()
		addr := serve(env.s.Proxy(upstreamURL(t, up), &http.Transport{}))
		c := dialRaw(t, addr)
		c.send("POST /p?q=1 HTTP/1.1\r\nHost: site.example\r\nX-Forwarded-For: 203.0.113.9\r\n" +
			"Connection: X-Private\r\nX-Private: secret\r\nProxy-Connection: keep-alive\r\nContent-Length: 4\r\n\r\nbody")
		resp, body := c.response("POST")
		if resp.StatusCode != 200 || body != "upstream got body" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
			t.Fatalf("hop-by-hop response headers passed: %v", resp.Header)
		}
		r := <-seen
		if r.Host != "site.example" || r.URL.RawQuery != "q=1" {
			t.Fatalf("upstream saw Host %q query %q", r.Host, r.URL.RawQuery)
		}
		if got := r.Header.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
			t.Fatalf("X-Forwarded-For %q", got)
		}
		if r.Header.Get("X-Forwarded-Host") != "site.example" || r.Header.Get("X-Forwarded-Proto") != "http" {
			t.Fatalf("X-Forwarded-Host/Proto %v", r.Header)
		}
		if r.Header.Get("X-Private") != "" || r.Header.Get("Proxy-Connection") != "" {
			t.Fatalf("hop-by-hop request headers passed: %v", r.Header)
		}
		// Streaming: the first part arrives before the upstream finishes.
		c.send("GET /stream HTTP/1.1\r\nHost: site.example\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first " {
			t.Fatalf("first part: %q %v", buf, err)
		}
		close(release)
		if rest, _ := io.ReadAll(resp.Body); string(rest) != "second" {
			t.Fatalf("rest %q", rest)
		}
		<-seen
	})
}

func TestProxyUpstreamFailures(t *testing.T) {
	serveBoth(t, nil, func(t *testing.T, env *testEnv, serve func(http.Handler) string) {
		// A port nobody listens on: 502.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := &url.URL{Scheme: "http", Host: ln.Addr().String()}
		ln.Close()
		addr := serve(env.s.Proxy(dead, &http.Transport{}))
		c := dialRaw(t, addr)
		c.send(get)
		resp, body := c.response("GET")
		if resp.StatusCode != 502 || !strings.HasPrefix(body, "502 bad gateway") {
			t.Fatalf("dead upstream: %d %q", resp.StatusCode, body)
		}
		// A transport that times out: 504.
		addr = serve(env.s.Proxy(dead, timeoutRT{}))
		c = dialRaw(t, addr)
		c.send(get)
		resp, body = c.response("GET")
		if resp.StatusCode != 504 || !strings.HasPrefix(body, "504 gateway timeout") {
			t.Fatalf("timeout: %d %q", resp.StatusCode, body)
		}
		m := env.s.m.upstreamErrors
		if testutil.ToFloat64(m.WithLabelValues("502")) != 1 || testutil.ToFloat64(m.WithLabelValues("504")) != 1 {
			t.Fatal("upstream errors not counted")
		}
	})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "net/http: timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

type timeoutRT struct{}

func (timeoutRT) RoundTrip(*http.Request) (*http.Response, error) { return nil, timeoutErr{} }

func TestProxyUpgrade(t *testing.T) {
	serveBoth(t, nil, func(t *testing.T, env *testEnv, serve func(http.Handler) string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "want Upgrade: echo", 400)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo: " + line)
			brw.Flush()
		}))
		defer up.Close()
		addr := serve(env.s.Proxy(upstreamURL(t, up), &http.Transport{}))
		c := dialRaw(t, addr)
		c.send("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		c.send("ping\n")
		line, err := c.br.ReadString('\n')
		if err != nil || line != "echo: ping\n" {
			t.Fatalf("tunnel: %q %v", line, err)
		}
	})
}

// TestProxyRefusalsDoNotReachUpstream: what the stages refuse never costs
// the upstream a request.
func TestProxyRefusalsDoNotReachUpstream(t *testing.T) {
	serveBoth(t, func(c *Config) { c.Limits.PerIP = Bucket{Rate: 1, Burst: 2} }, func(t *testing.T, env *testEnv, serve func(http.Handler) string) {
		hits := make(chan struct{}, 100)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits <- struct{}{} }))
		defer up.Close()
		addr := serve(env.s.Proxy(upstreamURL(t, up), &http.Transport{}))
		c := dialRaw(t, addr)
		codes := map[int]int{}
		for i := 0; i < 10; i++ {
			c.send(get)
			resp, _ := c.response("GET")
			codes[resp.StatusCode]++
		}
		if codes[200] != 2 || codes[429] != 8 || len(hits) != 2 {
			t.Fatalf("codes %v, upstream hits %d", codes, len(hits))
		}
	})
}

func TestFrontWithRealClient(t *testing.T) {
	// net/http's own client against Front: keep-alive reuse, bodies.
	env := newTest(t, nil)
	_, addr := startFront(t, env, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := 0; i < 20; i++ {
		body := strings.Repeat("z", i*997)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/", strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil || string(got) != body {
			t.Fatalf("round %d: %d bytes back, err %v", i, len(got), err)
		}
	}
}
