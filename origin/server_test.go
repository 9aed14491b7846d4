package origin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
)

var lm = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func testRules(cfg *Config) {
	cfg.Rules = []Rule{
		{Prefix: "/static/", CacheControl: "public, max-age=31536000, immutable", SurrogateKeys: []string{"static", "assets"}},
		{Prefix: "/video/", CacheControl: "public, max-age=60", CDNCacheControl: "max-age=600", SurrogateKeys: []string{"video"}},
		{Glob: "*.html", CacheControl: "public, max-age=30", SurrogateKeys: []string{"html"}},
		{Prefix: "/slow/", Delay: configs.Duration(250 * time.Millisecond)},
	}
	cfg.NotFoundCacheControl = "public, max-age=5"
	cfg.Types = map[string]string{".glb": "model/gltf-binary"}
}

func TestConditionalMatrix(t *testing.T) {
	o := newTestOrigin(t, testRules, Options{})
	o.write(t, "static/app.css", []byte("body{color:red}"), lm)
	first := o.do(t, "GET", "/static/app.css", nil, nil)
	if first.status != 200 {
		t.Fatalf("GET: %d", first.status)
	}
	e := first.header.Get("ETag")
	if len(e) < 10 || e[0] != '"' || strings.HasPrefix(e, "W/") {
		t.Fatalf("ETag %q is not a strong entity tag", e)
	}
	if got := first.header.Get("Last-Modified"); got != httpDate(lm) {
		t.Fatalf("Last-Modified %q, want %q", got, httpDate(lm))
	}
	weak := "W/" + e
	before, same, after := httpDate(lm.Add(-time.Second)), httpDate(lm), httpDate(lm.Add(time.Hour))

	cases := []struct {
		name   string
		method string
		h      map[string]string
		want   int
	}{
		{"none", "GET", nil, 200},
		{"inm match", "GET", map[string]string{"If-None-Match": e}, 304},
		{"inm weak match", "GET", map[string]string{"If-None-Match": weak}, 304},
		{"inm list", "GET", map[string]string{"If-None-Match": `"x", ` + e}, 304},
		{"inm star", "GET", map[string]string{"If-None-Match": "*"}, 304},
		{"inm other", "GET", map[string]string{"If-None-Match": `"x"`}, 200},
		{"inm unquoted", "GET", map[string]string{"If-None-Match": strings.Trim(e, `"`)}, 200},
		{"inm beats ims", "GET", map[string]string{"If-None-Match": `"x"`, "If-Modified-Since": after}, 200},
		{"inm match with old ims", "GET", map[string]string{"If-None-Match": e, "If-Modified-Since": before}, 304},
		{"ims same", "GET", map[string]string{"If-Modified-Since": same}, 304},
		{"ims later", "GET", map[string]string{"If-Modified-Since": after}, 304},
		{"ims earlier", "GET", map[string]string{"If-Modified-Since": before}, 200},
		{"ims rfc850", "GET", map[string]string{"If-Modified-Since": lm.Format(time.RFC850)}, 304},
		{"ims asctime", "GET", map[string]string{"If-Modified-Since": lm.Format(time.ANSIC)}, 304},
		{"ims garbage", "GET", map[string]string{"If-Modified-Since": "yesterday"}, 200},
		{"im match", "GET", map[string]string{"If-Match": e}, 200},
		{"im star", "GET", map[string]string{"If-Match": "*"}, 200},
		{"im list", "GET", map[string]string{"If-Match": `"x", ` + e}, 200},
		{"im other", "GET", map[string]string{"If-Match": `"x"`}, 412},
		{"im weak is not strong", "GET", map[string]string{"If-Match": weak}, 412},
		{"im beats ius", "GET", map[string]string{"If-Match": e, "If-Unmodified-Since": before}, 200},
		{"ius same", "GET", map[string]string{"If-Unmodified-Since": same}, 200},
		{"ius earlier", "GET", map[string]string{"If-Unmodified-Since": before}, 412},
		{"ius garbage", "GET", map[string]string{"If-Unmodified-Since": "soon"}, 200},
		{"im then inm", "GET", map[string]string{"If-Match": e, "If-None-Match": e}, 304},
		{"im fails first", "GET", map[string]string{"If-Match": `"x"`, "If-None-Match": e}, 412},
		{"ius fails first", "GET", map[string]string{"If-Unmodified-Since": before, "If-None-Match": e}, 412},
		{"head inm", "HEAD", map[string]string{"If-None-Match": e}, 304},
		{"head ims", "HEAD", map[string]string{"If-Modified-Since": same}, 304},
		{"head im other", "HEAD", map[string]string{"If-Match": `"x"`}, 412},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := o.do(t, c.method, "/static/app.css", c.h, nil)
			if r.status != c.want {
				t.Fatalf("status %d, want %d", r.status, c.want)
			}
			switch c.want {
			case 304:
				// RFC 9110 section 15.4.5: the validators and caching headers of the 200, no body.
				for k, v := range map[string]string{"ETag": e, "Last-Modified": same,
					"Cache-Control": "public, max-age=31536000, immutable", "Surrogate-Key": "static assets"} {
					if got := r.header.Get(k); got != v {
						t.Errorf("304 %s = %q, want %q", k, got, v)
					}
				}
				if len(r.body) != 0 || r.header.Get("Content-Type") != "" {
					t.Errorf("304 with body %q / type %q", r.body, r.header.Get("Content-Type"))
				}
			case 412:
				if r.header.Get("Cache-Control") != "no-store" || r.header.Get("ETag") != "" {
					t.Errorf("412 headers %v", r.header)
				}
			case 200:
				if c.method == "GET" && string(r.body) != "body{color:red}" {
					t.Errorf("body %q", r.body)
				}
			}
		})
	}
	// A missing file is a 404 whatever its preconditions say (RFC 9110 13.2.1).
	if r := o.do(t, "GET", "/static/none.css", map[string]string{"If-Match": "*"}, nil); r.status != 404 {
		t.Errorf("missing with If-Match: %d", r.status)
	}
}

