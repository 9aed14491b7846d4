package origin

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testOrigin is a Server on a real loopback listener.
type testOrigin struct {
	*Server
	url  string
	root string
	reg  *prometheus.Registry
	ts   *httptest.Server
}

// fixedNow is the injected clock of test servers: well after any file's mtime.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestOrigin starts a Server over a fresh root. edit adjusts the config.
func newTestOrigin(t testing.TB, edit func(*Config), opts Options) *testOrigin {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Root = t.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return &testOrigin{Server: s, url: ts.URL, root: cfg.Root, reg: reg, ts: ts}
}

// write puts a file under the root with a fixed mtime.
func (o *testOrigin) write(t testing.TB, name string, data []byte, mtime time.Time) {
	t.Helper()
	p := filepath.Join(o.root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request and reads the whole answer.
func (o *testOrigin) do(t *testing.T, method, path string, header map[string]string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, o.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := o.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

// raw sends a request line byte for byte (no client normalizes it) and
// returns the status and body.
func (o *testOrigin) raw(t *testing.T, method, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(o.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, method+" "+target+" HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// counter sums a metric's series whose labels include want.
func (o *testOrigin) counter(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// recordSleep is an Options.Sleep that records delays instead of waiting.
type recordSleep struct {
	got chan time.Duration
}

func (r *recordSleep) sleep(ctx context.Context, d time.Duration) error {
	r.got <- d
	return ctx.Err()
}
