package scrubber

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// Regression cases for what the smuggling corpus (cmd/verge) found in the
// proxy, behind both front ends.

// A GET, HEAD or TRACE body is read off the client connection but never
// sent upstream: an upstream that ignores a GET's body would take it for
// its next request (CL.0). The target * is answered, never forwarded.
func TestProxyDropsBodiesOfBodylessMethods(t *testing.T) {
	serveBoth(t, nil, func(t *testing.T, env *testEnv, serve func(http.Handler) string) {
		got := make(chan string, 8)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- r.Method + " " + r.RequestURI + " " + string(b)
		}))
		defer up.Close()
		addr := serve(env.s.Proxy(upstreamURL(t, up), &http.Transport{}))
		c := dialRaw(t, addr)
		hidden := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
		for _, m := range []string{"GET", "HEAD", "POST"} {
			c.send(m + " /b HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(hidden)) + "\r\n\r\n" + hidden)
			if resp, _ := c.response(m); resp.StatusCode != 200 {
				t.Fatalf("%s: %d", m, resp.StatusCode)
			}
			want := m + " /b "
			if m == "POST" {
				want += hidden
			}
			if g := <-got; g != want {
				t.Errorf("upstream got %q, want %q", g, want)
			}
		}
		c.send("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.response("OPTIONS"); resp.StatusCode != 200 {
			t.Errorf("OPTIONS *: %d", resp.StatusCode)
		}
		c.send("GET * HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != 400 {
			t.Errorf("GET *: %d", resp.StatusCode)
		}
		select {
		case g := <-got:
			t.Errorf("the target * reached the upstream: %q", g)
		default:
		}
	})
}
