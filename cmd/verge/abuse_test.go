package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Abuse surfaces: a node must never be an open proxy (no request makes it
// connect anywhere but its configured upstream), its public listener must
// never act on admin requests, and its admin API and management's operator
// API must do nothing without a valid token.

const (
	abuseHost  = "www.site.test"
	abuseToken = "cluster-token-for-abuse-tests-0123"
)

// canary is a listener on its own loopback address that counts the
// connections made to it: any one is an SSRF.
type canary struct {
	ln    net.Listener
	conns atomic.Int64
}

func startCanary(t *testing.T) *canary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.77:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &canary{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

// abuseOrigin answers "origin: METHOD TARGET" (cacheable) so an answer from
// the origin is told apart from one by the node itself; /redirect sends the
// client to the canary. It counts requests by path.
type abuseOrigin struct {
	mu   sync.Mutex // guards seen
	seen map[string]int
}

func (o *abuseOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[path]
}

func (o *abuseOrigin) handler(canaryAddr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen[r.URL.Path]++
		o.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://"+canaryAddr+"/from-redirect", http.StatusFound)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "origin: %s %s\n", r.Method, r.RequestURI)
	})
}

// ssrfVectors are requests that try to make a node connect to the canary
// at c (host:port, 127.0.0.77), whatever property they reach. {H} is the
// site's host.
func ssrfVectors(c string) []struct{ name, raw string } {
	host, port, _ := net.SplitHostPort(c)
	ip := net.ParseIP(host).To4()
	dec := strconv.FormatUint(uint64(ip[0])<<24|uint64(ip[1])<<16|uint64(ip[2])<<8|uint64(ip[3]), 10)
	hex := fmt.Sprintf("0x%02x%02x%02x%02x", ip[0], ip[1], ip[2], ip[3])
	oct := fmt.Sprintf("0%o.0%o.0%o.0%o", ip[0], ip[1], ip[2], ip[3])
	get := func(target, hostField string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: " + hostField + "\r\nConnection: close\r\n\r\n"
	}
	return []struct{ name, raw string }{
		{"absolute URI to the canary", get("http://"+c+"/", c)},
		{"absolute URI to the canary, site Host", get("http://"+c+"/", "{H}")},
		{"absolute https URI to the canary", get("https://"+c+"/", "{H}")},
		{"Host: the canary", get("/", c)},
		{"Host: decimal IP", get("/", dec+":"+port)},
		{"Host: hex IP", get("/", hex+":"+port)},
		{"Host: octal IP", get("/", oct+":"+port)},
		{"Host: dotted hex", get("/", fmt.Sprintf("0x%x.0x%x.0x%x.0x%x", ip[0], ip[1], ip[2], ip[3])+":"+port)},
		{"Host: short form 127.77", get("/", fmt.Sprintf("%d.%d", ip[0], ip[3])+":"+port)},
		{"Host: IPv4-mapped IPv6", get("/", "[::ffff:"+host+"]:"+port)},
		{"Host: IPv4-mapped IPv6 in hex", get("/", fmt.Sprintf("[::ffff:%x%02x:%x%02x]", ip[0], ip[1], ip[2], ip[3])+":"+port)},
		{"absolute URI with userinfo", get("http://{H}@"+c+"/", "{H}")},
		{"Host with userinfo", get("/", "{H}@"+c)},
		{"absolute URI, site as userinfo and port", get("http://{H}:80@"+c+"/", "{H}")},
		{"Host: site, then the canary's port", get("/", "{H}:"+port+"@"+host)},
		{"Host: two ports", get("/", c+":80")},
		{"absolute URI, encoded colon", get("http://"+host+"%3A"+port+"/", "{H}")},
		{"absolute URI with decimal IP", get("http://"+dec+":"+port+"/", "{H}")},
		{"scheme-relative target", get("//"+c+"/", "{H}")},
		{"URL in the path", get("/http://"+c+"/", "{H}")},
		{"target without a slash", get("@"+c+"/", "{H}")},
		{"CONNECT to the canary", "CONNECT " + c + " HTTP/1.1\r\nHost: " + c + "\r\nConnection: close\r\n\r\n"},
		{"CONNECT with the site Host", "CONNECT " + c + " HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n"},
		{"X-Forwarded-Host: the canary", get("/", "{H}\r\nX-Forwarded-Host: "+c+"\r\nX-Host: "+c+"\r\nForwarded: host="+c)},
		{"origin redirects to the canary", get("/redirect", "{H}")},
		{"Max-Forwards and TRACE", "TRACE http://" + c + "/ HTTP/1.1\r\nHost: " + c + "\r\nMax-Forwards: 1\r\nConnection: close\r\n\r\n"},
	}
}

