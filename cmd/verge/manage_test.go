package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management"
)

const (
	testOpToken      = "op-token-for-tests"
	testClusterToken = "cluster-token-for-tests"
)

// writeManageConfig writes a management config with token files in dir.
func writeManageConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "op.token"), []byte(testOpToken+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "cluster.token"), []byte(testClusterToken+"\n"), 0o600)
	cfg := fmt.Sprintf(`listen:
  api: 127.0.0.1:0
  admin: 127.0.0.1:0
database: %s
purge_log_dir: %s
operator_token_file: %s
cluster_token_file: %s
%s`, filepath.Join(dir, "m.db"), filepath.Join(dir, "plog"), filepath.Join(dir, "op.token"), filepath.Join(dir, "cluster.token"), extra)
	path := filepath.Join(dir, "manage.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	return path
}

func TestManageCommandExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen:\n  api: 127.0.0.1:0\nnode_timeout: soon\n"), 0o644)
	noToken := filepath.Join(dir, "notoken.yaml")
	os.WriteFile(noToken, []byte("operator_token_file: "+filepath.Join(dir, "missing")+"\ncluster_token: c\ndatabase: "+filepath.Join(dir, "x.db")+"\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "need -config FILE"},
		{[]string{"-bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"-config", filepath.Join(dir, "nope.yaml")}, exitUsage, "no such file"},
		{[]string{"-config", bad}, exitUsage, "bad.yaml:3: node_timeout"},
		{[]string{"-config", noToken, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}, exitFailure, "missing"},
		{[]string{"-h"}, exitOK, "-config"},
	} {
		var stderr lockedBuffer
		code := runManage(context.Background(), env{args: c.args, stdout: io.Discard, stderr: &stderr})
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("verge manage %q: exit %d, want %d; stderr:\n%s", c.args, code, c.code, stderr.String())
		}
	}
}

// runningManage runs "verge manage" and returns its API and admin addresses.
func runningManage(t *testing.T, dir, extra string) (api, admin string) {
	t.Helper()
	path := writeManageConfig(t, dir, extra)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- runManage(ctx, env{args: []string{"-config", path}, stdout: io.Discard, stderr: logs})
	}()
	api = waitListening(t, logs, "api", exited)
	admin = waitListening(t, logs, "admin", exited)
	t.Cleanup(func() {
		cancel()
		if code := <-exited; code != exitOK {
			t.Errorf("verge manage exited %d:\n%s", code, logs.String())
		}
	})
	return api, admin
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestEdgeReportsToManageCommand(t *testing.T) {
	dir := t.TempDir()
	api, admin := runningManage(t, dir, "")
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "verge_management_reports_total"} {
		if code, body := get(t, "http://"+admin+path, ""); code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %.200s", path, code, body)
		}
	}
	if code, body := get(t, "http://"+api+"/", ""); code != 200 || !strings.Contains(body, "Verge") {
		t.Errorf("dashboard: %d", code)
	}

	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hello")
	}))
	defer origin.Close()
	edgeCfg := filepath.Join(dir, "edge.yaml")
	os.WriteFile(edgeCfg, []byte(fmt.Sprintf(`node:
  name: edge-t1
  region: eu
listen:
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
cluster_token_file: %s
properties:
  - name: site
    hosts: [site.test]
    origin: %s
report:
  url: http://%s
  interval: 100ms
`, filepath.Join(dir, "cluster.token"), origin.URL, api)), 0o644)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- runEdge(ctx, env{args: []string{"-config", edgeCfg}, stdout: io.Discard, stderr: logs})
	}()
	pub := waitListening(t, logs, "public", exited)
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", "http://"+pub+"/x", nil)
		req.Host = "site.test"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	// Stopping the edge sends its last report: management has all 3 requests.
	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("edge exited %d:\n%s", code, logs.String())
	}
	code, body := get(t, "http://"+api+"/api/v1/nodes/edge-t1", testOpToken)
	var n management.NodeView
	json.Unmarshal([]byte(body), &n)
	if code != 200 || n.Totals.Requests != 3 || n.Totals.Hits != 2 || n.Region != "eu" || n.Role != "edge" || !strings.HasPrefix(n.AdminURL, "http://127.0.0.1:") {
		t.Fatalf("node after the edge stopped: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "reporting to management") {
		t.Errorf("no reporter log line:\n%s", logs.String())
	}
}

func TestReportConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "edge.yaml")
	os.WriteFile(p, []byte(`properties:
  - name: s
    hosts: [s.test]
    origin: http://127.0.0.1:1
report:
  url: ftp://x
  interval: 1ms
  max_backlog: 0
  admin_url: nope
`), 0o644)
	var stderr lockedBuffer
	code := runEdge(context.Background(), env{args: []string{"-config", p}, stdout: io.Discard, stderr: &stderr})
	for _, want := range []string{"edge.yaml:6: report.url", "edge.yaml:7: report.interval", "edge.yaml:8: report.max_backlog", "edge.yaml:9: report.admin_url"} {
		if code != exitUsage || !strings.Contains(stderr.String(), want) {
			t.Errorf("exit %d, missing %q:\n%s", code, want, stderr.String())
		}
	}
	// A report URL without any token is a runtime failure with the reason.
	os.WriteFile(p, []byte(`listen:
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
properties:
  - name: s
    hosts: [s.test]
    origin: http://127.0.0.1:1
report:
  url: http://127.0.0.1:1
`), 0o644)
	stderr = lockedBuffer{}
	code = runEdge(context.Background(), env{args: []string{"-config", p}, stdout: io.Discard, stderr: &stderr})
	if code != exitFailure || !strings.Contains(stderr.String(), "report.token_file") {
		t.Errorf("no token: exit %d\n%s", code, stderr.String())
	}
}

// opsFleet is an in-process management with real edges reporting to it.
type opsFleet struct {
	url   string
	s     *management.Server
	edges []*edge.Engine
	admin []*httptest.Server
	pub   []*httptest.Server
	reps  []*management.Reporter
}

// reportAll makes every edge report once, after its engine has counted
// every answered request (it counts after writing the response).
func (f *opsFleet) reportAll(t *testing.T, requests uint64) {
	t.Helper()
	for i, r := range f.reps {
		for n := 0; ; n++ {
			var got uint64
			for _, p := range f.edges[i].Stats().Snapshot().Properties {
				for _, v := range p.Requests {
					got += v
				}
			}
			if got >= requests {
				break
			}
			if n > 2000 {
				t.Fatalf("edge %d counted %d requests, want %d", i, got, requests)
			}
			time.Sleep(time.Millisecond)
		}
		r.Collect()
		if err := r.Deliver(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func startOpsFleet(t *testing.T, static []management.NodeConfig) *opsFleet {
	t.Helper()
	dir := t.TempDir()
	cfg := management.DefaultConfig()
	cfg.Listen = management.ListenConfig{API: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Database, cfg.PurgeLogDir = filepath.Join(dir, "m.db"), filepath.Join(dir, "plog")
	cfg.OperatorToken, cfg.ClusterToken = testOpToken, testClusterToken
	cfg.Nodes = static
	s, err := management.New(cfg, management.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); s.Close() })
	f := &opsFleet{url: srv.URL, s: s}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "content of "+r.URL.Path)
	}))
	t.Cleanup(origin.Close)
	for i, region := range []string{"eu", "eu", "us"} {
		ec := edge.DefaultConfig()
		ec.Node = edge.NodeConfig{Name: fmt.Sprintf("edge-%d", i+1), Region: region}
		ec.ClusterToken = testClusterToken
		p := edge.DefaultProperty()
		p.Name, p.Hosts, p.Origin = "site", []string{"site.test"}, origin.URL
		ec.Properties = []edge.Property{p}
		eng, err := edge.New(ec, edge.Options{})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		eng.Register(reg)
		adm, pub := httptest.NewServer(eng.Admin()), httptest.NewServer(eng)
		t.Cleanup(func() { adm.Close(); pub.Close() })
		r, err := management.NewReporter(management.ReporterConfig{URL: srv.URL, Token: testClusterToken, Node: ec.Node.Name,
			Role: "edge", Region: region, Version: "v-test", AdminURL: adm.URL}, func() management.Report { return management.EdgeReport(eng, reg) })
		if err != nil {
			t.Fatal(err)
		}
		r.Collect()
		if err := r.Deliver(context.Background()); err != nil {
			t.Fatal(err)
		}
		f.edges, f.admin, f.pub, f.reps = append(f.edges, eng), append(f.admin, adm), append(f.pub, pub), append(f.reps, r)
	}
	t.Setenv(envManageURL, srv.URL)
	t.Setenv(envToken, testOpToken)
	t.Setenv(envTokenFile, "")
	return f
}

