package edge

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vergecdn/verge/edge/cachekey"
	"github.com/vergecdn/verge/edge/cachepolicy"
	"github.com/vergecdn/verge/edge/storage"
)

// untrustedFromClients are request fields a node drops from clients: origins
// may trust them to build URLs or pick methods, and they are not in the cache
// key, so honouring them would let one client poison the cache for others.
var untrustedFromClients = []string{
	"X-Forwarded-Host", "X-Forwarded-Server", "X-Forwarded-Proto", "X-Forwarded-Scheme", "X-Forwarded-Port",
	"X-Forwarded-Ssl", "Front-End-Https", "X-Url-Scheme", "X-Forwarded-Prefix", "X-Forwarded-Uri",
	"X-Original-Url", "X-Original-Uri", "X-Rewrite-Url", "X-Original-Host",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	"Forwarded", "X-Host",
}

// conditionalFields are dropped from fills: the cache wants the whole
// response to store, and answers the client's conditions itself.
var conditionalFields = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

// upstreamRequest builds the request to the next tier for r. A fill (cache
// true) is a GET without the client's conditions and range.
func (e *Engine) upstreamRequest(ctx context.Context, r *http.Request, p *property, key, method string, fill bool) *http.Request {
	u := *p.upstream
	u.Path = strings.TrimSuffix(p.upstream.Path, "/") + r.URL.Path
	u.RawPath = ""
	if r.URL.RawPath != "" {
		u.RawPath = strings.TrimSuffix(p.upstream.EscapedPath(), "/") + r.URL.RawPath
	}
	if p.key.Query {
		u.RawQuery = r.URL.RawQuery
	}
	h := cleanHeader(r.Header, nil)
	// Hubs drop them too: an edge never sends them, so at a hub they come
	// from a client that reached it directly, and a hub's cache serves
	// every edge of its region.
	for _, k := range untrustedFromClients {
		delete(h, k)
	}
	if fill {
		for _, k := range conditionalFields {
			delete(h, k)
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		// An edge starts the chain: what a client claims is not evidence.
		// A hub appends the edge's address to the edge's list.
		if prior := h["X-Forwarded-For"]; len(prior) > 0 && e.role == RoleHub {
			h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		} else {
			h["X-Forwarded-For"] = []string{ip}
		}
	}
	h["Via"] = append(slices.Clip(h["Via"]), e.via)
	// The Host sent upstream is the one the cache key holds (lower case,
	// no port, no trailing dot): an origin that builds links from a Host
	// the key does not tell apart would poison the page for the others.
	host := cachekey.Host(r.Host)
	if p.toOrigin && p.hostOut != "" {
		host = p.hostOut
	}
	out := &http.Request{
		Method:     method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       host,
	}
	if !fill && r.Body != nil && r.Body != http.NoBody && !bodyless(method) {
		out.Body = r.Body
		out.ContentLength = r.ContentLength
		if r.ContentLength == 0 {
			out.ContentLength = -1
		}
	}
	return out.WithContext(cachekey.NewContext(ctx, key))
}

// bodyless are the methods whose request content is never forwarded. A
// body on GET or HEAD has no defined meaning (RFC 9110 section 9.3), and
// an origin that ignores one would read it as the next request on the
// connection (CL.0 smuggling); TRACE must not carry one at all.
func bodyless(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodTrace:
		return true
	}
	return false
}

// upstreamError answers a failed upstream exchange: 504 for a timeout, 502
// otherwise.
func (e *Engine) upstreamError(w http.ResponseWriter, err error) outcome {
	e.stats.upstreamErrors.Add(1)
	code, msg := http.StatusBadGateway, "upstream unreachable"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		code, msg = http.StatusGatewayTimeout, "upstream timed out"
	}
	e.log.Debug("upstream failed", "err", err)
	e.plainError(w, code, msg)
	return outcome{result: resError, status: code}
}

