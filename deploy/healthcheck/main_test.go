package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "catching up on purges", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"healthy", []string{ok.URL + "/healthz"}, 0, ""},
		{"all healthy", []string{ok.URL + "/a", ok.URL + "/b"}, 0, ""},
		{"503", []string{down.URL + "/healthz"}, 1, "503 Service Unavailable: catching up on purges"},
		{"one of two down", []string{ok.URL, down.URL}, 1, "503"},
		{"refused", []string{closedURL + "/healthz"}, 1, "unhealthy"},
		{"no args", nil, 2, ""},
		{"not a URL", []string{"localhost:9080/healthz"}, 2, ""},
		{"bad scheme", []string{"ftp://127.0.0.1/"}, 2, ""},
		{"bad timeout", []string{"-timeout", "0s", ok.URL}, 2, ""},
		{"bad flag", []string{"-nope", ok.URL}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tc.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Fatalf("stdout %q does not contain %q", out.String(), tc.out)
			}
		})
	}
}
