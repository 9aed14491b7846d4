package distribution

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/distribution/health"
	"github.com/vergecdn/verge/distribution/ring"
)

// Parents is the upstream transport of an edge: it sends each request to the
// hub that owns its cache key on the region's ring, skipping hubs that are
// down, and to the origin when no hub answers.
//
// For a request, Parents:
//  1. takes the key from the context (cachekey.FromContext), else Host +
//     path and query;
//  2. picks the key's hub among the healthy hubs of the region (the ring's
//     owner, or the owner once the hubs that are down are left out);
//  3. sends the request to that hub's URL, keeping the Host header, path
//     and query;
//  4. on a connection failure (or a 5xx from a hub that the checker now
//     holds down) marks the hub and, for a GET or HEAD without a body, moves
//     to the next distinct hub in the key's failover order;
//  5. when no healthy hub answered, goes to the origin (origin_fallback), or
//     else tries the hubs marked down before giving up.
//
// The response is the upstream's, untouched. Parents is safe for concurrent
// use.
type Parents struct {
	cfg     ParentsConfig
	ring    *ring.Ring
	hubs    []*upstream // by ring index
	origin  *upstream   // nil without origin fallback
	checker *health.Checker
	f       forwarder
	m       *metrics
}

var _ http.RoundTripper = (*Parents)(nil)

// NewParents builds the transport for cfg, which must be valid.
func NewParents(cfg ParentsConfig, opts Options) (*Parents, error) {
	if err := cfg.Validate(""); err != nil {
		return nil, fmt.Errorf("distribution: parents config: %w", err)
	}
	opts = opts.withDefaults("parents")
	p := &Parents{cfg: cfg, m: newMetrics()}
	p.checker = health.NewChecker(cfg.Health, opts.ProbeClient, opts.Log.With("pool", opts.Name), nil)
	var nodes []ring.Node
	for _, h := range cfg.Hubs {
		if !cfg.usesHub(h) {
			continue
		}
		up, err := newUpstream(h.Name, h.URL, len(nodes), true, p.m)
		if err != nil {
			return nil, err
		}
		p.hubs = append(p.hubs, up)
		nodes = append(nodes, ring.Node{Name: h.Name, Weight: h.Weight})
		probe := h.HealthURL
		if probe == "" {
			probe = h.URL
		}
		p.checker.Add(health.Target{Name: h.Name, URL: probe})
	}
	r, err := ring.New(ring.Options{VirtualNodes: cfg.VirtualNodes}, nodes...)
	if err != nil {
		return nil, fmt.Errorf("distribution: parents: %w", err)
	}
	p.ring = r
	if cfg.OriginFallback {
		if p.origin, err = newUpstream("origin", cfg.Origin, -1, false, p.m); err != nil {
			return nil, err
		}
	}
	rt := opts.Transport
	if rt == nil {
		rt = NewTransport(cfg.ConnectTimeout.D(), cfg.ResponseTimeout.D())
	}
	p.f = forwarder{name: opts.Name, rt: rt, health: p.checker, log: opts.Log, now: opts.Now, m: p.m}
	return p, nil
}

// RoundTrip sends req to the key's hub, the next hubs, then the origin.
func (p *Parents) RoundTrip(req *http.Request) (*http.Response, error) {
	key := requestKey(req)
	var tried uint64 // ring indexes already tried (at most 64 hubs per region)
	anyHub := false  // second pass: hubs marked down too
	originDone := p.origin == nil
	healthyOK := func(i int) bool { return tried&(1<<uint(i)) == 0 && p.checker.Healthy(p.hubs[i].name) }
	untriedOK := func(i int) bool { return tried&(1<<uint(i)) == 0 }
	return p.f.do(req, func() *upstream {
		if !anyHub {
			if i := p.ring.Find(key, healthyOK); i >= 0 {
				tried |= 1 << uint(i)
				return p.hubs[i]
			}
			if !originDone {
				originDone = true
				return p.origin
			}
			anyHub = true
		}
		if p.origin != nil {
			return nil // with an origin to fall back on, hubs marked down are left alone
		}
		if i := p.ring.Find(key, untriedOK); i >= 0 {
			tried |= 1 << uint(i)
			return p.hubs[i]
		}
		return nil
	})
}

// Order returns the hub names in key's failover order (all hubs, whatever
// their health), for tools and tests.
func (p *Parents) Order(key string) []string { return p.ring.GetN(key, p.ring.Len()) }

// Health returns the checker of the hubs: Run it (or call Run on Parents),
// or ProbeOnce in tests.
func (p *Parents) Health() *health.Checker { return p.checker }

// Run probes the hubs until ctx is done.
func (p *Parents) Run(ctx context.Context) { p.checker.Run(ctx) }

// Register adds the metrics, labelled pool=Options.Name, to reg.
func (p *Parents) Register(reg prometheus.Registerer) error {
	return p.m.register(reg, p.f.name, p.checker)
}