// relay streams a response that is not stored to the client. A 200 still
// answers the client's conditions and ranges.
func (e *Engine) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, stale *storage.Object, dirs *cachepolicy.Directives, entry string, res result) outcome {
	defer resp.Body.Close()
	now := e.now()
	if staleErrorStatus(resp.StatusCode) && stale != nil {
		st := storedOf(stale)
		if cachepolicy.ServeStaleOnError(&st, dirs, now) {
			return e.serveObject(w, r, stale, nil, e.status.staleError, resStale, now)
		}
	}
	h := w.Header()
	for k, v := range cleanHeader(resp.Header, nil) {
		h[k] = v
	}
	if e.role == RoleEdge {
		delete(h, "Verge-Cache-Control")
	}
	h["Via"] = append(slices.Clip(h["Via"]), e.via)
	h["Cache-Status"] = appendStatus(resp.Header["Cache-Status"], entry)
	if resp.StatusCode == http.StatusOK && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		cachepolicy.NotModified(r.Header, resp.Header, now) {
		stripFor304(h)
		w.WriteHeader(http.StatusNotModified)
		return outcome{result: res, status: http.StatusNotModified}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead || !bodyAllowed(resp.StatusCode) {
		return outcome{result: res, status: resp.StatusCode}
	}
	n, err := copyFlush(w, resp.Body)
	if err != nil {
		e.log.Debug("relay interrupted", "err", err)
		panic(http.ErrAbortHandler) // never let a truncated body look whole
	}
	return outcome{result: res, status: resp.StatusCode, bytes: n}
}

// passThrough forwards a GET or HEAD without using or filling the cache.
func (e *Engine) passThrough(w http.ResponseWriter, r *http.Request, p *property, key string, entry string) outcome {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := e.upstreamRequest(ctx, r, p, key, r.Method, false)
	p.stats.upstreamRequests.Add(1)
	resp, err := e.transport.RoundTrip(out)
	if err != nil {
		return e.upstreamError(w, err)
	}
	p.stats.upstreamStatus(resp.StatusCode)
	return e.relay(w, r, resp, nil, &noDirectives, entry, resPass)
}

// forward sends a request with any other method upstream, and after a
// successful unsafe one invalidates what it changed (RFC 9111 section 4.4).
func (e *Engine) forward(w http.ResponseWriter, r *http.Request, p *property, _ time.Time) outcome {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	key := p.key.Build(cachekey.Host(r.Host), r.URL.EscapedPath(), r.URL.RawQuery, r.Header) // picks the hub
	out := e.upstreamRequest(ctx, r, p, key, r.Method, false)
	p.stats.upstreamRequests.Add(1)
	resp, err := e.transport.RoundTrip(out)
	if err != nil {
		return e.upstreamError(w, err)
	}
	p.stats.upstreamStatus(resp.StatusCode)
	if unsafeMethod(r.Method) && resp.StatusCode >= 200 && resp.StatusCode < 400 {
		e.invalidateAfter(r, p, resp)
	}
	return e.relay(w, r, resp, nil, &noDirectives, e.status.bypassMethod, resPass)
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// invalidateAfter removes the target URI and the same-host URIs in Location
// and Content-Location.
func (e *Engine) invalidateAfter(r *http.Request, p *property, resp *http.Response) {
	host := cachekey.Host(r.Host)
	e.invalidate(p.key.Build(host, r.URL.EscapedPath(), r.URL.RawQuery, r.Header))
	for _, f := range []string{"Location", "Content-Location"} {
		v := resp.Header.Get(f)
		if v == "" {
			continue
		}
		ref, err := url.Parse(v)
		if err != nil {
			continue
		}
		u := r.URL.ResolveReference(ref)
		if u.Host != "" && cachekey.Host(u.Host) != host {
			continue // another host: not ours to invalidate
		}
		e.invalidate(p.key.Build(host, u.EscapedPath(), u.RawQuery, r.Header))
	}
}

// staleErrorStatus are the upstream answers that count as errors for
// stale-if-error (RFC 5861 section 4).
func staleErrorStatus(code int) bool {
	switch code {
	case 500, 502, 503, 504:
		return true
	}
	return false
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// copyBufs are copyFlush's buffers: a relayed response need not allocate
// (and clear) 32 KiB.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyFlush copies src to w, flushing after each read when src is slow, so
// streamed responses reach the client as they arrive.
func copyFlush(w http.ResponseWriter, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, nil // the client went away; nothing to report
			}
			if k < len(buf) {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
