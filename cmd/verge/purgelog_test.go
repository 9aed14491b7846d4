package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/distribution/purgelog"
	"github.com/vergecdn/verge/edge"
)

func TestCachePurgeLogConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ yaml, want string }{
		{"cluster_token: t\npurge_log:\n  peers: [http://127.0.0.1:1]\n", "purge_log.dir: is required when peers are set"},
		{"purge_log:\n  dir: " + dir + "\n  peers: [http://127.0.0.1:1]\n", "purge_log.peers: need cluster_token"},
		{"cluster_token: t\npurge_log:\n  dir: " + dir + "\n  peers: [ftp://x]\n", "purge_log.peers[0]: want an http(s) base URL"},
		{"cluster_token: t\npurge_log:\n  dir: " + dir + "\n  peers: [http://127.0.0.1:1/purgelog]\n", "without path"},
		{"purge_log:\n  dir: " + dir + "\n  retry: 0s\n", "purge_log.retry: must be positive"},
		{"purge_log:\n  dir: " + dir + "\n  bogus: 1\n", "bad.yaml:3: purge_log.bogus: unknown key"},
	} {
		path := filepath.Join(dir, "bad.yaml")
		os.WriteFile(path, []byte(c.yaml+"properties:\n  - name: p\n    hosts: [a.test]\n    origin: http://127.0.0.1:1\n"), 0o644)
		var stderr lockedBuffer
		code := runEdge(context.Background(), env{args: []string{"-config", path}, stdout: io.Discard, stderr: &stderr})
		if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d; stderr:\n%s\nwant %q", c.yaml, code, stderr.String(), c.want)
		}
	}
}

func httpGet(t *testing.T, url, host, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

// waitHealthy polls /healthz until it answers 200 (a guard against hangs,
// not a timing assertion).
func waitHealthy(t *testing.T, adm string, exited <-chan int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if code, _ := httpGet(t, "http://"+adm+"/healthz", "", ""); code == 200 {
			return
		}
		select {
		case code := <-exited:
			t.Fatalf("exited %d", code)
		case <-deadline:
			t.Fatal("not healthy after 30s")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestHubPurgeLog runs verge hub with a purge log: not ready (and refusing
// public requests) until its peer answers, then caught up, recording pushed
// purges in its data dir, which a restart remembers.
func TestHubPurgeLog(t *testing.T) {
	const token = "cluster-secret"
	mgmt, err := purgelog.Open(t.TempDir(), purgelog.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mgmt.Close()
	for i := range 3 {
		mgmt.Append(edge.Purge{Kind: edge.PurgeTag, Value: fmt.Sprintf("t%d", i)})
	}
	var hold atomic.Bool
	hold.Store(true)
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold.Load() {
			http.Error(w, `{"error":"management starting"}`, http.StatusServiceUnavailable)
			return
		}
		purgelog.Handler(mgmt, purgelog.BearerAuth(token), nil).ServeHTTP(w, r)
	}))
	defer peer.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "from origin")
	}))
	defer origin.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "hub.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node: {name: hub-t}
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:0"}
cluster_token: %s
purge_log:
  dir: %s
  peers: [%s]
  retry: 10ms
properties:
  - name: p
    hosts: [www.example.test]
    origin: %s
`, token, filepath.Join(dir, "purgelog"), peer.URL, origin.URL)), 0o644)

	start := func() (pub, adm string, stop func() int) {
		logs := &lockedBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		exited := make(chan int, 1)
		go func() {
			exited <- runHub(ctx, env{args: []string{"-config", cfgPath}, stdout: io.Discard, stderr: logs})
		}()
		pub = waitListening(t, logs, "public", exited)
		adm = waitListening(t, logs, "admin", exited)
		return pub, adm, func() int { cancel(); return <-exited }
	}
	pub, adm, stop := start()
	for _, c := range []struct{ url, host, token, want string }{
		{"http://" + adm + "/healthz", "", "", "not ready"},
		{"http://" + pub + "/x", "www.example.test", "", "catching up on purges"},
		{"http://" + adm + "/purgelog/summary", "", token, "purge log not caught up"},
	} {
		if code, body := httpGet(t, c.url, c.host, c.token); code != 503 || !strings.Contains(body, c.want) {
			t.Errorf("while the peer is away, %s: %d %q", c.url, code, body)
		}
	}
	hold.Store(false)
	waitHealthy(t, adm, nil)
	if code, body := httpGet(t, "http://"+pub+"/x", "www.example.test", ""); code != 200 || body != "from origin" {
		t.Errorf("public after catching up: %d %q", code, body)
	}
	if code, body := httpGet(t, "http://"+adm+"/purgelog/summary", "", token); code != 200 || !strings.HasPrefix(body, `{"last":3,"count":3,`) {
		t.Errorf("summary: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+adm+"/purge", strings.NewReader(`{"seq":4,"kind":"url","value":"http://www.example.test/x"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(string(b), `{"node":"hub-t","seq":4,"matched":1,`) {
		t.Errorf("purge: %d %s", res.StatusCode, b)
	}
	if _, body := httpGet(t, "http://"+adm+"/metrics", "", ""); !strings.Contains(body, "verge_distribution_purge_log_last_seq 4") {
		t.Error("metrics lack verge_distribution_purge_log_last_seq 4")
	}
	// POST /preload is still the engine's.
	req, _ = http.NewRequest(http.MethodPost, "http://"+adm+"/preload", strings.NewReader(`{"urls":["http://www.example.test/y"]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("preload: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if code := stop(); code != exitOK {
		t.Errorf("exit %d", code)
	}

	// A restart remembers purge 4, which only this node has.
	_, adm, stop = start()
	waitHealthy(t, adm, nil)
	if code, body := httpGet(t, "http://"+adm+"/purgelog/summary", "", token); code != 200 || !strings.HasPrefix(body, `{"last":4,"count":4,`) {
		t.Errorf("summary after a restart: %d %s", code, body)
	}
	if code := stop(); code != exitOK {
		t.Errorf("exit %d", code)
	}
}

// TestSampleCacheConfigs loads configs/edge.yaml and hub.yaml as they are
// and with their purge_log section uncommented.
func TestSampleCacheConfigs(t *testing.T) {
	for _, c := range []struct {
		file string
		role edge.Role
	}{{"edge.yaml", edge.RoleEdge}, {"hub.yaml", edge.RoleHub}} {
		data, err := os.ReadFile(filepath.Join("..", "..", "configs", c.file))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		in := false
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "#purge_log:") {
				in = true
			}
			if in && strings.HasPrefix(l, "#") {
				l = l[1:]
			}
			lines = append(lines, l)
		}
		if !in {
			t.Fatalf("%s has no commented purge_log section", c.file)
		}
		for i, text := range []string{string(data), strings.Join(lines, "\n")} {
			f := defaultCacheFile()
			f.Role = c.role
			if i == 1 {
				f.ClusterToken = "t" // the section's peers need one
			}
			if err := configs.LoadBytes(c.file, []byte(text), &f); err != nil {
				t.Fatalf("%s (%d): %v", c.file, i, err)
			}
			if err := f.Validate(); err != nil {
				t.Fatalf("%s (%d): %v", c.file, i, err)
			}
			if got := f.PurgeLog.Enabled(); got != (i == 1) {
				t.Errorf("%s (%d): purge log enabled %v", c.file, i, got)
			}
		}
	}
}
