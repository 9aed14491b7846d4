package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const testToken = "test-upload-token-0123456789"

func withUploads(c *Config) {
	c.Upload.Token = testToken
	c.Upload.MaxSize = 4096
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// etagOf is the ETag the origin gives to content.
func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

func TestUploadAuth(t *testing.T) {
	o := newTestOrigin(t, withUploads, Options{})
	cases := []struct {
		name string
		h    map[string]string
		want int
	}{
		{"no token", nil, 401},
		{"bad token", bearer("wrong-token-0123456789"), 401},
		{"token prefix", bearer(testToken[:20]), 401},
		{"token plus", bearer(testToken + "x"), 401},
		{"basic scheme", map[string]string{"Authorization": "Basic " + testToken}, 401},
		{"no scheme", map[string]string{"Authorization": testToken}, 401},
		{"good token", bearer(testToken), 201},
		{"lower-case scheme", map[string]string{"Authorization": "bearer " + testToken}, 204},
	}
	for _, c := range cases {
		for _, method := range []string{"PUT", "DELETE"} {
			if method == "DELETE" && c.want != 401 {
				continue
			}
			r := o.do(t, method, "/auth.txt", c.h, strings.NewReader("hello"))
			if r.status != c.want {
				t.Errorf("%s %s: %d, want %d (%s)", c.name, method, r.status, c.want, r.body)
			}
			if c.want == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: 401 without WWW-Authenticate", c.name)
			}
		}
	}
	// 401 comes before any other check, even for a bad path.
	if r := o.do(t, "PUT", "/.env", nil, strings.NewReader("x")); r.status != 401 {
		t.Errorf("unauthenticated bad path: %d", r.status)
	}
	r := o.do(t, "OPTIONS", "/", nil, nil)
	if r.header.Get("Allow") != "GET, HEAD, OPTIONS, PUT, DELETE" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
}

func TestUploadLifecycle(t *testing.T) {
	o := newTestOrigin(t, func(c *Config) { withUploads(c); testRules(c) }, Options{})
	auth := bearer(testToken)
	v1, v2 := []byte("body{color:red}"), []byte("body{color:blue}")

	r := o.do(t, "PUT", "/static/css/site.css", auth, bytes.NewReader(v1))
	if r.status != 201 || r.header.Get("ETag") != etagOf(v1) {
		t.Fatalf("create: %d ETag %q (%s)", r.status, r.header.Get("ETag"), r.body)
	}
	g := o.do(t, "GET", "/static/css/site.css", nil, nil)
	if g.status != 200 || !bytes.Equal(g.body, v1) || g.header.Get("ETag") != etagOf(v1) ||
		g.header.Get("Content-Type") != "text/css; charset=utf-8" || g.header.Get("Surrogate-Key") != "static assets" {
		t.Fatalf("GET after create: %d %q %v", g.status, g.body, g.header)
	}
	if h := o.counter(t, "verge_origin_etag_hashes_total", nil); h != 0 {
		t.Fatalf("an uploaded file was hashed again (%v)", h)
	}

	r = o.do(t, "PUT", "/static/css/site.css", auth, bytes.NewReader(v2))
	if r.status != 204 || r.header.Get("ETag") != etagOf(v2) {
		t.Fatalf("replace: %d %q", r.status, r.header.Get("ETag"))
	}
	if g := o.do(t, "GET", "/static/css/site.css", nil, nil); !bytes.Equal(g.body, v2) {
		t.Fatalf("GET after replace: %q", g.body)
	}
	// An empty body is a valid (empty) file.
	if r := o.do(t, "PUT", "/empty.txt", auth, bytes.NewReader(nil)); r.status != 201 {
		t.Fatalf("empty: %d", r.status)
	}

	// Conditional uploads.
	for _, c := range []struct {
		name   string
		method string
		path   string
		h      map[string]string
		want   int
	}{
		{"create-only over a file", "PUT", "/static/css/site.css", map[string]string{"If-None-Match": "*"}, 412},
		{"create-only new", "PUT", "/new.txt", map[string]string{"If-None-Match": "*"}, 201},
		{"if-match stale", "PUT", "/static/css/site.css", map[string]string{"If-Match": etagOf(v1)}, 412},
		{"if-match current", "PUT", "/static/css/site.css", map[string]string{"If-Match": etagOf(v2)}, 204},
		{"if-match absent file", "PUT", "/absent.txt", map[string]string{"If-Match": "*"}, 412},
		{"delete if-match stale", "DELETE", "/new.txt", map[string]string{"If-Match": etagOf(v1)}, 412},
	} {
		r := o.do(t, c.method, c.path, merge(auth, c.h), bytes.NewReader(v2))
		if r.status != c.want {
			t.Errorf("%s: %d, want %d (%s)", c.name, r.status, c.want, r.body)
		}
	}
	if g := o.do(t, "GET", "/new.txt", nil, nil); g.status != 200 {
		t.Fatalf("a failed conditional DELETE removed the file: %d", g.status)
	}

	r = o.do(t, "DELETE", "/static/css/site.css", auth, nil)
	if r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	if g := o.do(t, "GET", "/static/css/site.css", nil, nil); g.status != 404 {
		t.Fatalf("GET after delete: %d", g.status)
	}
	if r := o.do(t, "DELETE", "/static/css/site.css", auth, nil); r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
	if got := o.counter(t, "verge_origin_upload_bytes_total", nil); got != float64(len(v1)+3*len(v2)) { // create, replace, create-only, if-match
		t.Errorf("upload bytes %v", got)
	}
	noTemps(t, o.root)
}

