package origin

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTraversal sends request targets byte for byte and checks that none
// reaches a file outside the root, a hidden file, or a symlink that leaves
// the root, and that each gets the documented status.
func TestTraversal(t *testing.T) {
	outside := t.TempDir()
	const secret = "TOP-SECRET-OUTSIDE-THE-ROOT"
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	o := newTestOrigin(t, nil, Options{})
	mt := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	o.write(t, "index.html", []byte("<h1>home</h1>"), mt)
	o.write(t, "docs/index.html", []byte("<h1>docs</h1>"), mt)
	o.write(t, "public.txt", []byte("public"), mt)
	o.write(t, ".git/config", []byte(secret), mt)
	o.write(t, ".env", []byte(secret), mt)
	o.write(t, ".verge-upload-ABC", []byte(secret), mt)
	o.write(t, "a/.hidden", []byte(secret), mt)
	o.write(t, ".well-known/security.txt", []byte("contact"), mt)
	o.write(t, "%2e%2e/x", []byte("literal"), mt)
	if err := os.Mkdir(filepath.Join(o.root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs-link":    filepath.Join(outside, "secret.txt"),
		"rel-link":    filepath.Join("..", filepath.Base(outside), "secret.txt"),
		"dir-link":    outside,
		"rel-dirlink": filepath.Join("..", filepath.Base(outside)),
		"in-link":     "public.txt",
		"abs-in-link": filepath.Join(o.root, "public.txt"),
		"loop":        "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(o.root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(o.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		target string
		status int
		body   string // expected in the body when status is 200
	}{
		{"/public.txt", 200, "public"},
		{"/", 200, "home"},
		{"/docs/", 200, "docs"},
		{"/docs", 301, ""},
		{"/empty/", 404, ""}, // no index: never a listing
		{"/docs/index.html/", 404, ""},
		{"/public.txt/", 404, ""},
		{"/in-link", 200, "public"}, // a relative symlink inside the root is followed
		{"/abs-in-link", 404, ""},   // absolute symlinks are refused even inside
		{"/.well-known/security.txt", 200, "contact"},
		{"/%252e%252e/x", 200, "literal"}, // "%2e%2e" is a plain name after one decoding
		// outside the root
		{"/../" + filepath.Base(outside) + "/secret.txt", 400, ""},
		{"/%2e%2e/" + filepath.Base(outside) + "/secret.txt", 400, ""},
		{"/%2E%2E%2F" + filepath.Base(outside) + "%2Fsecret.txt", 400, ""},
		{"/docs/..%2f..%2f" + filepath.Base(outside) + "/secret.txt", 400, ""},
		{"/..%5c" + filepath.Base(outside) + "%5csecret.txt", 400, ""},
		{"/..\\secret.txt", 400, ""},
		{"/docs/../../secret.txt", 400, ""},
		{"/./public.txt", 400, ""},
		{"//etc/passwd", 400, ""},
		{"/docs//index.html", 400, ""},
		{"/%c0%ae%c0%ae/secret.txt", 400, ""},
		{"/%e0%80%ae%e0%80%ae/secret.txt", 400, ""},
		{"/public.txt%00.html", 400, ""},
		{"/%00", 400, ""},
		{"/a%0d%0aSet-Cookie:%20x", 400, ""},
		{"http://origin.test/../secret.txt", 400, ""},
		{"/" + strings.Repeat("a/", 2100) + "x", 400, ""},
		{"/abs-link", 404, ""},
		{"/rel-link", 404, ""},
		{"/dir-link/secret.txt", 404, ""},
		{"/rel-dirlink/secret.txt", 404, ""},
		{"/loop", 404, ""},
		{"/fifo", 404, ""},
		// hidden files are not published
		{"/.git/config", 404, ""},
		{"/.env", 404, ""},
		{"/.verge-upload-ABC", 404, ""},
		{"/a/.hidden", 404, ""},
		{"/%2egit/config", 404, ""},
		{"/..;/secret.txt", 404, ""},
		{"/nope", 404, ""},
	}
	for _, c := range cases {
		for _, method := range []string{"GET", "HEAD"} {
			status, body := o.raw(t, method, c.target)
			if status != c.status {
				t.Errorf("%s %q: status %d, want %d (body %q)", method, c.target, status, c.status, body)
			}
			if strings.Contains(body, secret) {
				t.Errorf("%s %q: leaked the secret", method, c.target)
			}
			if method == "GET" && c.status == 200 && !strings.Contains(body, c.body) {
				t.Errorf("GET %q: body %q, want %q", c.target, body, c.body)
			}
		}
	}
	// The server's own parser rejects a target without a leading slash.
	if status, _ := o.raw(t, "GET", "../secret.txt"); status != 400 {
		t.Errorf("GET ../secret.txt: %d", status)
	}
}
