package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vergecdn/verge/edge/cachekey"
	"github.com/vergecdn/verge/edge/cachepolicy"
	"github.com/vergecdn/verge/edge/storage"
)

// Store is what the engine needs from storage.
type Store interface {
	Get(key string) (*storage.Object, bool)
	Put(o *storage.Object) bool
	Delete(key string) bool
	Range(fn func(*storage.Object) bool)
}

var (
	_ Store = (*storage.RAM)(nil)
	_ Store = (*storage.Tiered)(nil)
)

// Options are the engine's collaborators; zero values get defaults.
type Options struct {
	// Transport carries requests to the next tier. Default: an
	// http.Transport tuned from Config.UpstreamHTTP.
	Transport http.RoundTripper
	// Store holds cached objects. Default: the tiers of Config.Cache
	// (storage.Open), which the engine closes in Close.
	Store Store
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Engine is the cache engine of one node. It is an http.Handler for the
// public listener; Admin returns the handler for the admin listener.
type Engine struct {
	cfg       Config
	role      Role
	name      string
	routes    atomic.Pointer[routing] // swapped whole by Reload
	store     Store
	tiered    *storage.Tiered // the store when the engine opened it (nil: given in Options)
	transport http.RoundTripper
	now       func() time.Time
	log       *slog.Logger
	fills     fillTable
	pass      *hitForPass
	stats     *Stats
	status    statusStrings
	via       string
	varyGen   atomic.Uint64
	// purgeEpoch counts purges; a fill that began before a purge does not
	// store what it fetched, so a purge can never be undone by a fill in flight.
	purgeEpoch atomic.Uint64
	purgeMu    sync.RWMutex // held for writing to bump purgeEpoch, for reading around a fill's store
	token      string
	boundary   string
	maxObject  int64
	ready      atomic.Bool
}

// routing maps hosts to properties; it is immutable once built.
type routing struct {
	hosts    map[string]*property
	wildcard *property
	limits   LimitsConfig
}

// property is a configured property, prepared for the request path.
type property struct {
	name     string
	origin   *url.URL // base URL of the origin
	upstream *url.URL // where misses go: the hub, or the origin
	toOrigin bool     // upstream is the origin, so OriginHost applies
	hostOut  string   // Host sent upstream instead of the client's, if set
	key      cachekey.Spec
	policy   cachepolicy.Options
	honorReq bool
	stats    *propStats
}

// New builds an engine from a validated config.
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e := &Engine{cfg: cfg, role: cfg.Role, now: opts.Now, log: opts.Logger, store: opts.Store, transport: opts.Transport}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.name = cfg.Node.Name
	if e.name == "" {
		h, _ := os.Hostname()
		e.name = h
	}
	if e.name == "" {
		e.name = "verge"
	}
	e.maxObject = int64(cfg.Cache.MaxObjectBytes)
	if e.store == nil {
		st, err := storage.Open(context.Background(), cfg.Cache.Config, storage.Options{Logger: e.log, Now: e.now})
		if err != nil {
			return nil, fmt.Errorf("edge: cache: %w", err)
		}
		e.store, e.tiered = st, st
	}
	if m, ok := e.store.(interface{ MaxObject() int64 }); ok && m.MaxObject() < e.maxObject {
		e.maxObject = m.MaxObject()
	}
	if e.transport == nil {
		t, err := NewTransport(cfg.UpstreamHTTP)
		if err != nil {
			return nil, err
		}
		e.transport = t
	}
	tok, err := loadToken(cfg)
	if err != nil {
		return nil, err
	}
	e.token = tok
	e.stats = newStats()
	e.status = newStatusStrings(e.name)
	e.via = "1.1 " + e.name
	e.pass = newHitForPass(16384)
	var b [12]byte
	rand.Read(b[:])
	e.boundary = "verge-" + hex.EncodeToString(b[:])

	e.routes.Store(e.buildRouting(&cfg))
	e.ready.Store(true)
	return e, nil
}

