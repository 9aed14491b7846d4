package edge

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Regression cases for defects the attack corpora in cmd/verge found.

// A GET, HEAD or TRACE body is never sent upstream: an origin that ignores
// the body of a GET would read it as its next request (CL.0 smuggling).
// Other methods keep theirs.
func TestBodylessMethodsForwardNoBody(t *testing.T) {
	bodies := make(chan string, 8)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- r.Method + " " + r.Header.Get("Content-Length") + " " + string(b)
		w.Header().Set("Cache-Control", "no-store")
	})
	te := newEdge(t, o.URL, nil)
	hidden := "GET /smuggled HTTP/1.1\r\nHost: www.example.test\r\n\r\n"
	for _, c := range []struct{ method, want string }{
		{http.MethodGet, "GET  "},
		{http.MethodHead, "HEAD  "},
		{http.MethodPost, "POST 50 " + hidden},
		{http.MethodDelete, "DELETE 50 " + hidden},
	} {
		// no-store: a GET is passed through rather than filled
		te.do(t, c.method, "/b", strings.NewReader(hidden), "Cache-Control", "no-store")
		if got := <-bodies; got != c.want {
			t.Errorf("%s: origin got %q, want %q", c.method, got, c.want)
		}
	}
}