func runOp(run func(context.Context, env) int, args ...string) (int, string, string) {
	var out, errb lockedBuffer
	code := run(context.Background(), env{args: args, stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestPurgeCommand(t *testing.T) {
	f := startOpsFleet(t, nil)
	code, out, errs := runOp(runPurge, "-url", "http://site.test/a")
	if code != exitOK || strings.Count(out, "  ok      edge-") != 3 || !strings.Contains(out, "purge #1 done: all 3 nodes acknowledged") {
		t.Fatalf("purge: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runOp(runPurge, "-tag", "t1", "-soft")
	if code != exitOK || !strings.Contains(out, "purge #2: tag t1 (soft) -> 3 nodes") {
		t.Fatalf("soft purge: exit %d\n%s", code, out)
	}
	// A node that is down fails its ack: exit 1, naming it.
	f.admin[1].Close()
	code, out, _ = runOp(runPurge, "-all")
	if code != exitFailure || !strings.Contains(out, "FAILED  edge-2") || !strings.Contains(out, "purge #3 failed: 2 of 3 nodes acknowledged; failed: edge-2") {
		t.Fatalf("purge with a dead node: exit %d\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "exactly one of"},
		{[]string{"-url", "http://site.test/a", "-all"}, exitUsage, "exactly one of"},
		{[]string{"-url", "not a url"}, exitFailure, "needs an absolute http(s) URL"},
		{[]string{"-all", "extra"}, exitUsage, "unexpected argument"},
		{[]string{"-all", "-manage", "ftp://x"}, exitUsage, "must be http(s)"},
		{[]string{"-all", "-manage", "http://127.0.0.1:1"}, exitFailure, "management unreachable"},
		{[]string{"-all", "-token-file", "/nonexistent"}, exitUsage, "nonexistent"},
	} {
		code, out, errs := runOp(runPurge, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("verge purge %q: exit %d, want %d %q\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
	}
	t.Setenv(envToken, "wrong")
	if code, _, errs := runOp(runPurge, "-all"); code != exitFailure || !strings.Contains(errs, "401") {
		t.Errorf("bad token: %d %s", code, errs)
	}
	t.Setenv(envToken, "")
	if code, _, errs := runOp(runPurge, "-all"); code != exitUsage || !strings.Contains(errs, "need the operator token") {
		t.Errorf("no token: %d %s", code, errs)
	}
}

func TestPurgeCommandTimesOut(t *testing.T) {
	// A node that accepts the connection but never answers.
	release := make(chan struct{})
	var once sync.Once
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(func() { once.Do(func() { close(release) }); hang.Close() })
	startOpsFleet(t, []management.NodeConfig{{Name: "edge-stuck", Role: "edge", Region: "ap", AdminURL: hang.URL}})
	code, out, errs := runOp(runPurge, "-all", "-timeout", "500ms")
	once.Do(func() { close(release) })
	if code != exitFailure || strings.Count(out, "  ok  ") != 3 || !strings.Contains(out, "no ack within 500ms from: edge-stuck") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
}

func TestPreloadStatusUsageCommands(t *testing.T) {
	f := startOpsFleet(t, nil)
	list := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(list, []byte("# warm these\nhttp://site.test/one\n\nhttp://site.test/two\n"), 0o644)
	code, out, errs := runOp(runPreload, "-file", list, "-url", "http://site.test/three")
	if code != exitOK || strings.Count(out, "3 URLs,") != 3 || !strings.Contains(out, "preload #1 done: all 3 nodes acknowledged") {
		t.Fatalf("preload: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runOp(runPreload, "-url", "http://other.test/x")
	if code != exitFailure || !strings.Contains(out, "unknown host") {
		t.Fatalf("preload of an unknown host: exit %d\n%s", code, out)
	}
	if code, _, errs := runOp(runPreload); code != exitUsage || !strings.Contains(errs, "give -url") {
		t.Errorf("preload without URLs: %d %s", code, errs)
	}
	if code, _, errs := runOp(runPreload, "-url", "/relative"); code != exitUsage || !strings.Contains(errs, "absolute") {
		t.Errorf("preload bad URL: %d %s", code, errs)
	}

	// Traffic (hits: the preload filled /one), then every node reports again.
	for _, p := range f.pub {
		for i := 0; i < 4; i++ {
			req, _ := http.NewRequest("GET", p.URL+"/one", nil)
			req.Host = "site.test"
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	f.reportAll(t, 4)
	code, out, errs = runOp(runStatus)
	if code != exitOK || !strings.Contains(out, "REGION") || strings.Count(out, " edge-") != 3 || !strings.Contains(out, "alerts: none") ||
		!strings.Contains(out, "edge: 3/3 up") || !strings.Contains(out, "v-test") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runOp(runStatus, "-json")
	if code != exitOK || !strings.Contains(out, `"generation"`) {
		t.Fatalf("status -json: %d\n%s", code, out)
	}
	code, out, errs = runOp(runUsage, "-format", "csv", "-role", "all")
	if code != exitOK || !strings.HasPrefix(out, "start,seconds,property,role,requests") {
		t.Fatalf("usage csv: %d\n%s%s", code, out, errs)
	}
	code, out, _ = runOp(runUsage)
	if code != exitOK || !strings.Contains(out, "START") || !regexp.MustCompile(`total\s+12\s+12\s+100\.0%`).MatchString(out) {
		t.Fatalf("usage table: %d\n%s", code, out)
	}
	if code, _, errs := runOp(runUsage, "-step", "week"); code != exitUsage || !strings.Contains(errs, "step") {
		t.Errorf("usage bad step: %d %s", code, errs)
	}
	if code, _, errs := runOp(runUsage, "-format", "xml"); code != exitUsage || !strings.Contains(errs, "format") {
		t.Errorf("usage bad format: %d %s", code, errs)
	}
}
