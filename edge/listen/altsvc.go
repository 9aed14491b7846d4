package listen

import (
	"net/http"
	"strconv"
)

// AltSvc wraps h so every response advertises HTTP/3 on port (RFC 7838).
// The value is built once; upstream Alt-Svc fields never reach clients
// (the engine drops them), so this one is the only one.
func AltSvc(h http.Handler, port int) http.Handler {
	v := []string{`h3=":` + strconv.Itoa(port) + `"; ma=86400`}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Alt-Svc"] = v
		h.ServeHTTP(w, r)
	})
}
