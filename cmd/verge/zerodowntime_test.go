package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// loadTarget is one stream of the load generator: a client, the URL it
// asks for, and its steady rate.
type loadTarget struct {
	name   string
	rt     http.RoundTripper
	host   string // request target's host; the Host header is always a.test
	rate   int    // requests per second
	gating bool   // its failures fail the test (HTTP/3's are measured only)

	ok, failed, refused, retried atomic.Int64
	mu                           sync.Mutex // guards errs
	errs                         map[string]int
}

func (lt *loadTarget) fail(err error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		lt.refused.Add(1)
	} else {
		lt.failed.Add(1)
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i > 0 && len(msg) > 160 {
		msg = msg[i+2:]
	}
	lt.mu.Lock()
	lt.errs[msg]++
	lt.mu.Unlock()
}

// one sends one GET: nine in ten are hits on /obj, one in ten a miss that
// goes to the origin. Every response must be 200 with the whole body.
func (lt *loadTarget) one(ctx context.Context, n int64) {
	path := "/obj"
	if n%10 == 0 {
		path = "/miss/" + lt.name + "/" + strconv.FormatInt(n, 10)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conns := 0
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }})
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+lt.host+path, nil)
	if strings.HasPrefix(lt.name, "h1") && !strings.Contains(lt.name, "tls") {
		req.URL.Scheme = "http"
	}
	req.Host = "a.test"
	res, err := lt.rt.RoundTrip(req)
	if err != nil {
		lt.fail(err)
		return
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	switch {
	case err != nil:
		lt.fail(fmt.Errorf("body: %w", err))
	case res.StatusCode != 200 || len(body) != 1024:
		lt.fail(fmt.Errorf("status %d, %d bytes", res.StatusCode, len(body)))
	default:
		lt.ok.Add(1)
	}
	if conns > 1 {
		lt.retried.Add(1)
	}
}

// run sends at lt.rate until ctx ends, each request on its own goroutine
// (at most 200 in flight).
func (lt *loadTarget) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(time.Second / time.Duration(lt.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 200)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for n := int64(1); ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			lt.fail(errors.New("200 requests in flight: the generator fell behind"))
			continue
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			lt.one(context.WithoutCancel(ctx), n)
		}()
	}
}

