package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// PreloadResult is the outcome of preloading one URL on one node.
type PreloadResult struct {
	URL    string `json:"url"`
	Status int    `json:"status,omitempty"` // status of the stored (or relayed) response
	Cache  string `json:"cache,omitempty"`  // this node's Cache-Status entry
	Bytes  int64  `json:"bytes"`
	Error  string `json:"error,omitempty"`
}

// maxPreloadURLs bounds one preload request.
const maxPreloadURLs = 10000

// preloadWorkers is how many URLs one node fills at once.
const preloadWorkers = 8

// Preload fetches each URL through this node's cache as a client GET would,
// so it is stored here and, through the fill, at every tier above. Preloads
// are not counted as client traffic. progress, if not nil, is called after
// each URL (from several goroutines).
func (e *Engine) Preload(ctx context.Context, urls []string, progress func(PreloadResult)) []PreloadResult {
	out := make([]PreloadResult, len(urls))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(preloadWorkers, len(urls)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = e.preloadOne(ctx, urls[i])
				if progress != nil {
					progress(out[i])
				}
			}
		}()
	}
	for i := range urls {
		select {
		case next <- i:
		case <-ctx.Done():
			for j := i; j < len(urls); j++ {
				out[j] = PreloadResult{URL: urls[j], Error: ctx.Err().Error()}
			}
			close(next)
			wg.Wait()
			return out
		}
	}
	close(next)
	wg.Wait()
	return out
}

func (e *Engine) preloadOne(ctx context.Context, raw string) PreloadResult {
	res := PreloadResult{URL: raw}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		res.Error = "not an absolute http(s) URL"
		return res
	}
	p := e.property(u.Host)
	if p == nil {
		res.Error = "unknown host: no property serves " + safeHost(u.Host)
		return res
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.RemoteAddr = "127.0.0.1:0"
	req.RequestURI = u.RequestURI()
	w := &countingWriter{h: http.Header{}}
	o := e.serveCacheable(w, req, p, e.now())
	res.Status, res.Bytes = o.status, w.n
	if cs := w.h.Values("Cache-Status"); len(cs) > 0 {
		res.Cache = cs[len(cs)-1]
	}
	return res
}

// countingWriter is a ResponseWriter that discards the body and counts it.
type countingWriter struct {
	h    http.Header
	code int
	n    int64
}

func (c *countingWriter) Header() http.Header         { return c.h }
func (c *countingWriter) WriteHeader(code int)        { c.code = code }
func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// PreloadRequest is the body of POST /preload.
type PreloadRequest struct {
	URLs []string `json:"urls"`
}

// PreloadResponse is the answer to POST /preload.
type PreloadResponse struct {
	Node    string          `json:"node"`
	Results []PreloadResult `json:"results"`
	Took    time.Duration   `json:"took_ns"`
}

// ParsePreload decodes and checks a preload request body.
func ParsePreload(body []byte) (PreloadRequest, error) {
	var p PreloadRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("bad preload request: %v", err)
	}
	if dec.More() {
		return p, errors.New("bad preload request: trailing data after the JSON object")
	}
	if len(p.URLs) == 0 {
		return p, errors.New(`bad preload request: "urls" must list at least one URL`)
	}
	if len(p.URLs) > maxPreloadURLs {
		return p, fmt.Errorf("bad preload request: more than %d URLs", maxPreloadURLs)
	}
	for _, raw := range p.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return p, fmt.Errorf("bad preload request: %q is not an absolute http(s) URL", raw)
		}
	}
	return p, nil
}

func (e *Engine) handlePreload(w http.ResponseWriter, r *http.Request) {
	body, ok := e.adminBody(w, r, 8<<20)
	if !ok {
		return
	}
	p, err := ParsePreload(body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	start := e.now()
	res := e.Preload(r.Context(), p.URLs, nil)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(PreloadResponse{Node: e.name, Results: res, Took: e.now().Sub(start)})
}
