package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEdgeCommandExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("node:\n  name: e\nproperties:\n  - name: p\n    hosts: [a.test]\n    origin: ftp://x\n    bogus: 1\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-nope"}, exitUsage, "flag provided but not defined"},
		{nil, exitUsage, "need -config FILE"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, exitUsage, "no such file"},
		{[]string{"-config", bad}, exitUsage, "bad.yaml:7: properties[0].bogus: unknown key"},
		{[]string{"-config", bad, "-upstream", "http://127.0.0.1:1"}, exitUsage, "not both"},
		{[]string{"-upstream", "not a url", "-listen", "127.0.0.1:0"}, exitUsage, "properties[0].origin"},
		{[]string{"-h"}, exitOK, "-upstream"},
	} {
		var stderr lockedBuffer
		code := runEdge(context.Background(), env{args: c.args, stdout: io.Discard, stderr: &stderr})
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("verge edge %q: exit %d, want %d; stderr:\n%s", c.args, code, c.code, stderr.String())
		}
	}
}

func TestEdgeCommandServesAndDrains(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "from origin")
	}))
	defer origin.Close()
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	go func() {
		exited <- runHub(ctx, env{args: []string{"-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-upstream", origin.URL, "-name", "hub-t"},
			stdout: io.Discard, stderr: logs})
	}()
	pub := waitListening(t, logs, "public", exited)
	adm := waitListening(t, logs, "admin", exited)
	for i, want := range []string{"hub-t; fwd=uri-miss", "hub-t; hit"} {
		res, err := http.Get("http://" + pub + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "from origin" || res.Header.Get("Cache-Status") != want {
			t.Errorf("request %d: %q %q", i, b, res.Header.Get("Cache-Status"))
		}
	}
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": `verge_edge_requests_total{cache="hit",property="default"} 1`} {
		res, err := http.Get("http://" + adm + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	// The admin API is not on the public listener: there, POST /purge is
	// just a request for the origin.
	res, err := http.Post("http://"+pub+"/purge", "application/json", strings.NewReader(`{"kind":"all"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(b), "matched") || res.Header.Get("Cache-Status") != "hub-t; fwd=method" {
		t.Errorf("purge on the public listener: %d %q", res.StatusCode, b)
	}
	cancel()
	if code := <-exited; code != exitOK {
		t.Errorf("exit %d after shutdown, want 0", code)
	}
}

func TestEdgeWithScrubberStages(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	os.WriteFile(path, []byte(`node: {name: scrubbed}
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:0"}
properties:
  - name: p
    hosts: ["*"]
    origin: `+origin.URL+`
scrubber:
  enabled: true
  limits:
    per_ip: {rate: 1, burst: 3}
  attack: {enabled: false}
  lists: {allow: []}
`), 0o644)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	go func() { exited <- runEdge(ctx, env{args: []string{"-config", path}, stdout: io.Discard, stderr: logs}) }()
	pub := waitListening(t, logs, "public", exited)
	codes := map[int]int{}
	for i := 0; i < 6; i++ {
		res, err := http.Get("http://" + pub + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		codes[res.StatusCode]++
		if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	// burst 3 at 1/s: the first three pass, the rest (within a second) are limited
	if codes[200] < 3 || codes[429] < 2 {
		t.Errorf("status counts %v", codes)
	}
	cancel()
	if code := <-exited; code != exitOK {
		t.Errorf("exit %d", code)
	}
}