// readPIDFile is the PID a process wrote to path (0 if none yet).
func readPIDFile(path string) int {
	b, _ := os.ReadFile(path)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// pidAlive reports whether pid is a live process (a zombie is not).
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestZeroDowntimeReloadsAndUpgrades runs a built "verge edge" (HTTP, and
// HTTPS with HTTP/2 and HTTP/3) in front of an origin, and a load generator
// at a steady rate over HTTP/1.1 (keep-alive, and a new connection per
// request), HTTP/2 and HTTP/3 while it sends 20 SIGHUPs (config changes,
// new certificates) and 3 SIGUSR2 binary upgrades (alternating between two
// builds). It prints failed requests and refused connections (goal 0 and
// 0, asserted for TCP) and HTTP/3's (measured).
func TestZeroDowntimeReloadsAndUpgrades(t *testing.T) {
	needHardening(t)
	dir := t.TempDir()
	bins := []string{buildVerge(t, dir, "v1"), buildVerge(t, dir, "v2")}
	current := filepath.Join(dir, "verge-current") // what a package upgrade replaces
	setBinary := func(i int) {
		tmp := current + ".tmp"
		os.Remove(tmp)
		if err := os.Symlink(bins[i], tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, current); err != nil {
			t.Fatal(err)
		}
	}
	setBinary(0)

	origin := cachedOrigin(t)
	fx := newTLSFixture(t, dir)
	cfgPath := filepath.Join(dir, "edge.yaml")
	writeCfg := func(ttl string, withC bool) {
		extra := ""
		if withC {
			extra = fmt.Sprintf("  - name: c\n    hosts: [c.test]\n    origin: %s\n", origin.URL)
		}
		cfg := strings.Replace(fx.edgeYAML(origin.URL, extra), "    origin: "+origin.URL+"\n",
			"    origin: "+origin.URL+"\n    default_ttl: "+ttl+"\n", 1)
		tmp := cfgPath + ".tmp"
		writeConfig(t, tmp, cfg)
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("60s", false)
	pidFile := filepath.Join(dir, "verge.pid")
	p := startVerge(t, current, []string{envUpgradeBinary + "=" + current, envPIDFile + "=" + pidFile}, "edge", "-config", cfgPath)
	httpAddr, httpsAddr, h3Addr := p.addr(t, "public"), p.addr(t, "https"), p.addr(t, "http3")
	readPID := func() int { return readPIDFile(pidFile) }
	waitUntil(t, "pid file", 30*time.Second, func() bool { return readPID() == p.cmd.Process.Pid })
	// The last process is not this test's child: stop it by its PID.
	t.Cleanup(func() {
		if pid := readPID(); pid > 0 && pid != p.cmd.Process.Pid && pidAlive(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 1500 && pidAlive(pid); i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	roots := fx.ca.Pool()
	_, port, _ := net.SplitHostPort(httpsAddr)
	dialTo := func(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
		return func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	}
	h3rt := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, h3Addr, tc, qc)
		},
	}
	defer h3rt.Close()
	targets := []*loadTarget{
		{name: "h1-keepalive", host: httpAddr, rate: 100, gating: true,
			rt: &http.Transport{DialContext: dialTo(httpAddr), MaxIdleConnsPerHost: 16}},
		{name: "h1-new-conn", host: httpAddr, rate: 50, gating: true,
			rt: &http.Transport{DialContext: dialTo(httpAddr), DisableKeepAlives: true}},
		{name: "h1-tls", host: "a.test:" + port, rate: 30, gating: true,
			rt: &http.Transport{DialContext: dialTo(httpsAddr), TLSClientConfig: &tls.Config{RootCAs: roots}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}},
		{name: "h2", host: "a.test:" + port, rate: 100, gating: true,
			rt: &http.Transport{DialContext: dialTo(httpsAddr), TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}},
		{name: "h3", host: "a.test:" + port, rate: 50, rt: h3rt},
	}
	for _, lt := range targets {
		lt.errs = map[string]int{}
	}
	loadCtx, stopLoad := context.WithTimeout(context.Background(), 3*time.Minute)
	defer stopLoad()
	var lwg sync.WaitGroup
	for _, lt := range targets {
		lwg.Add(1)
		go lt.run(loadCtx, &lwg)
	}

	count := func(re string) int { return len(regexp.MustCompile(re).FindAllStringIndex(p.log(), -1)) }
	var reloadTimes, upgradeTimes, drainTimes []time.Duration
	reloads, upgrades := 0, 0
	withC := false
	time.Sleep(time.Second) // the load at its rate before the first event
	for ev := 0; ev < 23; ev++ {
		pid := readPID()
		if ev == 4 || ev == 11 || ev == 18 {
			upgrades++
			setBinary(upgrades % 2)
			start := time.Now()
			if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "new process in the pid file", 2*time.Minute, func() bool { n := readPID(); return n != 0 && n != pid })
			upgradeTimes = append(upgradeTimes, time.Since(start))
			waitUntil(t, "old process exit", 2*time.Minute, func() bool { return !pidAlive(pid) })
			drainTimes = append(drainTimes, time.Since(start))
			if !strings.Contains(p.log(), fmt.Sprintf(`msg="upgrade: drained; exiting" pid=%d`, pid)) {
				t.Errorf("process %d exited without draining:\n%s", pid, p.log())
			}
		} else {
			reloads++
			before := count(`msg="config reloaded"`)
			certsBefore := count(`msg="certificates reloaded"`)
			switch reloads % 3 {
			case 0:
				writeCfg(fmt.Sprintf("%ds", 30+reloads), withC)
			case 1:
				withC = !withC
				writeCfg("60s", withC)
			case 2:
				fx.issue(t)
			}
			start := time.Now()
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "reload", 30*time.Second, func() bool {
				return count(`msg="config reloaded"`) > before && count(`msg="certificates reloaded"`) > certsBefore
			})
			reloadTimes = append(reloadTimes, time.Since(start))
		}
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stopLoad()
	lwg.Wait()

	// The last config and certificate are the ones served.
	conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: roots, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	pemBytes, _ := os.ReadFile(filepath.Join(fx.dir, "a.test.pem"))
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("a.test.pem is not PEM")
	}
	issued, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if served.SerialNumber.Cmp(issued.SerialNumber) != 0 {
		t.Errorf("served certificate %x, last issued %x", served.SerialNumber, issued.SerialNumber)
	}
	cReq, _ := http.NewRequest("GET", "http://"+httpAddr+"/obj", nil)
	cReq.Host = "c.test"
	res, err := http.DefaultTransport.RoundTrip(cReq)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	wantC := map[bool]int{true: 200, false: 421}[withC]
	if res.StatusCode != wantC {
		t.Errorf("c.test (in the last config: %v) answered %d, want %d", withC, res.StatusCode, wantC)
	}
	versions := count(`msg="verge edge starting" node=edge-t version=v1`)*10 + count(`msg="verge edge starting" node=edge-t version=v2`)
	if versions != 22 {
		t.Errorf("starts: %d of v1, %d of v2; want 2 and 2", versions/10, versions%10)
	}

	var total, failed, refused int64
	for _, lt := range targets {
		t.Logf("FIGURE zero-downtime %-12s %5d requests at %3d/s: %d failed, %d refused connections, %d retried by the client; errors %v",
			lt.name, lt.ok.Load()+lt.failed.Load()+lt.refused.Load(), lt.rate, lt.failed.Load(), lt.refused.Load(), lt.retried.Load(), lt.errs)
		if lt.gating {
			total += lt.ok.Load() + lt.failed.Load() + lt.refused.Load()
			failed += lt.failed.Load()
			refused += lt.refused.Load()
		}
	}
	t.Logf("FIGURE zero-downtime: %d reloads (config and certificates, SIGHUP) and %d binary upgrades (SIGUSR2, %d sockets handed over) under load over TCP: %d requests, %d failed, %d refused connections",
		reloads, upgrades, 4, total, failed, refused)
	t.Logf("FIGURE zero-downtime: reload applied in %v (max); upgrade: new process serving after %v, old one exited after %v (max; it drains)",
		slices.Max(reloadTimes).Round(time.Millisecond), slices.Max(upgradeTimes).Round(time.Millisecond), slices.Max(drainTimes).Round(time.Millisecond))
	t.Logf("FIGURE zero-downtime: served certificate serial %x after the last reload", served.SerialNumber)
	for _, l := range strings.Split(p.log(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Log("edge log: " + l)
		}
	}
	if failed != 0 || refused != 0 {
		t.Errorf("%d failed requests and %d refused connections over TCP, want 0 and 0", failed, refused)
	}
}

// TestUpgradeHubAndOrigin upgrades a "verge hub" and a "verge origin" once
// each (SIGUSR2) and checks that the new process serves on the same
// addresses and the old one drains and exits.
func TestUpgradeHubAndOrigin(t *testing.T) {
	needHardening(t)
	dir := t.TempDir()
	bin := buildVerge(t, dir, "v1")
	origin := cachedOrigin(t)
	root := t.TempDir()
	writeConfig(t, filepath.Join(root, "obj"), strings.Repeat("o", 1024))
	for _, c := range []struct {
		name string
		args []string
	}{
		{"hub", []string{"hub", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-upstream", origin.URL}},
		{"origin", []string{"origin", "-root", root, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}},
	} {
		pidFile := filepath.Join(dir, c.name+".pid")
		p := startVerge(t, bin, []string{envPIDFile + "=" + pidFile}, c.args...)
		addr := p.addr(t, "public")
		readPID := func() int { return readPIDFile(pidFile) }
		get := func() int {
			req, _ := http.NewRequest("GET", "http://"+addr+"/obj", nil)
			req.Host = "a.test"
			res, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return res.StatusCode
		}
		waitUntil(t, c.name+" pid file", 30*time.Second, func() bool { return readPID() == p.cmd.Process.Pid })
		if s := get(); s != 200 {
			t.Fatalf("%s before the upgrade: %d", c.name, s)
		}
		p.cmd.Process.Signal(syscall.SIGUSR2)
		waitUntil(t, c.name+" new process", time.Minute, func() bool { n := readPID(); return n != 0 && n != p.cmd.Process.Pid })
		next := readPID()
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			t.Fatalf("%s: the old process did not exit", c.name)
		}
		if p.code != exitOK {
			t.Errorf("%s: the old process exited %d", c.name, p.code)
		}
		if s := get(); s != 200 {
			t.Errorf("%s after the upgrade: %d", c.name, s)
		}
		syscall.Kill(next, syscall.SIGTERM)
		waitUntil(t, c.name+" stop", time.Minute, func() bool { return !pidAlive(next) })
		t.Logf("FIGURE upgrade %s: process %d handed over to %d; served before and after", c.name, p.cmd.Process.Pid, next)
	}
}

// TestUpgradeWithDiskCacheAndPurgeLog upgrades an edge whose disk cache and
// purge log are locked by the running process: the new process asks for
// them, the old one drains and releases them, and the new one opens the
// cache warm. Connections made meanwhile wait in the accept queue; none
// fails.
func TestUpgradeWithDiskCacheAndPurgeLog(t *testing.T) {
	needHardening(t)
	dir := t.TempDir()
	bin := buildVerge(t, dir, "v1")
	var fetched atomic.Int64
	big := strings.Repeat("d", 2<<20) // larger than the RAM tier's largest object: stored on disk
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			fetched.Add(1)
		}
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "small")
	}))
	defer origin.Close()
	pidFile := filepath.Join(dir, "edge.pid")
	cfg := writeConfig(t, filepath.Join(dir, "disk.yaml"), fmt.Sprintf(`node: {name: edge-disk}
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:0"}
cache: {ram_bytes: 1MiB, shards: 1, disk: {dir: %s, bytes: 64MiB, max_object_bytes: 16MiB}}
purge_log: {dir: %s}
properties: [{name: a, hosts: [a.test], origin: %q}]
`, filepath.Join(dir, "cache"), filepath.Join(dir, "purgelog"), origin.URL))
	p := startVerge(t, bin, []string{envPIDFile + "=" + pidFile}, "edge", "-config", cfg)
	addr := p.addr(t, "public")
	get := func(path string) (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = "a.test"
		res, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
		if err != nil {
			return 0, "", err
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err == nil && res.ContentLength >= 0 && n != res.ContentLength {
			err = fmt.Errorf("short body: %d of %d bytes", n, res.ContentLength)
		}
		return res.StatusCode, res.Header.Get("Cache-Status"), err
	}
	if code, cs, err := get("/big"); err != nil || code != 200 || !strings.Contains(cs, "fwd=uri-miss") {
		t.Fatalf("first /big: %d %q %v", code, cs, err)
	}
	waitUntil(t, "/big stored", 30*time.Second, func() bool { _, cs, _ := get("/big"); return strings.HasSuffix(cs, "; hit") })

	ctx, cancel := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sent.Add(1)
				if code, _, err := get("/small"); err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(time.Now().Format("15:04:05.000000"), " ", code, " ", err))
				}
			}
		}()
	}
	readPID := func() int { return readPIDFile(pidFile) }
	waitUntil(t, "pid file", 30*time.Second, func() bool { return readPID() == p.cmd.Process.Pid })
	p.cmd.Process.Signal(syscall.SIGUSR2)
	took := waitUntil(t, "new process", time.Minute, func() bool { n := readPID(); return n != 0 && n != p.cmd.Process.Pid })
	next := readPID()
	defer func() {
		syscall.Kill(next, syscall.SIGTERM)
		waitUntil(t, "new process stop", time.Minute, func() bool { return !pidAlive(next) })
	}()
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Fatal("the old process did not exit")
	}
	time.Sleep(200 * time.Millisecond) // requests to the new process alone
	cancel()
	wg.Wait()
	if p.code != exitOK {
		t.Errorf("the old process exited %d:\n%s", p.code, p.log())
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the hand-over (first: %v)\n%s", failed.Load(), sent.Load(), firstErr.Load(), p.log())
	}
	log := p.log()
	for _, want := range []string{"asked the old process to release", "draining and releasing them", "storage: disk tier ready"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The new process found the disk cache warm: /big is a hit, not fetched again.
	if code, cs, err := get("/big"); err != nil || code != 200 || !strings.HasSuffix(cs, "; hit") || fetched.Load() != 1 {
		t.Errorf("/big after the upgrade: %d %q %v, origin fetched it %d times", code, cs, err, fetched.Load())
	}
	t.Logf("FIGURE upgrade with a disk cache and a purge log: handed over in %v; %d requests during it, %d failed; /big served warm from disk after",
		took.Round(time.Millisecond), sent.Load(), failed.Load())
}