// content is a 1000-byte body whose bytes tell their offset apart.
func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
		if i%100 == 0 {
			b[i] = byte('0' + i/100%10)
		}
	}
	return b
}

type part struct {
	from, to int // inclusive, as in Content-Range
}

func TestRangeMatrix(t *testing.T) {
	o := newTestOrigin(t, testRules, Options{})
	body := content(1000)
	o.write(t, "video/clip.mp4", body, lm)
	o.write(t, "empty.bin", nil, lm)
	e := o.do(t, "HEAD", "/video/clip.mp4", nil, nil).header.Get("ETag")
	sixteen := make([]string, 16)
	var sixteenParts []part
	for i := range sixteen {
		sixteen[i] = fmt.Sprintf("%d-%d", i*50, i*50+9)
		sixteenParts = append(sixteenParts, part{i * 50, i*50 + 9})
	}
	seventeen := append(append([]string{}, sixteen...), "900-909")

	cases := []struct {
		name   string
		path   string
		method string
		h      map[string]string
		status int
		parts  []part // 206: the ranges sent, in order
	}{
		{"first 100", "", "GET", map[string]string{"Range": "bytes=0-99"}, 206, []part{{0, 99}}},
		{"open end", "", "GET", map[string]string{"Range": "bytes=900-"}, 206, []part{{900, 999}}},
		{"suffix", "", "GET", map[string]string{"Range": "bytes=-100"}, 206, []part{{900, 999}}},
		{"suffix longer than body", "", "GET", map[string]string{"Range": "bytes=-5000"}, 206, []part{{0, 999}}},
		{"end past size", "", "GET", map[string]string{"Range": "bytes=990-5000"}, 206, []part{{990, 999}}},
		{"unit case", "", "GET", map[string]string{"Range": "Bytes=0-0"}, 206, []part{{0, 0}}},
		{"two", "", "GET", map[string]string{"Range": "bytes=0-9,20-29"}, 206, []part{{0, 9}, {20, 29}}},
		{"out of order", "", "GET", map[string]string{"Range": "bytes=500-509,0-9"}, 206, []part{{500, 509}, {0, 9}}},
		{"adjacent", "", "GET", map[string]string{"Range": "bytes=0-9,10-19"}, 206, []part{{0, 9}, {10, 19}}},
		{"first and last byte", "", "GET", map[string]string{"Range": "bytes=0-0,-1"}, 206, []part{{0, 0}, {999, 999}}},
		{"unsatisfiable one dropped", "", "GET", map[string]string{"Range": "bytes=0-9,2000-2010,20-29"}, 206, []part{{0, 9}, {20, 29}}},
		{"one of two satisfiable", "", "GET", map[string]string{"Range": "bytes=0-9,2000-"}, 206, []part{{0, 9}}},
		{"sixteen", "", "GET", map[string]string{"Range": "bytes=" + strings.Join(sixteen, ",")}, 206, sixteenParts},
		{"seventeen", "", "GET", map[string]string{"Range": "bytes=" + strings.Join(seventeen, ",")}, 416, nil},
		{"overlap", "", "GET", map[string]string{"Range": "bytes=0-99,50-149"}, 416, nil},
		{"duplicate", "", "GET", map[string]string{"Range": "bytes=0-9,0-9"}, 416, nil},
		{"whole twice", "", "GET", map[string]string{"Range": "bytes=0-,-1000"}, 416, nil},
		{"beyond end", "", "GET", map[string]string{"Range": "bytes=1000-"}, 416, nil},
		{"zero suffix", "", "GET", map[string]string{"Range": "bytes=-0"}, 416, nil},
		{"empty file", "/empty.bin", "GET", map[string]string{"Range": "bytes=0-"}, 416, nil},
		{"reversed is ignored", "", "GET", map[string]string{"Range": "bytes=9-0"}, 200, nil},
		{"garbage is ignored", "", "GET", map[string]string{"Range": "bytes=x-y"}, 200, nil},
		{"other unit is ignored", "", "GET", map[string]string{"Range": "items=0-9"}, 200, nil},
		{"head ignores range", "", "HEAD", map[string]string{"Range": "bytes=0-9"}, 200, nil},
		{"if-range etag", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": e}, 206, []part{{0, 9}}},
		{"if-range other etag", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": `"x"`}, 200, nil},
		{"if-range weak etag", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": "W/" + e}, 200, nil},
		{"if-range date", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": httpDate(lm)}, 206, []part{{0, 9}}},
		{"if-range older date", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": httpDate(lm.Add(-time.Second))}, 200, nil},
		{"if-range later date", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": httpDate(lm.Add(time.Second))}, 200, nil},
		{"if-range garbage", "", "GET", map[string]string{"Range": "bytes=0-9", "If-Range": "soon"}, 200, nil},
		{"if-range false beats 416", "", "GET", map[string]string{"Range": "bytes=5000-", "If-Range": `"x"`}, 200, nil},
		{"inm before range", "", "GET", map[string]string{"Range": "bytes=0-9", "If-None-Match": e}, 304, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path
			if path == "" {
				path = "/video/clip.mp4"
			}
			r := o.do(t, c.method, path, c.h, nil)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (body %q)", r.status, c.status, r.body)
			}
			size := "1000"
			if path == "/empty.bin" {
				size = "0"
			}
			switch c.status {
			case 200:
				if r.header.Get("Accept-Ranges") != "bytes" || r.header.Get("Content-Length") != size {
					t.Errorf("headers %v", r.header)
				}
				if c.method == "GET" && !bytes.Equal(r.body, body) {
					t.Errorf("200 body is not the whole file (%d bytes)", len(r.body))
				}
			case 416:
				if got := r.header.Get("Content-Range"); got != "bytes */"+size {
					t.Errorf("Content-Range %q", got)
				}
				if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Cdn-Cache-Control") != "" {
					t.Errorf("416 caching headers %v", r.header)
				}
			case 206:
				checkParts(t, r, body, c.parts)
				if r.header.Get("ETag") != e || r.header.Get("Cdn-Cache-Control") != "max-age=600" {
					t.Errorf("206 headers %v", r.header)
				}
			}
		})
	}
}

func checkParts(t *testing.T, r response, body []byte, want []part) {
	t.Helper()
	if cl, _ := strconv.Atoi(r.header.Get("Content-Length")); cl != len(r.body) {
		t.Fatalf("Content-Length %d, body %d bytes", cl, len(r.body))
	}
	cr := func(p part) string { return fmt.Sprintf("bytes %d-%d/%d", p.from, p.to, len(body)) }
	if len(want) == 1 {
		if got := r.header.Get("Content-Range"); got != cr(want[0]) {
			t.Fatalf("Content-Range %q, want %q", got, cr(want[0]))
		}
		if !bytes.Equal(r.body, body[want[0].from:want[0].to+1]) {
			t.Fatalf("body %q", r.body)
		}
		return
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	for i, w := range want {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got := p.Header.Get("Content-Range"); got != cr(w) {
			t.Fatalf("part %d Content-Range %q, want %q", i, got, cr(w))
		}
		if got := p.Header.Get("Content-Type"); got != "video/mp4" {
			t.Fatalf("part %d Content-Type %q", i, got)
		}
		b, _ := io.ReadAll(p)
		if !bytes.Equal(b, body[w.from:w.to+1]) {
			t.Fatalf("part %d body %q", i, b)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("after %d parts: %v", len(want), err)
	}
}

func TestHeadersAndTypes(t *testing.T) {
	o := newTestOrigin(t, testRules, Options{})
	files := map[string]string{
		"static/app.js": "js", "static/logo.png": "png", "page.html": "<p>", "docs/index.html": "<h1>",
		"video/a.mp4": "mp4", "model.glb": "glb", "data.unknownext": "?", "noext": "?", "UPPER.CSS": "c",
	}
	for name, data := range files {
		o.write(t, name, []byte(data), lm)
	}
	cases := []struct {
		path, ctype, cc, cdn, keys string
	}{
		{"/static/app.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "", "static assets"},
		{"/static/logo.png", "image/png", "public, max-age=31536000, immutable", "", "static assets"},
		{"/page.html", "text/html; charset=utf-8", "public, max-age=30", "", "html"},
		{"/docs/", "text/html; charset=utf-8", "public, max-age=30", "", "html"}, // the index matches *.html
		{"/video/a.mp4", "video/mp4", "public, max-age=60", "max-age=600", "video"},
		{"/model.glb", "model/gltf-binary", "", "", ""},
		{"/data.unknownext", "application/octet-stream", "", "", ""},
		{"/noext", "application/octet-stream", "", "", ""},
		{"/UPPER.CSS", "text/css; charset=utf-8", "", "", ""},
	}
	for _, c := range cases {
		for _, method := range []string{"GET", "HEAD"} {
			r := o.do(t, method, c.path, nil, nil)
			if r.status != 200 {
				t.Fatalf("%s %s: %d", method, c.path, r.status)
			}
			for k, v := range map[string]string{"Content-Type": c.ctype, "Cache-Control": c.cc, "CDN-Cache-Control": c.cdn,
				"Surrogate-Key": c.keys, "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff", "Last-Modified": httpDate(lm)} {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s %s: %s = %q, want %q", method, c.path, k, got, v)
				}
			}
			if r.header.Get("Content-Length") == "" || (method == "HEAD" && len(r.body) != 0) {
				t.Errorf("%s %s: length %q body %d", method, c.path, r.header.Get("Content-Length"), len(r.body))
			}
		}
	}

	// 404: the configured negative caching, and the rule's keys so a purge clears it.
	r := o.do(t, "GET", "/static/missing.js", nil, nil)
	if r.status != 404 || r.header.Get("Cache-Control") != "public, max-age=5" || r.header.Get("Surrogate-Key") != "static assets" {
		t.Errorf("404: %d %v", r.status, r.header)
	}
	// A directory without its slash redirects, keeping the query.
	r = o.do(t, "GET", "/docs?x=1", nil, nil)
	if r.status != 200 { // the client follows the redirect
		t.Errorf("/docs?x=1 followed: %d", r.status)
	}
	status, _ := o.raw(t, "GET", "/docs?x=1")
	if status != 301 {
		t.Errorf("/docs: %d, want 301", status)
	}
}

func TestMethods(t *testing.T) {
	o := newTestOrigin(t, nil, Options{})
	o.write(t, "a.txt", []byte("a"), lm)
	for _, m := range []string{"POST", "PATCH", "PUT", "DELETE", "TRACE", "PROPFIND"} {
		r := o.do(t, m, "/a.txt", nil, strings.NewReader("x"))
		if r.status != 405 || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Errorf("%s: %d Allow %q", m, r.status, r.header.Get("Allow"))
		}
	}
	r := o.do(t, "OPTIONS", "/a.txt", nil, nil)
	if r.status != 204 || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("OPTIONS: %d %q", r.status, r.header.Get("Allow"))
	}
	if got := o.counter(t, "verge_origin_requests_total", map[string]string{"method": "other", "code": "405"}); got != 4 {
		t.Errorf("405s counted as other: %v", got)
	}
	if got := o.counter(t, "verge_origin_requests_total", map[string]string{"method": "PUT", "code": "405"}); got != 1 {
		t.Errorf("PUT 405 counted: %v", got)
	}
}

// TestETagComputedOnce checks that a file's hash is computed once per
// version, that any change to the file gives a new ETag, and that
// concurrent first requests share one hash.
func TestETagComputedOnce(t *testing.T) {
	o := newTestOrigin(t, nil, Options{})
	o.write(t, "f.txt", []byte("version one"), lm)
	hashes := func() float64 { return o.counter(t, "verge_origin_etag_hashes_total", nil) }
	e1 := o.do(t, "GET", "/f.txt", nil, nil).header.Get("ETag")
	for range 5 {
		if e := o.do(t, "GET", "/f.txt", nil, nil).header.Get("ETag"); e != e1 {
			t.Fatalf("ETag changed without a change: %q %q", e1, e)
		}
	}
	if h := hashes(); h != 1 {
		t.Fatalf("%v hashes for one version", h)
	}
	if b := o.counter(t, "verge_origin_etag_hash_bytes_total", nil); b != float64(len("version one")) {
		t.Fatalf("hashed %v bytes", b)
	}

	// Same size, same mtime, new content written in place: the ctime still moves.
	o.write(t, "f.txt", []byte("version two"), lm)
	e2 := o.do(t, "GET", "/f.txt", nil, nil).header.Get("ETag")
	if e2 == e1 || hashes() != 2 {
		t.Fatalf("in-place rewrite: ETag %q -> %q, %v hashes", e1, e2, hashes())
	}
	// Replaced by rename with identical content: a new inode, the same hash.
	tmp := filepath.Join(o.root, "tmp")
	os.WriteFile(tmp, []byte("version two"), 0o644)
	os.Rename(tmp, filepath.Join(o.root, "f.txt"))
	if e := o.do(t, "GET", "/f.txt", nil, nil).header.Get("ETag"); e != e2 || hashes() != 3 {
		t.Fatalf("same content, new inode: ETag %q (want %q), %v hashes", e, e2, hashes())
	}

	// Concurrent first requests: one hash, every request waits for it.
	o.write(t, "g.txt", bytes.Repeat([]byte("g"), 1<<20), lm)
	const n = 8
	gate, waiting := make(chan struct{}), make(chan struct{}, n)
	o.metas.beforeHash = func() { <-gate }
	o.metas.onWait = func() { waiting <- struct{}{} }
	etags := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			etags <- o.do(t, "GET", "/g.txt", nil, nil).header.Get("ETag")
		})
	}
	for range n - 1 {
		<-waiting
	}
	close(gate)
	wg.Wait()
	close(etags)
	first := ""
	for e := range etags {
		if first == "" {
			first = e
		}
		if e != first || e == "" {
			t.Fatalf("concurrent ETags differ: %q %q", first, e)
		}
	}
	if h := hashes(); h != 4 {
		t.Fatalf("%d concurrent requests hashed %v times in all (want 4)", n, h)
	}
}

