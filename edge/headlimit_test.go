package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHeadOverTheLimitIs431 serves the engine behind a server that reads
// heads of up to 1 MiB (as HTTP/2 and HTTP/3 servers may decode more than
// limits.max_header_bytes): the engine itself refuses a head over the limit.
func TestHeadOverTheLimitIs431(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	te := newEdge(t, o.URL, func(c *Config) { c.Limits.MaxHeaderBytes = 32 << 10 })
	srv := httptest.NewUnstartedServer(te.Engine)
	srv.Config.MaxHeaderBytes = 1 << 20
	srv.Start()
	defer srv.Close()
	for _, c := range []struct {
		fields, size int
		want         int
	}{
		{12, 2 << 10, 200}, // 24 KiB
		{15, 2 << 10, 200}, // 30 KiB
		{17, 2 << 10, 431}, // 34 KiB
		{20, 2 << 10, 431}, // 40 KiB
		{60, 4 << 10, 431}, // 240 KiB
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
		req.Host = "www.example.test"
		for i := range c.fields {
			req.Header.Set(fmt.Sprintf("X-Pad-%03d", i), strings.Repeat("v", c.size))
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%d fields of %d bytes: %d, want %d", c.fields, c.size, res.StatusCode, c.want)
		}
	}
}
