package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// cachedOrigin serves a small cacheable object at every path.
func cachedOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	body := strings.Repeat("v", 1024)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, body)
	}))
	t.Cleanup(o.Close)
	return o
}

// h2Client is a normal HTTP/2 client (Go's transport) pinned to addr.
func h2Client(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// bystander sends GETs one after another every interval until stop closes,
// recording each latency; failures are counted.
type bystander struct {
	mu        sync.Mutex // guards lat
	lat       []time.Duration
	failed    atomic.Int64
	lastError atomic.Value
}

func (b *bystander) run(c *http.Client, url string, interval time.Duration, stop <-chan struct{}, maxN int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < maxN; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		start := time.Now()
		res, err := c.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err == nil && res.StatusCode != 200 {
				err = fmt.Errorf("status %d", res.StatusCode)
			}
		}
		if err != nil {
			b.failed.Add(1)
			b.lastError.Store(err.Error())
			continue
		}
		b.mu.Lock()
		b.lat = append(b.lat, time.Since(start))
		b.mu.Unlock()
	}
}

func (b *bystander) quantile(q float64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lat) == 0 {
		return 0
	}
	s := slices.Clone(b.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (b *bystander) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lat)
}

// scrapeMetric reads one sample from a Prometheus text page.
func scrapeMetric(t *testing.T, adminAddr, series string) float64 {
	t.Helper()
	res, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /metrics", series)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestHTTP2Floods measures the edge (a real "verge edge" process, HTTPS
// with HTTP/2) under rapid reset and CONTINUATION floods, and prints the
// figures. It asserts what is not a matter of timing: every flood
// connection is closed within its budget, memory stays bounded, a normal
// client is never refused.
func TestHTTP2Floods(t *testing.T) {
	needHardening(t)
	dir := t.TempDir()
	bin := buildVerge(t, dir, "floods")
	origin := cachedOrigin(t)
	fx := newTLSFixture(t, dir)
	cfg := writeConfig(t, filepath.Join(dir, "edge.yaml"), fx.edgeYAML(origin.URL, ""))
	p := startVerge(t, bin, nil, "edge", "-config", cfg)
	httpsAddr, adminAddr := p.addr(t, "https"), p.addr(t, "admin")
	roots := fx.ca.Pool()
	_, port, _ := net.SplitHostPort(httpsAddr)
	url := "https://a.test:" + port + "/obj"

	t.Run("rapid reset", func(t *testing.T) {
		client := h2Client(httpsAddr, roots)
		defer client.CloseIdleConnections()
		warm := &bystander{}
		warm.run(client, url, time.Millisecond, nil, 50) // the object is cached from here on
		total := 0
		// One attacker paced at 5,000 resets a second (the machine has CPU
		// to spare), then one and four as fast as they can: on this 2-core
		// machine they share the CPU with the edge and the bystander.
		for _, ph := range []struct{ attackers, conns, rate int }{{1, 150, 5000}, {1, 1000, 0}, {4, 400, 0}} {
			f := rapidResetPhase(t, p.cmd.Process.Pid, client, url, httpsAddr, roots, ph.attackers, ph.conns, ph.rate)
			total += ph.conns
			t.Logf("FIGURE h2 rapid reset, %d attacker(s) at %s: %d connections, each closed after at most %d resets (guard: 200); %d left open after 1000",
				ph.attackers, rateText(ph.rate), f.closed, f.maxResets, f.open)
			t.Logf("FIGURE h2 rapid reset, %d attacker(s) at %s: %d resets in %v; edge RSS %d MiB before, peak %d MiB (+%.1f MiB; budget 50 MiB)",
				ph.attackers, rateText(ph.rate), f.resets, f.attack.Round(time.Millisecond), f.rss0>>10, f.peak>>10, float64(f.peak-f.rss0)/1024)
			t.Logf("FIGURE h2 rapid reset, %d attacker(s) at %s: CPU during the attack: edge %v, attackers and bystander %v, of %v x %d cores",
				ph.attackers, rateText(ph.rate), f.edgeCPU, f.testCPU, f.attack.Round(time.Millisecond), runtime.NumCPU())
			t.Logf("FIGURE h2 rapid reset, %d attacker(s) at %s: bystander p50 %v -> %v, p99 %v -> %v (%.2fx baseline; goal < 2x), %d requests, %d failed",
				ph.attackers, rateText(ph.rate), f.base50.Round(time.Microsecond), f.p50.Round(time.Microsecond),
				f.base99.Round(time.Microsecond), f.p99.Round(time.Microsecond), float64(f.p99)/float64(f.base99), f.requests, f.failed)
			t.Logf("FIGURE h2 rapid reset, %d attacker(s) at %s: after: goroutines %v, heap in use %.1f MiB, heap sys %.1f MiB", ph.attackers, rateText(ph.rate),
				scrapeMetric(t, adminAddr, "go_goroutines"), scrapeMetric(t, adminAddr, "go_memstats_heap_inuse_bytes")/(1<<20), scrapeMetric(t, adminAddr, "go_memstats_heap_sys_bytes")/(1<<20))
			if f.open > 0 || f.closed != ph.conns || f.maxResets > 1000 {
				t.Errorf("%d connections still open after 1000 resets", f.open)
			}
			if f.peak-f.rss0 > 50<<10 {
				t.Errorf("edge memory grew %d KiB during the attack (budget 50 MiB)", f.peak-f.rss0)
			}
			if f.failed > 0 {
				t.Errorf("bystander: %d requests failed: %v", f.failed, f.lastErr)
			}
		}
		if got := scrapeMetric(t, adminAddr, `verge_edge_h2_guard_closed_connections_total{reason="rapid_reset"}`); got != float64(total) {
			t.Errorf("guard metric rapid_reset = %v, want %d", got, total)
		}
	})

	t.Run("CONTINUATION flood", func(t *testing.T) {
		before := scrapeMetric(t, adminAddr, `verge_edge_h2_guard_closed_connections_total{reason="header_block"}`)
		for _, v := range continuationFloods {
			c := dialH2(t, httpsAddr, "a.test", roots)
			wrote, closed := continuationFlood(c, v.fragment, 64<<10, 20*time.Second)
			t.Logf("FIGURE h2 CONTINUATION flood (%s): %s after the client wrote %d bytes of one header block (guard limit 65536)",
				v.name, c.how(), wrote)
			if !closed {
				t.Errorf("%s: connection still open after a %d-byte header block", v.name, wrote)
			}
		}
		after := scrapeMetric(t, adminAddr, `verge_edge_h2_guard_closed_connections_total{reason="header_block"}`)
		t.Logf("FIGURE h2 CONTINUATION flood: guard closed %v of %d connections for their header block size; the others were refused by HPACK decoding first", after-before, len(continuationFloods))
		if after-before < 1 {
			t.Error("the guard closed no connection for its header block: the empty CONTINUATION frames got past it")
		}
		// A client that sends its own header block at a crawl is cut off at
		// limits.read_header_timeout (10s here): the guard arms a read
		// deadline from HEADERS to END_HEADERS.
	})

	t.Run("normal requests still work", func(t *testing.T) {
		c := h2Client(httpsAddr, roots)
		defer c.CloseIdleConnections()
		res, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.ProtoMajor != 2 {
			t.Errorf("%s %d", res.Proto, res.StatusCode)
		}
	})
}

// resetFigures is what one rapid-reset phase measured.
type resetFigures struct {
	closed, open, maxResets, resets int
	attack, edgeCPU, testCPU        time.Duration
	rss0, peak                      int64 // KiB
	base50, base99, p50, p99        time.Duration
	requests, failed                int
	lastErr                         any
}

// rapidResetPhase measures a bystander's latency (a GET every 5 ms on its
// own HTTP/2 connection) alone, then while attackers open conns
// connections in all, each sending bursts of 50 HEADERS+RST_STREAM pairs
// until the edge closes it or 1,000 resets went through, at rate resets a
// second in all (0: as fast as they can); the edge's resident memory is
// sampled every 10 ms.
func rapidResetPhase(t *testing.T, pid int, client *http.Client, url, addr string, roots *x509.CertPool, attackers, conns, rate int) resetFigures {
	t.Helper()
	var f resetFigures
	base := &bystander{}
	base.run(client, url, 5*time.Millisecond, nil, 1000)
	f.base50, f.base99 = base.quantile(0.5), base.quantile(0.99)
	if base.failed.Load() > 0 {
		t.Fatalf("bystander failed before the attack: %v", base.lastError.Load())
	}
	var err error
	if f.rss0, _, err = rssKiB(pid); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	during := &bystander{}
	var bwg sync.WaitGroup
	bwg.Add(2)
	go func() { defer bwg.Done(); during.run(client, url, 5*time.Millisecond, stop, 1<<20) }()
	var peak atomic.Int64
	go func() {
		defer bwg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, _, err := rssKiB(pid); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	const budget, burst = 1000, 50
	var next, paced atomic.Int64
	var mu sync.Mutex // guards f's counts
	var wg sync.WaitGroup
	start := time.Now()
	edgeCPU0, testCPU0 := cpuTime(pid), cpuTime(os.Getpid())
	for range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(conns) {
				c, err := dialH2Err(addr, "a.test", roots)
				if err != nil {
					t.Errorf("attacker dial: %v", err)
					return
				}
				sent := 0
				for sent < budget {
					if rate > 0 {
						// Pace: burst number n of all attackers starts at n*burst/rate.
						n := paced.Add(1) - 1
						time.Sleep(time.Until(start.Add(time.Duration(n) * time.Second * burst / time.Duration(rate))))
					}
					ok, err := c.resetBurst("a.test", "/obj", burst)
					if err != nil {
						t.Errorf("attacker: %v", err)
						break
					}
					sent += burst
					if !ok {
						break
					}
				}
				ended := c.waitClosed(5 * time.Second)
				c.conn.Close()
				mu.Lock()
				f.resets += sent
				if ended {
					f.closed++
					f.maxResets = max(f.maxResets, sent)
				} else {
					f.open++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	f.attack = time.Since(start)
	f.edgeCPU, f.testCPU = cpuTime(pid)-edgeCPU0, cpuTime(os.Getpid())-testCPU0
	close(stop)
	bwg.Wait()
	f.peak = peak.Load()
	f.p50, f.p99 = during.quantile(0.5), during.quantile(0.99)
	f.requests, f.failed, f.lastErr = during.count(), int(during.failed.Load()), during.lastError.Load()
	return f
}

func rateText(rate int) string {
	if rate == 0 {
		return "full speed"
	}
	return fmt.Sprintf("%d resets/s", rate)
}

// continuationFloods are the payloads of endless header blocks: empty
// frames (which Go's server alone reads forever), dynamic table size
// updates and indexed fields (refused by HPACK), and new literal fields
// (refused past the header list limit).
var continuationFloods = []struct {
	name     string
	fragment func(i int) []byte
}{
	{"empty frames", func(int) []byte { return nil }},
	{"table size updates", func(int) []byte { return repeatByte(0x20, 1024) }},
	{"indexed :method", func(int) []byte { return repeatByte(0x82, 1024) }},
	{"literal fields", func(i int) []byte {
		var b strings.Builder
		enc := hpack.NewEncoder(&b)
		for j := range 16 {
			enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-flood-%d-%d", i, j), Value: strings.Repeat("f", 40), Sensitive: true})
		}
		return []byte(b.String())
	}},
}

func repeatByte(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

// continuationFlood opens stream 1 with a HEADERS frame without
// END_HEADERS and sends CONTINUATION frames until the header block is one
// frame past limit bytes or the server closed the connection, then waits up
// to wait for the close. It returns the header block bytes written.
func continuationFlood(c *h2raw, fragment func(int) []byte, limit int, wait time.Duration) (int, bool) {
	// A PING round trip first: the reader has then acknowledged the
	// server's SETTINGS, and no frame of ours lands inside the block.
	if !c.ping() {
		return 0, true
	}
	blk := c.block("a.test", "/obj")
	wrote := 9 + len(blk)
	if err := c.writeRaw(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndStream: true})
	}); err != nil {
		return wrote, c.waitClosed(wait)
	}
	for i := 0; wrote <= limit && !c.isClosed(); i++ {
		p := fragment(i)
		if err := c.writeRaw(func(fr *http2.Framer) error { return fr.WriteContinuation(1, false, p) }); err != nil {
			break
		}
		wrote += 9 + len(p)
	}
	return wrote, c.waitClosed(wait)
}

// TestStockHTTP2FloodFigures measures Go's own HTTP/2 server (no guard)
// under the same floods, for comparison: the figures say why the guard is
// there. Nothing is asserted about the stock server.
func TestStockHTTP2FloodFigures(t *testing.T) {
	needHardening(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.EnableHTTP2 = true
	srv.Config.MaxHeaderBytes = 32 << 10
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	addr := srv.Listener.Addr().String()

	c := dialH2(t, addr, "example.com", roots)
	sent := 0
	for sent < 10000 {
		ok, err := c.resetBurst("example.com", "/", 50)
		if err != nil {
			t.Fatal(err)
		}
		sent += 50
		if !ok {
			break
		}
	}
	t.Logf("FIGURE stock Go h2 rapid reset: %d resets sent, connection %s", sent, c.how())

	c = dialH2(t, addr, "example.com", roots)
	wrote, _ := continuationFlood(c, func(int) []byte { return nil }, 1<<20, time.Second)
	t.Logf("FIGURE stock Go h2 CONTINUATION flood (empty frames): %d bytes (%d frames) of one header block written, connection %s",
		wrote, wrote/9, c.how())
}