func TestLastModifiedNotInFuture(t *testing.T) {
	o := newTestOrigin(t, nil, Options{})
	o.write(t, "future.txt", []byte("x"), fixedNow.Add(48*time.Hour))
	r := o.do(t, "GET", "/future.txt", nil, nil)
	if got := r.header.Get("Last-Modified"); got != httpDate(fixedNow) {
		t.Fatalf("Last-Modified %q, want the clock's %q", got, httpDate(fixedNow))
	}
	r = o.do(t, "GET", "/future.txt", map[string]string{"If-Modified-Since": httpDate(fixedNow)}, nil)
	if r.status != 304 {
		t.Fatalf("IMS now: %d", r.status)
	}
}

func TestDelay(t *testing.T) {
	rec := &recordSleep{got: make(chan time.Duration, 10)}
	o := newTestOrigin(t, testRules, Options{Sleep: rec.sleep})
	o.write(t, "slow/x.txt", []byte("slow"), lm)
	o.write(t, "fast.txt", []byte("fast"), lm)
	for _, c := range []struct {
		path   string
		status int
		delay  time.Duration
	}{
		{"/slow/x.txt", 200, 250 * time.Millisecond},
		{"/slow/missing", 404, 250 * time.Millisecond},
		{"/fast.txt", 200, 0},
	} {
		r := o.do(t, "GET", c.path, nil, nil)
		if r.status != c.status {
			t.Fatalf("%s: %d", c.path, r.status)
		}
		var got time.Duration
		select {
		case got = <-rec.got:
		default:
		}
		if got != c.delay {
			t.Errorf("%s: delayed %v, want %v", c.path, got, c.delay)
		}
	}

	// A client that leaves during the delay is counted as 499.
	done := make(chan struct{})
	released := make(chan struct{})
	o2 := newTestOrigin(t, testRules, Options{Sleep: func(ctx context.Context, d time.Duration) error {
		close(released)
		<-ctx.Done()
		return ctx.Err()
	}})
	inner := o2.ts.Config.Handler
	o2.ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		close(done)
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", o2.url+"/slow/x.txt", nil)
	go func() { <-released; cancel() }()
	if _, err := o2.ts.Client().Do(req); err == nil {
		t.Fatal("request survived its cancellation")
	}
	<-done
	if got := o2.counter(t, "verge_origin_requests_total", map[string]string{"code": "499"}); got != 1 {
		t.Fatalf("499s: %v", got)
	}

	// The real sleeper stops as soon as its context does.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := sleepCtx(cctx, time.Hour); err == nil {
		t.Fatal("sleepCtx ignored a done context")
	}
}

