package distribution

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/vergecdn/verge/distribution/balance"
	"github.com/vergecdn/verge/distribution/health"
	"github.com/vergecdn/verge/edge/cachekey"
)

// Options are what NewParents and NewPool take besides the configuration.
type Options struct {
	// Name labels the metrics (pool="...") and the logs. Default "parents"
	// for NewParents, "pool" for NewPool; give each one in a process its own.
	Name string
	// Transport sends the requests. Default: an http.Transport with the
	// config's timeouts that ignores proxy settings and never rewrites
	// Accept-Encoding.
	Transport http.RoundTripper
	// ProbeClient sends the health probes. Default: the health package's.
	ProbeClient *http.Client
	// Log receives failovers and health changes. Default: discard.
	Log *slog.Logger
	// Now is the clock for response times. Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults(name string) Options {
	if o.Name == "" {
		o.Name = name
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Health is what forwarding needs from a health checker;
// *health.Checker is one.
type Health interface {
	Healthy(name string) bool
	ReportFailure(name string)
	ReportSuccess(name string)
}

var _ Health = (*health.Checker)(nil)

// NewTransport returns the transport Parents and Pool use by default.
func NewTransport(connectTimeout, responseTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // upstreams are reached directly, whatever the environment says
		DialContext:           (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connectTimeout + 3*time.Second,
		ResponseHeaderTimeout: responseTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
	}
}

// upstream is one place a request can go: a hub, a backend or the origin.
type upstream struct {
	name    string
	index   int      // position in the ring or policy; -1 for the origin
	base    *url.URL // scheme and host to send to; nil: the request's own URL
	checked bool     // tracked by the health checker
	m       upstreamMetrics
}

func newUpstream(name, rawURL string, index int, checked bool, m *metrics) (*upstream, error) {
	up := &upstream{name: name, index: index, checked: checked, m: m.forUpstream(name)}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, fmt.Errorf("distribution: upstream %q: %w", name, err)
		}
		up.base = u
	}
	return up, nil
}

// rewrite returns a shallow copy of req aimed at up, keeping the Host header,
// path and query. The copy shares the header map and body with req (neither
// is modified).
func (up *upstream) rewrite(req *http.Request) *http.Request {
	out := new(http.Request)
	*out = *req
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	if up.base != nil {
		u := *req.URL
		u.Scheme, u.Host = up.base.Scheme, up.base.Host
		out.URL = &u
	}
	return out
}

// forwarder sends a request to a sequence of upstreams until one answers.
type forwarder struct {
	name    string
	rt      http.RoundTripper
	health  Health
	tracker balance.Tracker // nil unless the policy learns from traffic
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
}

// canRetry reports whether req may be sent to another upstream after a
// failure: only GET and HEAD, and only without a body, so a body is never
// sent twice.
func canRetry(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == "") &&
		(req.Body == nil || req.Body == http.NoBody)
}

var errNoUpstream = errors.New("no upstream available")

// do tries the upstreams next yields, in order, and returns the first
// answer. A transport error marks the upstream (passive health) and moves on;
// so does a 5xx from an upstream the checker now holds down, though that
// answer is kept and returned if nothing else answers. Only requests that
// canRetry get a second upstream.
func (f *forwarder) do(req *http.Request, next func() *upstream) (*http.Response, error) {
	retry := canRetry(req)
	var (
		prev    *upstream
		held    *http.Response // 5xx from an upstream marked down
		lastErr error
	)
	for {
		up := next()
		if up == nil {
			break
		}
		if prev == nil {
			up.m.picks.Inc()
		} else {
			prev.m.failover.Inc()
			f.log.Info("distribution: failover", "pool", f.name, "from", prev.name, "to", up.name,
				"method", req.Method, "host", req.Host, "path", req.URL.Path)
		}
		prev = up
		resp, err := f.send(req, up)
		if err != nil {
			if ctxErr := req.Context().Err(); ctxErr != nil {
				// The caller gave up; that says nothing about the upstream.
				discard(held)
				return nil, fmt.Errorf("distribution: %s: %s: %w", f.name, up.name, err)
			}
			if up.checked {
				f.health.ReportFailure(up.name)
			}
			f.log.Warn("distribution: upstream failed", "pool", f.name, "upstream", up.name, "err", err)
			lastErr = fmt.Errorf("%s: %w", up.name, err)
			if !retry {
				break
			}
			continue
		}
		if resp.StatusCode >= 500 && up.checked && retry && !f.health.Healthy(up.name) {
			discard(held)
			held = resp
			lastErr = fmt.Errorf("%s: status %d while marked down", up.name, resp.StatusCode)
			continue
		}
		if up.checked && resp.StatusCode < 500 {
			f.health.ReportSuccess(up.name)
		}
		discard(held)
		return resp, nil
	}
	if held != nil {
		return held, nil
	}
	f.m.exhausted.Inc()
	if prev == nil && req.Body != nil {
		req.Body.Close() // a RoundTripper closes the body even when it sends nothing
	}
	if lastErr == nil {
		lastErr = errNoUpstream
	}
	return nil, fmt.Errorf("distribution: %s: no upstream answered %s %s%s: %w", f.name, req.Method, req.Host, req.URL.Path, lastErr)
}

// send makes one attempt and records it.
func (f *forwarder) send(req *http.Request, up *upstream) (*http.Response, error) {
	out := up.rewrite(req)
	tracked := f.tracker != nil && up.index >= 0
	if tracked {
		f.tracker.Begin(up.index)
	}
	start := f.now()
	resp, err := f.rt.RoundTrip(out)
	rtt := f.now().Sub(start)
	up.m.duration.Observe(rtt.Seconds())
	if err != nil {
		up.m.requests[0].Inc()
		if tracked {
			f.tracker.Done(up.index)
		}
		return nil, err
	}
	class := resp.StatusCode / 100
	if class < 1 || class > 5 {
		class = 5
	}
	up.m.requests[class].Inc()
	if tracked {
		f.tracker.Observe(up.index, rtt)
		resp.Body = &doneBody{ReadCloser: resp.Body, done: func() { f.tracker.Done(up.index) }}
	}
	return resp, nil
}

// doneBody calls done once, when the body is closed: a request holds its
// backend until its body is consumed.
type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// discard drops a response that will not be returned.
func discard(resp *http.Response) {
	if resp != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

// requestKey is the key parent selection and url_hash hash: the cache key
// the edge put in the context, else host + path and query.
func requestKey(req *http.Request) string {
	if k, ok := cachekey.FromContext(req.Context()); ok {
		return k
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	return host + req.URL.RequestURI()
}