// TestUpgradeFailingAfterRelease: a new binary that asks for the cache and
// then dies leaves the old process without its cache; it says why and
// exits 1, for the supervisor to restart the node.
func TestUpgradeFailingAfterRelease(t *testing.T) {
	needHardening(t)
	dir := t.TempDir()
	bin := buildVerge(t, dir, "v1")
	bad := filepath.Join(dir, "bad-verge")
	writeConfig(t, bad, "#!/bin/sh\necho release >&\"$VERGE_READY_FD\"\nexit 3\n")
	os.Chmod(bad, 0o755)
	origin := cachedOrigin(t)
	cfg := writeConfig(t, filepath.Join(dir, "disk.yaml"), fmt.Sprintf(`node: {name: edge-disk}
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:0"}
cache: {disk: {dir: %s, bytes: 64MiB, max_object_bytes: 16MiB}}
properties: [{name: a, hosts: [a.test], origin: %q}]
`, filepath.Join(dir, "cache"), origin.URL))
	p := startVerge(t, bin, []string{envUpgradeBinary + "=" + bad}, "edge", "-config", cfg)
	p.addr(t, "public")
	p.cmd.Process.Signal(syscall.SIGUSR2)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Fatalf("the old process did not exit:\n%s", p.log())
	}
	if p.code != exitFailure || !strings.Contains(p.log(), "upgrade failed after this process released its cache") {
		t.Errorf("exit %d, log:\n%s", p.code, p.log())
	}
}