func TestMetrics(t *testing.T) {
	o := newTestOrigin(t, nil, Options{})
	o.write(t, "a.txt", content(1000), lm)
	o.do(t, "GET", "/a.txt", nil, nil)
	o.do(t, "GET", "/a.txt", map[string]string{"Range": "bytes=0-9"}, nil)
	o.do(t, "HEAD", "/a.txt", nil, nil)
	o.do(t, "GET", "/none", nil, nil)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"method": "GET", "code": "200"}, 1},
		{map[string]string{"method": "GET", "code": "206"}, 1},
		{map[string]string{"method": "HEAD", "code": "200"}, 1},
		{map[string]string{"method": "GET", "code": "404"}, 1},
	} {
		if got := o.counter(t, "verge_origin_requests_total", c.labels); got != c.want {
			t.Errorf("requests %v: %v, want %v", c.labels, got, c.want)
		}
	}
	if got := o.counter(t, "verge_origin_response_bytes_total", nil); got != 1000+10+float64(len("404 not found\n")) {
		t.Errorf("response bytes %v", got)
	}
	if got := o.counter(t, "verge_origin_request_duration_seconds", nil); got != 4 {
		t.Errorf("duration samples %v", got)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("  0123456789abcdef-token \n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ok", func(c *Config) {}, ""},
		{"token file", func(c *Config) { c.Upload.TokenFile = tokenFile }, ""},
		{"missing root", func(c *Config) { c.Root = filepath.Join(dir, "nope") }, "origin: root"},
		{"root is a file", func(c *Config) { c.Root = file }, "origin: root"},
		{"missing token file", func(c *Config) { c.Upload.TokenFile = filepath.Join(dir, "none") }, "upload.token_file"},
		{"short token file", func(c *Config) { c.Upload.TokenFile = short }, "too short"},
		{"invalid", func(c *Config) { c.MaxRanges = 0 }, "max_ranges"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Root = dir
			c.edit(&cfg)
			s, err := New(cfg, Options{})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Healthy(); err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