// abuseNode is an edge, hub, or scrubber under test.
type abuseNode struct {
	name, pub, admin string
}

func writeToken(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "cluster.token")
	if err := os.WriteFile(path, []byte(abuseToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// abuseYAML is a cache node with a cluster token and a purge log (so every
// admin endpoint exists) for hosts, fetching from origin (or upstream).
func abuseYAML(t *testing.T, name, hosts, origin, upstream string, ca *corpusCA) string {
	up, https := "", ""
	if upstream != "" {
		up = "upstream: " + upstream + "\n"
	}
	tls := ""
	if ca != nil {
		https = `, https: "127.0.0.1:0", http3: false`
		tls = "    tls: " + ca.tlsYAML() + "\n"
	}
	return fmt.Sprintf(`node: {name: %s}
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:0"%s}
%scluster_token_file: %s
purge_log: {dir: %s}
properties:
  - name: site
    hosts: [%s]
    origin: %s
%s`, name, https, up, writeToken(t), filepath.Join(t.TempDir(), "purgelog"), hosts, origin, tls)
}

// abuseReady polls a node's /healthz until it answers 200 (a purge log
// without peers is ready at once; the poll is only a hang guard).
func abuseReady(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(corpusGuard)
	for {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready", admin)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// abuseSetup is the topology: an edge (with TLS) -> hub -> origin, an edge
// serving any host ("*", one-line mode's property), a scrubber in front of
// the origin, and the canary.
type abuseSetup struct {
	canary             *canary
	origin             *abuseOrigin
	ca                 *corpusCA
	edge, any, hub     abuseNode
	scrubber           abuseNode
	edgeTLS, originURL string
}

func startAbuse(t *testing.T) *abuseSetup {
	t.Helper()
	s := &abuseSetup{canary: startCanary(t), origin: &abuseOrigin{seen: map[string]int{}}, ca: newCorpusCA(t, abuseHost)}
	srv := &http.Server{Handler: s.origin.handler(s.canary.ln.Addr().String())}
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(oln)
	t.Cleanup(func() { srv.Close() })
	s.originURL = "http://" + oln.Addr().String()

	hub := startCorpusCmd(t, runHub, abuseYAML(t, "hub-1", abuseHost, s.originURL, "", nil))
	s.hub = abuseNode{"hub", hub.addr(t, "public"), hub.addr(t, "admin")}
	edge := startCorpusCmd(t, runEdge, abuseYAML(t, "edge-1", abuseHost, s.originURL, "http://"+s.hub.pub, s.ca))
	s.edge = abuseNode{"edge", edge.addr(t, "public"), edge.addr(t, "admin")}
	s.edgeTLS = edge.addr(t, "https")
	anyEdge := startCorpusCmd(t, runEdge, abuseYAML(t, "edge-any", `"*"`, s.originURL, "", nil))
	s.any = abuseNode{"edge serving any host", anyEdge.addr(t, "public"), anyEdge.addr(t, "admin")}
	scr := startCorpusCmd(t, runScrubber, fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
server: fast
upstream:
  backends: [{url: %s}]
  health: {enabled: false}
limits:
  per_ip: {rate: 100000, burst: 100000}
  per_prefix: {rate: 100000, burst: 100000}
attack: {enabled: false}
lists: {allow: []}
`, s.originURL))
	s.scrubber = abuseNode{"scrubber", scr.addr(t, "public"), scr.addr(t, "admin")}
	for _, n := range []abuseNode{s.hub, s.edge, s.any} {
		abuseReady(t, n.admin)
	}
	return s
}

func TestOpenProxyAndSSRF(t *testing.T) {
	s := startAbuse(t)
	c := s.canary.ln.Addr().String()
	vectors := ssrfVectors(c)
	sent := 0
	for _, n := range []abuseNode{s.edge, s.any, s.hub, s.scrubber} {
		for _, v := range vectors {
			// Not half-closed: Go's server would cancel the request, and
			// with it any upstream connection it was about to make.
			out := corpusSend(t, n.pub, strings.ReplaceAll(v.raw, "{H}", abuseHost), false)
			sent++
			if testing.Verbose() {
				t.Logf("%s, %s: %v", n.name, v.name, corpusStatuses(out))
			}
		}
	}
	// The same over HTTP/2 at the edge's TLS listener.
	h2 := []struct {
		name   string
		fields [][2]string
	}{
		{":authority the canary", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", c}, {":path", "/"}}},
		{":path an absolute URI", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", abuseHost}, {":path", "http://" + c + "/"}}},
		{"CONNECT", [][2]string{{":method", "CONNECT"}, {":authority", c}}},
		{"host field the canary", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {"host", c}}},
	}
	for _, v := range h2 {
		cl := dialCorpusH2(t, s.edgeTLS, abuseHost, s.ca.pool)
		cl.open(true, v.fields...)
		cl.run()
		sent++
		if testing.Verbose() {
			t.Logf("edge over HTTP/2, %s: %s", v.name, cl.outcome())
		}
	}
	// Every exchange above has ended, and with it every upstream request
	// it caused.
	n := s.canary.conns.Load()
	t.Logf("open proxy and SSRF: %d requests (%d encodings, at 3 cache nodes and the scrubber, and %d over HTTP/2), %d connections to the canary",
		sent, len(vectors), len(h2), n)
	if len(vectors) < 12 {
		t.Errorf("%d SSRF encodings, want at least 12", len(vectors))
	}
	if n != 0 {
		t.Errorf("%d connections reached the canary", n)
	}
	// The canary does count: a connection of our own shows.
	if conn, err := net.Dial("tcp", c); err == nil {
		conn.Close()
	}
	for deadline := time.Now().Add(corpusGuard); s.canary.conns.Load() == n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the canary does not count connections")
		}
	}
}

// abuseAnswer is a response's status and body.
type abuseAnswer struct {
	code int
	body string
	hdr  http.Header
}

func abuseDo(t *testing.T, method, url, host, auth, body string) abuseAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return abuseAnswer{resp.StatusCode, string(b), resp.Header}
}

// probeStatus fetches /probe from n and returns its Cache-Status, the
// node's own entry last.
func probeStatus(t *testing.T, n abuseNode) string {
	return strings.Join(abuseDo(t, "GET", "http://"+n.pub+"/probe", abuseHost, "", "").hdr.Values("Cache-Status"), ", ")
}

// adminRequests are what an attacker sends for a node's admin functions.
var adminRequests = []struct{ method, path, body string }{
	{"PURGE", "/probe", ""},
	{"BAN", "/probe", ""},
	{"FASTLYPURGE", "/probe", ""},
	{"REFRESH", "/probe", ""},
	{"POST", "/purge", `{"kind":"all"}`},
	{"POST", "/purge", `{"kind":"url","value":"http://` + abuseHost + `/probe"}`},
	{"POST", "/preload", `{"urls":["http://` + abuseHost + `/preloaded"]}`},
	{"GET", "/purgelog/summary", ""},
	{"GET", "/purgelog/records?ranges=1-10", ""},
	{"GET", "/metrics", ""},
	{"GET", "/healthz", ""},
	{"GET", "/debug/pprof/", ""},
	{"GET", "/debug/pprof/cmdline", ""},
	{"GET", "/debug/vars", ""},
	{"GET", "/probe", ""}, // with X-HTTP-Method-Override: PURGE below
}

// nodeAnswered reports whether an answer came from the node's own admin
// functions rather than the origin or a refusal.
func nodeAnswered(a abuseAnswer) bool {
	switch {
	case strings.HasPrefix(a.body, "origin: "):
		return false // forwarded as an ordinary request
	case a.code >= 400 && strings.HasPrefix(a.body, "verge: "):
		return false // refused by the engine
	case a.code >= 400 && strings.Contains(a.body, "not allowed"):
		return false
	}
	return true
}

func TestAdminPathsOnThePublicListener(t *testing.T) {
	s := startAbuse(t)
	probe := func(n abuseNode) string { return probeStatus(t, n) }
	nodes := []abuseNode{s.edge, s.hub, s.any}
	for _, n := range nodes {
		probe(n) // cached now
	}
	tried, acted := 0, 0
	for _, n := range append(nodes, s.scrubber) {
		for _, r := range adminRequests {
			for _, auth := range []string{"", "Bearer " + abuseToken} {
				req, _ := http.NewRequest(r.method, "http://"+n.pub+r.path, strings.NewReader(r.body))
				req.Host = abuseHost
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				if r.method == "GET" && r.path == "/probe" {
					req.Header.Set("X-HTTP-Method-Override", "PURGE")
				}
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				tried++
				if a := (abuseAnswer{resp.StatusCode, string(b), resp.Header}); nodeAnswered(a) {
					acted++
					t.Errorf("%s public listener, %s %s (auth %v): the node answered %d %q", n.name, r.method, r.path, auth != "", a.code, a.body)
				}
			}
		}
		if n == s.scrubber {
			continue // no cache
		}
		if cs := probe(n); !strings.HasSuffix(cs, "; hit") {
			acted++
			t.Errorf("%s: the cached probe is gone after the admin requests: Cache-Status %q", n.name, cs)
		}
	}
	if n := s.origin.count("/preloaded"); n != 0 {
		acted++
		t.Errorf("a preload sent to a public listener made the origin serve /preloaded %d times", n)
	}
	// The classification does tell the node's own answers: its admin
	// listener's /metrics is one.
	if a := abuseDo(t, "GET", "http://"+s.edge.admin+"/metrics", "", "", ""); !nodeAnswered(a) {
		t.Errorf("the node's own /metrics was not recognised: %d %.80q", a.code, a.body)
	}
	t.Logf("admin paths on the public listener: %d requests (PURGE-like methods, /purge, /preload, /purgelog/*, /metrics, /healthz, /debug/pprof; with and without the token) at 3 cache nodes and the scrubber, %d successes",
		tried, acted)
}

func TestAdminAPIsNeedAValidToken(t *testing.T) {
	s := startAbuse(t)
	for _, n := range []abuseNode{s.edge, s.hub} {
		abuseDo(t, "GET", "http://"+n.pub+"/probe", abuseHost, "", "")
	}
	bad := []struct{ name, auth string }{
		{"no token", ""},
		{"empty bearer", "Bearer "},
		{"wrong token", "Bearer not-the-token"},
		{"token prefix", "Bearer " + abuseToken[:len(abuseToken)-1]},
		{"token with a suffix", "Bearer " + abuseToken + "x"},
		{"token without the scheme", abuseToken},
		{"basic auth", "Basic " + abuseToken},
		{"token twice", "Bearer " + abuseToken + " " + abuseToken},
		{"token with a NUL", "Bearer " + abuseToken + "\x00"},
	}
	endpoints := []struct{ method, path, body string }{
		{"POST", "/purge", `{"kind":"all"}`},
		{"POST", "/preload", `{"urls":["http://` + abuseHost + `/preloaded"]}`},
		{"GET", "/purgelog/summary", ""},
		{"GET", "/purgelog/tree?level=0&nodes=0", ""},
		{"GET", "/purgelog/records?ranges=1-10", ""},
	}
	tried, ok := 0, 0
	for _, n := range []abuseNode{s.edge, s.hub} {
		for _, e := range endpoints {
			for _, b := range bad {
				req, err := http.NewRequest(e.method, "http://"+n.admin+e.path+map[bool]string{true: "", false: "?token=" + abuseToken}[strings.Contains(e.path, "?")], strings.NewReader(e.body))
				if err != nil {
					t.Fatal(err)
				}
				if b.auth != "" {
					req.Header["Authorization"] = []string{b.auth}
				}
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					// Go's client refuses to send a NUL: nothing sent, nothing done.
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				tried++
				if resp.StatusCode < 400 {
					ok++
					t.Errorf("%s admin %s %s with %s: %d %q", n.name, e.method, e.path, b.name, resp.StatusCode, body)
				}
			}
		}
		if cs := probeStatus(t, n); !strings.HasSuffix(cs, "; hit") {
			ok++
			t.Errorf("%s: the probe was purged by requests without a valid token: %q", n.name, cs)
		}
	}
	if n := s.origin.count("/preloaded"); n != 0 {
		ok++
		t.Errorf("a preload without a valid token fetched /preloaded %d times", n)
	}
	// The valid token works, so the refusals above are the token's doing.
	if a := abuseDo(t, "POST", "http://"+s.edge.admin+"/purge", "", "Bearer "+abuseToken, `{"kind":"url","value":"http://`+abuseHost+`/probe"}`); a.code != 200 {
		t.Errorf("purge with the valid token: %d %q", a.code, a.body)
	}
	t.Logf("node admin API without a valid token: %d requests (%d endpoints x %d bad tokens at an edge and a hub), %d successes",
		tried, len(endpoints), len(bad), ok)

	// Management's operator API.
	api, _ := runningManage(t, t.TempDir(), "")
	opBad := append(bad[:len(bad):len(bad)], struct{ name, auth string }{"the cluster token", "Bearer " + testClusterToken},
		struct{ name, auth string }{"operator token prefix", "Bearer " + testOpToken[:len(testOpToken)-1]},
		struct{ name, auth string }{"operator token with a suffix", "Bearer " + testOpToken + "x"})
	opEndpoints := []struct{ method, path, body string }{
		{"GET", "/api/v1/nodes", ""}, {"GET", "/api/v1/nodes/edge-1", ""}, {"GET", "/api/v1/series", ""},
		{"GET", "/api/v1/properties", ""}, {"GET", "/api/v1/usage?property=site", ""}, {"GET", "/api/v1/alerts", ""},
		{"POST", "/api/v1/purge", `{"kind":"all"}`}, {"GET", "/api/v1/purge", ""}, {"GET", "/api/v1/purge/1", ""},
		{"POST", "/api/v1/preload", `{"urls":["http://` + abuseHost + `/preloaded"]}`}, {"GET", "/api/v1/preload", ""},
		{"GET", "/api/v1/preload/1", ""}, {"GET", "/purgelog/summary", ""},
	}
	mTried, mOK := 0, 0
	for _, e := range opEndpoints {
		for _, b := range opBad {
			if e.path == "/purgelog/summary" && b.auth == "Bearer "+testClusterToken {
				continue // nodes catch up from management's purge log with the cluster token
			}
			req, _ := http.NewRequest(e.method, "http://"+api+e.path, strings.NewReader(e.body))
			if b.auth != "" {
				req.Header["Authorization"] = []string{b.auth}
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				continue // not sendable
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mTried++
			if resp.StatusCode < 400 {
				mOK++
				t.Errorf("management %s %s with %s: %d %q", e.method, e.path, b.name, resp.StatusCode, bytes.TrimSpace(body))
			}
		}
	}
	if a := abuseDo(t, "GET", "http://"+api+"/api/v1/nodes", "", "Bearer "+testOpToken, ""); a.code != 200 {
		t.Errorf("operator API with the valid token: %d %q", a.code, a.body)
	}
	t.Logf("management operator API without a valid token: %d requests (%d endpoints x %d bad tokens), %d successes",
		mTried, len(opEndpoints), len(opBad), mOK)
}