// buildRouting prepares cfg's properties for the request path. Counters
// are kept per property name, so they survive a reload.
func (e *Engine) buildRouting(cfg *Config) *routing {
	var hub *url.URL
	if cfg.Upstream != "" && cfg.Role == RoleEdge {
		hub, _ = url.Parse(cfg.Upstream)
	}
	rt := &routing{hosts: map[string]*property{}, limits: cfg.Limits}
	for _, pc := range cfg.Properties {
		p := &property{
			name:     pc.Name,
			hostOut:  pc.OriginHost,
			key:      cachekey.Spec{Query: pc.QueryInKey},
			honorReq: pc.HonorRequestCacheControl,
			stats:    e.stats.property(pc.Name),
		}
		if pc.Origin != "" {
			p.origin, _ = url.Parse(pc.Origin)
		}
		for _, h := range pc.KeyHeaders {
			p.key.Headers = append(p.key.Headers, http.CanonicalHeaderKey(h))
		}
		p.policy = cachepolicy.DefaultOptions()
		p.policy.DefaultTTL = pc.DefaultTTL.D()
		p.policy.MaxTTL = pc.MaxTTL.D()
		p.policy.StaleIfError = pc.StaleIfError.D()
		p.policy.ImplicitForCookies = pc.ImplicitTTLForCookies
		switch {
		case hub != nil:
			p.upstream = hub
		case cfg.ViaParents:
			p.upstream = p.origin // the transport rewrites it to the key's hub
		default:
			p.upstream, p.toOrigin = p.origin, true
		}
		for _, h := range pc.Hosts {
			if h == "*" {
				rt.wildcard = p
				continue
			}
			rt.hosts[cachekey.Host(h)] = p
		}
	}
	return rt
}

// Reload applies a new config without a restart: properties (hosts,
// origins, TTLs, keys), the upstream hub and the request limits change at
// once for new requests (and limits.max_header_count); requests in flight
// finish with what they started with. The node's name, role, listeners, cache size and cluster token are
// fixed for the process: a change there is an error, and nothing changes.
func (e *Engine) Reload(cfg Config) error {
	cfg.Role, cfg.ViaParents = e.cfg.Role, e.cfg.ViaParents
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("edge: reload: %w", err)
	}
	switch {
	case cfg.Node != e.cfg.Node:
		return errors.New("edge: reload: node name and region need a restart")
	case cfg.Listen != e.cfg.Listen:
		return errors.New("edge: reload: listen addresses need a restart")
	case cfg.Cache != e.cfg.Cache:
		return errors.New("edge: reload: cache sizes need a restart")
	case cfg.ClusterToken != e.cfg.ClusterToken || cfg.ClusterTokenFile != e.cfg.ClusterTokenFile:
		return errors.New("edge: reload: the cluster token needs a restart")
	case cfg.UpstreamHTTP != e.cfg.UpstreamHTTP:
		return errors.New("edge: reload: upstream_http settings need a restart")
	}
	if a, b := cfg.Limits, e.cfg.Limits; a.MaxHeaderBytes != b.MaxHeaderBytes || a.ReadHeaderTimeout != b.ReadHeaderTimeout || a.IdleTimeout != b.IdleTimeout {
		return errors.New("edge: reload: limits other than max_header_count need a restart (they belong to the listeners)")
	}
	e.routes.Store(e.buildRouting(&cfg))
	e.log.Info("config reloaded", "properties", len(cfg.Properties))
	return nil
}

