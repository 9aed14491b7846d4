package scrubber

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

// Proxy returns the handler that forwards admitted requests upstream: to
// target's scheme and host, through rt (a plain http.Transport to one edge,
// or a pool that picks among several and rewrites the host itself). It
// keeps the client's Host header, appends the client to X-Forwarded-For
// (and sets X-Forwarded-Host and -Proto), drops hop-by-hop headers, streams
// bodies both ways, and answers 502 (the upstream failed) or 504 (it timed
// out) with a short body when the upstream does not answer.
func (s *Scrubber) Proxy(target *url.URL, rt http.RoundTripper) http.Handler {
	t := *target
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&t)
			pr.Out.Host = pr.In.Host
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
			if bodyless(pr.In.Method) {
				// An upstream that ignores a GET's body would read it as
				// its next request (CL.0 smuggling); the front end still
				// reads it off the client connection.
				pr.Out.Body, pr.Out.ContentLength, pr.Out.TransferEncoding = nil, 0, nil
			}
		},
		Transport:    rt,
		BufferPool:   proxyBuffers{},
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: s.upstreamError,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" {
			asterisk(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// bodyless are the methods whose request content is not forwarded: it has
// no defined meaning on GET and HEAD (RFC 9110 section 9.3), and TRACE must
// carry none.
func bodyless(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodTrace:
		return true
	}
	return false
}

// asterisk answers a request for the target "*": a server-wide OPTIONS gets
// an empty 200, as net/http's own server gives it (forwarded, it would have
// become a request for the path "/*"); any other method is malformed (RFC
// 9112 section 3.2.4).
func asterisk(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodOptions {
		http.Error(w, "400 bad request: the target * is for OPTIONS only", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

var (
	body502 = []byte("502 bad gateway: the upstream failed\n")
	body504 = []byte("504 gateway timeout: the upstream did not answer in time\n")
)

// upstreamError turns a failed upstream exchange into 502 or 504, counted,
// with at most one sampled log line per 10 s.
func (s *Scrubber) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	code, body := http.StatusBadGateway, body502
	if isTimeout(err) && r.Context().Err() == nil {
		code, body = http.StatusGatewayTimeout, body504
	}
	if r.Context().Err() == nil { // not the client going away
		s.m.upstreamErrors.WithLabelValues(statusLabel(code)).Inc()
		now := s.nowNanos()
		if next := s.upLog.Load(); now >= next && s.upLog.CompareAndSwap(next, now+rejectLogEvery) {
			s.log.Warn("scrubber: upstream failed (one sampled line per 10s)", "status", code,
				"host", r.Host, "path", r.URL.Path, "err", err)
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body)
}

func statusLabel(code int) string {
	if code == http.StatusGatewayTimeout {
		return "504"
	}
	return "502"
}

// proxyBuffers pools the proxy's copy buffers.
type proxyBuffers struct{}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (proxyBuffers) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (proxyBuffers) Put(b []byte) { bufPool.Put(&b) }
