package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
)

func TestScrubberSampleConfig(t *testing.T) {
	cfg := defaultScrubberConfig()
	if err := configs.Load("../../configs/scrubber.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.Policy != "least_conn" || len(cfg.Upstream.Backends) != 2 || cfg.Server != "fast" ||
		cfg.Limits.PerIP.Rate != 100 || cfg.Attack.Limits.Mode != "penalty_box" || len(cfg.Lists.Allow) != 1 {
		t.Fatalf("sample config decoded as %+v", cfg)
	}
}

// startScrubber runs "verge scrubber args..." until the test ends and
// returns its public and admin addresses.
func startScrubber(t *testing.T, args ...string) (pub, admin string, logs *lockedBuffer, stop func() int) {
	t.Helper()
	logs = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- runScrubber(ctx, env{args: args, stdout: io.Discard, stderr: logs}) }()
	pub = waitListening(t, logs, "public", exited)
	admin = waitListening(t, logs, "admin", exited)
	stopped := false
	stop = func() int {
		if stopped {
			return exitOK
		}
		stopped = true
		cancel()
		select {
		case code := <-exited:
			return code
		case <-time.After(30 * time.Second):
			t.Fatal("no exit 30s after cancel")
		}
		return -1
	}
	t.Cleanup(func() { stop() })
	return pub, admin, logs, stop
}

func status(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func TestScrubberOneLineMode(t *testing.T) {
	hosts := make(chan string, 16)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		io.WriteString(w, "from origin")
	}))
	defer origin.Close()
	for _, server := range []string{"fast", "stdlib"} {
		t.Run(server, func(t *testing.T) {
			pub, admin, logs, stop := startScrubber(t, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
				"-upstream", origin.URL, "-rate", "1", "-burst", "2", "-server", server)
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			var codes []int
			for i := 0; i < 4; i++ {
				req, _ := http.NewRequest("GET", "http://"+pub+"/obj", nil)
				req.Host = "site.example"
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				codes = append(codes, res.StatusCode)
			}
			if fmt.Sprint(codes) != "[200 200 429 429]" {
				t.Fatalf("codes %v", codes)
			}
			if h := <-hosts; h != "site.example" {
				t.Fatalf("origin saw Host %q", h)
			}
			<-hosts
			if code := status(t, client, "http://"+admin+"/healthz"); code != 200 {
				t.Fatalf("healthz %d", code)
			}
			res, err := client.Get("http://" + admin + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			for _, want := range []string{`verge_scrubber_requests_total{verdict="per_ip"} 2`,
				`verge_scrubber_requests_total{verdict="pass"} 2`, `verge_scrubber_tracked_sources{table="per_ip"} 1`} {
				if !strings.Contains(string(body), want) {
					t.Fatalf("metrics lack %q:\n%s", want, body)
				}
			}
			if code := stop(); code != exitOK {
				t.Fatalf("exit %d:\n%s", code, logs.String())
			}
		})
	}
}

func TestScrubberConfigModeAndSIGHUP(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists.txt")
	os.WriteFile(lists, []byte("deny 127.0.0.0/8\n"), 0o644)
	cfgFile := filepath.Join(dir, "scrubber.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
upstream:
  backends: [{url: %s}]
  health: {enabled: false}
lists:
  file: %s
  reload_interval: 0s
`, origin.URL, lists)), 0o644)
	pub, _, logs, stop := startScrubber(t, "-config", cfgFile)

	// Denied: the connection is closed at accept.
	if c, err := net.Dial("tcp", pub); err == nil {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, err := bufio.NewReader(c).ReadByte(); err == nil {
			t.Fatal("a deny-listed source was served")
		}
		c.Close()
	}
	// Lift the deny and reload with SIGHUP.
	os.WriteFile(lists, []byte("# nothing denied\n"), 0o644)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "rules=0 file="+lists) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if code := status(t, client, "http://"+pub+"/"); code != 200 {
		t.Fatalf("after reload: %d", code)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, logs.String())
	}
}

func TestScrubberCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:0\nlimits:\n  per_ip: {rate: 10, burts: 5}\n"), 0o644)
	noUp := filepath.Join(dir, "noup.yaml")
	os.WriteFile(noUp, []byte("listen: 127.0.0.1:0\n"), 0o644)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nothing", nil, exitUsage, "need -config FILE, or -listen ADDR -upstream URL"},
		{"help", []string{"-h"}, exitOK, "one-line mode"},
		{"bad flag", []string{"-nope"}, exitUsage, "flag provided but not defined"},
		{"both", []string{"-config", bad, "-upstream", "http://127.0.0.1:1"}, exitUsage, "exclusive"},
		{"rate with config", []string{"-config", bad, "-rate", "5"}, exitUsage, "-rate is for one-line mode"},
		{"no listen", []string{"-upstream", "http://127.0.0.1:1"}, exitUsage, "needs -listen"},
		{"bad key", []string{"-config", bad}, exitUsage, "bad.yaml:3: limits.per_ip.burts: unknown key"},
		{"no upstream", []string{"-config", noUp}, exitUsage, "upstream.backends"},
		{"bad mode", []string{"-listen", "127.0.0.1:0", "-upstream", "http://127.0.0.1:1", "-mode", "leaky"}, exitUsage, "limits.mode: want token_bucket or penalty_box"},
		{"bad rate", []string{"-listen", "127.0.0.1:0", "-upstream", "http://127.0.0.1:1", "-rate", "-3"}, exitUsage, "limits.per_ip.rate"},
		{"bad upstream", []string{"-listen", "127.0.0.1:0", "-upstream", "ftp://x"}, exitUsage, "upstream"},
		{"bad server", []string{"-listen", "127.0.0.1:0", "-upstream", "http://127.0.0.1:1", "-server", "turbo"}, exitUsage, "server: want fast or stdlib"},
		{"listen busy", []string{"-listen", busy.Addr().String(), "-admin", "127.0.0.1:0", "-upstream", "http://127.0.0.1:1"}, exitFailure, "public listener"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			code := runScrubber(context.Background(), env{args: c.args, stdout: &out, stderr: &out})
			if code != c.code || !strings.Contains(out.String(), c.want) {
				t.Fatalf("exit %d (want %d), output:\n%s\nwant %q", code, c.code, out.String(), c.want)
			}
		})
	}
}