func loadToken(cfg Config) (string, error) {
	if cfg.ClusterTokenFile == "" {
		return cfg.ClusterToken, nil
	}
	b, err := os.ReadFile(cfg.ClusterTokenFile)
	if err != nil {
		return "", fmt.Errorf("edge: cluster token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("edge: cluster token file %s is empty", cfg.ClusterTokenFile)
	}
	return t, nil
}

// NewTransport returns the default transport to the next tier: keep-alive
// pools per host, HTTP/2 to HTTPS upstreams, certificates verified against
// the system roots plus CAFile.
func NewTransport(c UpstreamConfig) (*http.Transport, error) {
	d := &net.Dialer{Timeout: c.ConnectTimeout.D(), KeepAlive: 30 * time.Second}
	var tlsConf *tls.Config
	if c.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("edge: upstream CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("edge: upstream CA file %s holds no PEM certificate", c.CAFile)
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Transport{
		TLSClientConfig:       tlsConf,
		Proxy:                 nil, // never an environment proxy
		DialContext:           d.DialContext,
		MaxIdleConns:          c.MaxIdleConns * 4,
		MaxIdleConnsPerHost:   c.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: c.HeaderTimeout.D(),
		TLSHandshakeTimeout:   c.ConnectTimeout.D(),
		ForceAttemptHTTP2:     true,
		// Bodies are forwarded as the upstream encoded them.
		DisableCompression: true,
	}, nil
}

// Close stops the engine's own cache tiers: queued disk writes finish, the
// RAM tier is saved to disk if so configured, and the index is checkpointed,
// so a restart finds the cache warm. Call it after the listeners drained.
func (e *Engine) Close() error {
	if e.tiered == nil {
		return nil
	}
	return e.tiered.Close()
}

// Name is the node name used in Cache-Status and Via.
func (e *Engine) Name() string { return e.name }

// Role is the node's role.
func (e *Engine) Role() Role { return e.role }

// Stats returns the engine's counters, for reporting.
func (e *Engine) Stats() *Stats { return e.stats }

// SetReady marks the node ready or not to serve (a node catching up on
// purges it missed is not ready); /healthz reports it.
func (e *Engine) SetReady(ok bool) { e.ready.Store(ok) }

// Healthy reports nil when the node is ready to serve.
func (e *Engine) Healthy() error {
	if !e.ready.Load() {
		return errors.New("not ready")
	}
	return nil
}

// property returns the property serving host, or nil.
func (e *Engine) property(host string) *property {
	return e.routes.Load().property(host)
}

func (rt *routing) property(host string) *property {
	if p, ok := rt.hosts[host]; ok {
		return p
	}
	if p, ok := rt.hosts[cachekey.Host(host)]; ok {
		return p
	}
	return rt.wildcard
}

// ServeHTTP is the public request path.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := e.now()
	rt := e.routes.Load()
	if len(r.Header) > rt.limits.MaxHeaderCount {
		e.plainError(w, http.StatusRequestHeaderFieldsTooLarge, "too many header fields")
		e.stats.refused.Add(1)
		return
	}
	p := rt.property(r.Host)
	if p == nil || r.URL.Host != "" && rt.property(r.URL.Host) != p {
		e.plainError(w, http.StatusMisdirectedRequest, "unknown host: this CDN does not serve "+safeHost(r.Host))
		e.stats.refused.Add(1)
		return
	}
	if r.Method == http.MethodConnect || (r.URL.Path == "" || r.URL.Path[0] != '/') && r.URL.Path != "*" {
		e.plainError(w, http.StatusMethodNotAllowed, "not a proxy")
		e.stats.refused.Add(1)
		return
	}
	if r.URL.Path == "*" {
		// The asterisk-form is a server-wide OPTIONS (RFC 9112 section
		// 3.2.4), answered here as Go's HTTP/1 server does; it names no
		// resource to fetch or cache.
		if r.Method != http.MethodOptions {
			e.plainError(w, http.StatusBadRequest, "the target * is for OPTIONS only")
			e.stats.refused.Add(1)
			return
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	if adminMethod(r.Method) || r.Method == http.MethodTrace {
		// Cache control belongs to the admin API; on the public listener such
		// a request is neither obeyed nor forwarded (forwarding could make it
		// invalidate through a permissive origin). TRACE would echo the
		// request, cookies and all, from the origin (cross-site tracing).
		e.plainError(w, http.StatusMethodNotAllowed, r.Method+" is not served here")
		e.stats.refused.Add(1)
		return
	}
	if size, longest := headSize(r); longest > maxFieldBytes {
		e.plainError(w, http.StatusRequestHeaderFieldsTooLarge, "a header field is larger than 8 KiB")
		e.stats.refused.Add(1)
		return
	} else if size > int(rt.limits.MaxHeaderBytes) {
		// net/http refuses larger HTTP/1.1 heads itself; HTTP/2 and HTTP/3
		// servers may decode more than the limit, and a head between the
		// limit and what they decode gets its 431 here.
		e.plainError(w, http.StatusRequestHeaderFieldsTooLarge, "the request head is larger than limits.max_header_bytes")
		e.stats.refused.Add(1)
		return
	}
	var o outcome
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		o = e.serveCacheable(w, r, p, start)
	default:
		o = e.forward(w, r, p, start)
	}
	p.stats.record(o, e.now().Sub(start))
}

// maxFieldBytes bounds one request header field (name and value).
const maxFieldBytes = 8 << 10

// headSize returns the size of r's head as HTTP/1.1 would carry it (request
// line, Host, each field line with its ": " and CRLF) and the longest field
// line's name and value.
func headSize(r *http.Request) (size, longest int) {
	size = len(r.Method) + len(r.RequestURI) + len(" HTTP/1.1\r\nHost: \r\n\r\n") + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n := len(k) + len(v)
			longest = max(longest, n)
			size += n + 4
		}
	}
	return size, longest
}

