package distribution

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/distribution/balance"
	"github.com/vergecdn/verge/distribution/health"
)

// Pool is the transport for a plain pool of backends (several origin
// servers behind one property, the scrubber's pool of edges): a policy picks
// a backend among the healthy ones; on a connection failure (or a 5xx from a
// backend the checker now holds down) the backend is marked and a GET or
// HEAD without a body goes to the policy's next pick, up to max_attempts
// backends. When no healthy backend is left, the ones marked down are tried
// (still within max_attempts): a stale mark is better than a certain error.
//
// The Host header, path and query are kept. For ip_hash the client address
// is the host of req.RemoteAddr (set when the request is the incoming one,
// as httputil.ReverseProxy passes it), else the last X-Forwarded-For entry.
// For url_hash the key is the cache key in the context, else Host + path and
// query. Pool is safe for concurrent use.
type Pool struct {
	cfg      PoolConfig
	picker   balance.Picker
	backends []*upstream
	checker  *health.Checker
	f        forwarder
	m        *metrics
}

var _ http.RoundTripper = (*Pool)(nil)

// NewPool builds the transport for cfg, which must be valid.
func NewPool(cfg PoolConfig, opts Options) (*Pool, error) {
	if err := cfg.Validate(""); err != nil {
		return nil, fmt.Errorf("distribution: pool config: %w", err)
	}
	opts = opts.withDefaults("pool")
	p := &Pool{cfg: cfg, m: newMetrics()}
	p.checker = health.NewChecker(cfg.Health, opts.ProbeClient, opts.Log.With("pool", opts.Name), nil)
	bs := make([]balance.Backend, len(cfg.Backends))
	for i, b := range cfg.Backends {
		name := b.name()
		up, err := newUpstream(name, b.URL, i, true, p.m)
		if err != nil {
			return nil, err
		}
		p.backends = append(p.backends, up)
		bs[i] = balance.Backend{Name: name, Weight: b.Weight}
		probe := b.HealthURL
		if probe == "" {
			probe = b.URL
		}
		p.checker.Add(health.Target{Name: name, URL: probe})
	}
	picker, err := balance.New(cfg.Policy, bs, balance.Options{
		VirtualNodes: cfg.VirtualNodes, Decay: cfg.LeastTimeDecay.D(), Now: opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("distribution: pool %s: %w", opts.Name, err)
	}
	p.picker = picker
	rt := opts.Transport
	if rt == nil {
		rt = NewTransport(cfg.ConnectTimeout.D(), cfg.ResponseTimeout.D())
	}
	tracker, _ := picker.(balance.Tracker)
	p.f = forwarder{name: opts.Name, rt: rt, health: p.checker, tracker: tracker, log: opts.Log, now: opts.Now, m: p.m}
	return p, nil
}

// RoundTrip sends req to the policy's pick, then to further picks on failure.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	var br balance.Request
	switch p.cfg.Policy {
	case balance.URLHashName:
		br.Key = requestKey(req)
	case balance.IPHashName:
		br.ClientIP = clientIP(req)
	}
	var tried uint64 // backend indexes already tried (at most 64 backends)
	attempts := 0
	anyBackend := false // second pass: backends marked down too
	healthyOK := func(i int) bool { return tried&(1<<uint(i)) == 0 && p.checker.Healthy(p.backends[i].name) }
	untriedOK := func(i int) bool { return tried&(1<<uint(i)) == 0 }
	return p.f.do(req, func() *upstream {
		if attempts >= p.cfg.MaxAttempts {
			return nil
		}
		i := -1
		if !anyBackend {
			if i = p.picker.Pick(&br, healthyOK); i < 0 {
				anyBackend = true
			}
		}
		if anyBackend {
			i = p.picker.Pick(&br, untriedOK)
		}
		if i < 0 {
			return nil
		}
		tried |= 1 << uint(i)
		attempts++
		return p.backends[i]
	})
}

// clientIP is the address ip_hash hashes: the host of RemoteAddr, else the
// last X-Forwarded-For entry (the one the proxy in front of us added).
func clientIP(req *http.Request) string {
	if req.RemoteAddr != "" {
		if host, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
			return host
		}
		return req.RemoteAddr
	}
	xff := req.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return ""
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// Health returns the checker of the backends.
func (p *Pool) Health() *health.Checker { return p.checker }

// Run probes the backends until ctx is done.
func (p *Pool) Run(ctx context.Context) { p.checker.Run(ctx) }

// Register adds the metrics, labelled pool=Options.Name, to reg.
func (p *Pool) Register(reg prometheus.Registerer) error {
	return p.m.register(reg, p.f.name, p.checker)
}