func TestUploadRejects(t *testing.T) {
	o := newTestOrigin(t, withUploads, Options{})
	auth := bearer(testToken)
	o.write(t, "dir/file.txt", []byte("x"), lm)
	big := bytes.Repeat([]byte("b"), 4097)
	cases := []struct {
		name   string
		method string
		target string
		body   io.Reader
		want   int
	}{
		{"dot-dot", "PUT", "/../escape.txt", strings.NewReader("x"), 400},
		{"encoded dot-dot", "PUT", "/%2e%2e/escape.txt", strings.NewReader("x"), 400},
		{"encoded slash", "PUT", "/a%2fb.txt", strings.NewReader("x"), 400},
		{"hidden", "PUT", "/.env", strings.NewReader("x"), 400},
		{"temp name", "PUT", "/.verge-upload-X", strings.NewReader("x"), 400},
		{"directory path", "PUT", "/dir/", strings.NewReader("x"), 400},
		{"root", "PUT", "/", strings.NewReader("x"), 400},
		{"nul", "PUT", "/a%00b", strings.NewReader("x"), 400},
		{"empty segment", "PUT", "/a//b", strings.NewReader("x"), 400},
		{"onto a directory", "PUT", "/dir", strings.NewReader("x"), 409},
		{"below a file", "PUT", "/dir/file.txt/sub.txt", strings.NewReader("x"), 409},
		{"too big, declared", "PUT", "/big.bin", bytes.NewReader(big), 413},
		{"too big, chunked", "PUT", "/big.bin", io.MultiReader(bytes.NewReader(big)), 413},
		{"delete a directory", "DELETE", "/dir", nil, 409},
		{"delete bad path", "DELETE", "/../x", nil, 400},
		{"delete hidden", "DELETE", "/.git", nil, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, o.url+c.target, c.body)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = c.target // keep the target exactly as written
			for k, v := range auth {
				req.Header.Set(k, v)
			}
			if c.name == "too big, chunked" {
				req.ContentLength = -1
			}
			res, err := o.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("%d, want %d (%s)", res.StatusCode, c.want, b)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("error without no-store: %v", res.Header)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(o.root, "big.bin")); err == nil {
		t.Error("an oversized upload was kept")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(o.root), "escape.txt")); err == nil {
		t.Error("an upload escaped the root")
	}
	noTemps(t, o.root)
}

func TestUploadsDisabled(t *testing.T) {
	o := newTestOrigin(t, nil, Options{})
	for _, m := range []string{"PUT", "DELETE"} {
		r := o.do(t, m, "/x.txt", bearer(testToken), strings.NewReader("x"))
		if r.status != 405 || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Errorf("%s: %d %q", m, r.status, r.header.Get("Allow"))
		}
	}
	if _, err := os.Stat(filepath.Join(o.root, "x.txt")); err == nil {
		t.Error("PUT wrote a file with uploads disabled")
	}
}

// TestUploadAtomic races writers of one path against readers: every read
// sees one complete version whose ETag matches its bytes.
func TestUploadAtomic(t *testing.T) {
	o := newTestOrigin(t, func(c *Config) { withUploads(c); c.Upload.MaxSize = 1 << 20 }, Options{})
	versions := make([][]byte, 4)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('A' + i)}, 64<<10)
	}
	if r := o.do(t, "PUT", "/race.bin", bearer(testToken), bytes.NewReader(versions[0])); r.status != 201 {
		t.Fatalf("seed: %d", r.status)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range versions {
		wg.Go(func() {
			for range 5 {
				r := o.do(t, "PUT", "/race.bin", bearer(testToken), bytes.NewReader(versions[i]))
				if r.status != 204 {
					errs <- fmt.Errorf("PUT: %d", r.status)
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 10 {
				r := o.do(t, "GET", "/race.bin", nil, nil)
				if r.status != 200 {
					errs <- fmt.Errorf("GET: %d", r.status)
					continue
				}
				if len(r.body) != 64<<10 || bytes.Count(r.body, r.body[:1]) != len(r.body) {
					errs <- fmt.Errorf("torn read: %d bytes starting %q", len(r.body), r.body[:min(8, len(r.body))])
				}
				if r.header.Get("ETag") != etagOf(r.body) {
					errs <- fmt.Errorf("ETag %q does not match the body", r.header.Get("ETag"))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	noTemps(t, o.root)
}

// noTemps fails if an upload's temporary file was left behind.
func noTemps(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}
