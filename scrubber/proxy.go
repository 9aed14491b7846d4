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
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&t)
			pr.Out.Host = pr.In.Host
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
		},
		Transport:    rt,
		BufferPool:   proxyBuffers{},
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: s.upstreamError,
	}
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