// adminMethod are cache-control methods other caches take on their public
// port (PURGE, BAN, ...); Verge takes them only on its admin API.
func adminMethod(m string) bool {
	switch m {
	case "PURGE", "BAN", "FASTLYPURGE", "REFRESH", "PUSH":
		return true
	}
	return false
}

// safeHost trims a Host for an error body.
func safeHost(h string) string {
	if len(h) > 100 {
		h = h[:100]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, h)
}

// plainError writes a short text error. Errors are never cached downstream.
func (e *Engine) plainError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h["Cache-Status"] = []string{e.name + "; fwd=bypass; detail=error"}
	w.WriteHeader(code)
	fmt.Fprintf(w, "verge: %s\n", msg)
}

// outcome is what one request did, for the counters.
type outcome struct {
	result result
	status int
	bytes  int64
}

// serveCacheable handles GET and HEAD.
func (e *Engine) serveCacheable(w http.ResponseWriter, r *http.Request, p *property, now time.Time) outcome {
	key := p.key.Build(cachekey.Host(r.Host), r.URL.EscapedPath(), r.URL.RawQuery, r.Header)
	dirs := noDirectives
	if p.honorReq {
		dirs = cachepolicy.RequestDirectives(r.Header)
	}
	if dirs.NoStore {
		return e.passThrough(w, r, p, key, e.status.bypassRequest)
	}
	obj, vary := e.lookup(key, r.Header)
	var src bodySource
	if obj != nil && obj.Body == nil && obj.HasDiskBody() {
		fb, err := openBody(obj)
		if err != nil {
			obj = nil // it left the disk tier since the lookup: a miss
		} else {
			defer fb.close()
			src = fb
		}
	}
	if obj != nil {
		st := storedOf(obj)
		switch cachepolicy.Evaluate(&st, &dirs, now) {
		case cachepolicy.Fresh:
			return e.serveObject(w, r, obj, src, e.status.hit, resHit, now)
		case cachepolicy.StaleOK:
			return e.serveObject(w, r, obj, src, e.status.staleHit, resStale, now)
		case cachepolicy.StaleRevalidate:
			e.revalidateInBackground(r, p, key, obj)
			return e.serveObject(w, r, obj, src, e.status.swr, resStale, now)
		}
	}
	if dirs.OnlyIfCached {
		e.plainError(w, http.StatusGatewayTimeout, "only-if-cached: not in cache")
		return outcome{result: resMiss, status: http.StatusGatewayTimeout}
	}
	return e.fetch(w, r, p, key, obj, vary, &dirs)
}

var noDirectives = cachepolicy.RequestDirectives(http.Header{})

func storedOf(o *storage.Object) cachepolicy.Stored {
	return cachepolicy.Stored{
		Lifetime: o.Lifetime, InitialAge: o.InitialAge, ResponseTime: o.ResponseTime,
		NoCache: o.NoCache, NoStale: o.NoStale, SWR: o.SWR, SIE: o.SIE,
	}
}

// lookup finds the stored response for key that matches the request's
// selecting headers. vary reports that the URL has variants but none matched.
func (e *Engine) lookup(key string, h http.Header) (obj *storage.Object, vary bool) {
	o, ok := e.store.Get(key)
	if !ok {
		return nil, false
	}
	if !o.IsMarker() {
		return o, false
	}
	v, ok := e.store.Get(variantKey(key, o.VaryGen, o.VaryNames, h))
	if !ok {
		return nil, true
	}
	return v, false
}

// variantKey is the storage key of the variant of key selected by h.
func variantKey(key string, gen uint64, names []string, h http.Header) string {
	var b strings.Builder
	b.Grow(len(key) + 24 + 16*len(names))
	b.WriteString(key)
	b.WriteString("\x00v")
	b.WriteString(fmt.Sprint(gen))
	for _, n := range names {
		b.WriteByte(0)
		if v, ok := cachepolicy.VaryValue(h, n); ok {
			b.WriteByte('=')
			b.WriteString(v)
		} else {
			b.WriteByte('-') // absent differs from empty
		}
	}
	return b.String()
}

// invalidate removes the stored responses for key (and, through the marker,
// makes its variants unreachable).
func (e *Engine) invalidate(key string) {
	e.store.Delete(key)
}
