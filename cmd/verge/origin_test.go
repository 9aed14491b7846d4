package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOriginCommand(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "index.html"), []byte("<h1>hello</h1>"), 0o644)
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("command-test-token-0123\n"), 0o600)

	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	go func() {
		exited <- runOrigin(ctx, env{args: []string{"-root", root, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
			"-upload-token-file", token}, stdout: io.Discard, stderr: logs})
	}()
	pub := waitListening(t, logs, "public", exited)
	adm := waitListening(t, logs, "admin", exited)

	get := func(url string) (int, string) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("http://" + pub + "/"); code != 200 || !strings.Contains(body, "hello") {
		t.Fatalf("GET /: %d %q", code, body)
	}
	req, _ := http.NewRequest("PUT", "http://"+pub+"/new.txt", strings.NewReader("new"))
	req.Header.Set("Authorization", "Bearer command-test-token-0123")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 201 {
		t.Fatalf("PUT: %v %v", res, err)
	}
	if code, body := get("http://" + adm + "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	code, body := get("http://" + adm + "/metrics")
	if code != 200 || !strings.Contains(body, `verge_origin_requests_total{code="200",method="GET"} 1`) ||
		!strings.Contains(body, `verge_origin_upload_bytes_total 3`) {
		t.Fatalf("metrics: %d\n%s", code, body)
	}
	cancel()
	select {
	case code := <-exited:
		if code != exitOK {
			t.Fatalf("exit %d after shutdown:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after cancel")
	}
}

func TestOriginCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("root: "+dir+"\nrules:\n  - prefix: /\n    bogus: 1\n"), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no root", nil, exitUsage, "need -config FILE or -root DIR"},
		{"bad flag", []string{"-nope"}, exitUsage, "flag provided but not defined"},
		{"extra argument", []string{"-root", dir, "extra"}, exitUsage, "unexpected argument"},
		{"help", []string{"-h"}, exitOK, "-upload-token-file"},
		{"bad config key", []string{"-config", bad}, exitUsage, "bad.yaml:4: rules[0].bogus: unknown key"},
		{"missing config", []string{"-config", filepath.Join(dir, "none.yaml")}, exitUsage, "none.yaml"},
		{"missing root", []string{"-root", filepath.Join(dir, "none")}, exitUsage, "origin: root"},
		{"bad listen flag", []string{"-root", dir, "-listen", "nowhere"}, exitUsage, "listen: want host:port"},
		{"bad log level", []string{"-root", dir, "-log-level", "loud"}, exitUsage, "bad -log-level"},
		{"admin listener fails", []string{"-root", dir, "-listen", "127.0.0.1:0", "-admin", "256.0.0.1:1"}, exitFailure, "admin listener"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			code := runOrigin(context.Background(), env{args: c.args, stdout: &out, stderr: &out})
			if code != c.code || !strings.Contains(out.String(), c.want) {
				t.Fatalf("exit %d (want %d), output:\n%s\nwant %q", code, c.code, out.String(), c.want)
			}
		})
	}
}
