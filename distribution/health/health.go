// Package health tracks whether upstream targets (hubs, origin servers, edges)
// are up, from active probes and from what live traffic reports.
//
// A Checker holds a set of named targets. Active probes GET each target's URL
// plus Config.Path every Config.Interval, all targets in parallel; a probe
// succeeds on a 2xx response within Config.Timeout. Live traffic reports
// outcomes with ReportFailure and ReportSuccess (passive checking). Both kinds
// of observation feed one rise/fall counter per target: a healthy target goes
// down after Fall consecutive failures and a down target comes back after Rise
// consecutive successes, so a flapping target does not bounce.
//
// A new target starts healthy. Healthy is a lock-free read, cheap enough for
// every request. Each state change is logged, counted in the metrics and
// passed to the onChange callback, in the order the changes happened and
// outside any lock, so the callback may call back into the Checker.
//
// With Config.Enabled false the Checker never probes, ignores passive reports
// and reports every known target healthy.
package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadHeader is the probe response header a target may set to report its
// load (any non-negative number; its meaning is up to the reader).
const LoadHeader = "Verge-Load"

// Target is one checked upstream. URL is its base ("http://127.0.0.1:8081");
// the probe GETs URL + Config.Path.
type Target struct {
	Name string
	URL  string
}

// Checker tracks the health of a set of targets. It is safe for concurrent use.
type Checker struct {
	cfg      Config
	client   *http.Client
	log      *slog.Logger
	onChange func(name string, up bool)
	m        *metrics

	// targets is a copy-on-write map so Healthy and Load read it without a
	// lock; writers hold mu while they copy and swap it.
	targets atomic.Pointer[map[string]*target]
	mu      sync.Mutex // serializes Add and Remove (the writers of targets)

	evMu       sync.Mutex // guards pending and delivering
	pending    []event    // state changes not yet delivered
	delivering bool       // a goroutine is delivering pending events
}

// target is one target's live state.
type target struct {
	Target
	probeURL string
	up       atomic.Bool
	load     atomic.Uint64 // math.Float64bits of the last reported load; noLoad when none
	probing  atomic.Bool   // a probe is in flight (rounds never overlap on one target)
	removed  atomic.Bool   // no longer in the checker; its changes are not reported

	mu        sync.Mutex // guards successes and failures
	successes int        // consecutive successes while down
	failures  int        // consecutive failures while up
}

// noLoad marks "no Verge-Load reported" (a NaN no parser produces here).
var noLoad = math.Float64bits(math.NaN())

// event is one state change waiting to be logged and passed to onChange.
type event struct {
	t     *target
	up    bool
	cause string
}

// NewChecker returns a Checker for cfg (assumed valid). client sends the
// probes; nil means a client that does not follow redirects and ignores proxy
// settings. log may be nil (discard). onChange, if not nil, is called after
// every state change.
func NewChecker(cfg Config, client *http.Client, log *slog.Logger, onChange func(name string, up bool)) *Checker {
	if client == nil {
		client = defaultClient(cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{cfg: cfg, client: client, log: log, onChange: onChange, m: newMetrics()}
	empty := map[string]*target{}
	c.targets.Store(&empty)
	return c
}

func defaultClient(cfg Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // probes go to the target itself, never through an environment proxy
			DialContext:         (&net.Dialer{Timeout: cfg.Timeout.D()}).DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2*cfg.Interval.D() + time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Add starts tracking t. A new target starts healthy. Adding a name that is
// already tracked with the same URL changes nothing; with another URL it
// replaces the target, which starts healthy again.
func (c *Checker) Add(t Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.targets.Load()
	if cur, ok := old[t.Name]; ok && cur.URL == t.URL {
		return
	}
	nt := &target{Target: t, probeURL: strings.TrimSuffix(t.URL, "/") + c.cfg.Path}
	nt.up.Store(true)
	nt.load.Store(noLoad)
	next := make(map[string]*target, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if cur, ok := old[t.Name]; ok {
		cur.removed.Store(true)
	}
	next[t.Name] = nt
	c.targets.Store(&next)
	c.m.up.WithLabelValues(t.Name).Set(1)
}

// Remove stops tracking name. Unknown names are ignored.
func (c *Checker) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.targets.Load()
	cur, ok := old[name]
	if !ok {
		return
	}
	cur.removed.Store(true)
	next := make(map[string]*target, len(old))
	for k, v := range old {
		if k != name {
			next[k] = v
		}
	}
	c.targets.Store(&next)
	c.m.forget(name)
}

func (c *Checker) get(name string) *target {
	return (*c.targets.Load())[name]
}

// Healthy reports whether name is a tracked target that is up. It takes no
// lock. With checking disabled every tracked target is healthy.
func (c *Checker) Healthy(name string) bool {
	t := c.get(name)
	if t == nil {
		return false
	}
	return !c.cfg.Enabled || t.up.Load()
}

// Load returns the load name reported in the Verge-Load header of its last
// probe response, and whether that response had one.
func (c *Checker) Load(name string) (float64, bool) {
	t := c.get(name)
	if t == nil {
		return 0, false
	}
	bits := t.load.Load()
	if bits == noLoad {
		return 0, false
	}
	return math.Float64frombits(bits), true
}

// Targets returns the tracked targets, in no particular order.
func (c *Checker) Targets() []Target {
	m := *c.targets.Load()
	out := make([]Target, 0, len(m))
	for _, t := range m {
		out = append(out, t.Target)
	}
	return out
}

// ReportFailure records a failure seen by live traffic (a refused
// connection, a reset, a timeout). It counts toward Fall like a failed probe.
func (c *Checker) ReportFailure(name string) {
	if t := c.get(name); t != nil && c.cfg.Enabled {
		c.m.failures.WithLabelValues(name, "passive").Inc()
		c.record(t, false, "live traffic failure")
	}
}

// ReportSuccess records a success seen by live traffic. It counts toward
// Rise like a successful probe and resets the failure count.
func (c *Checker) ReportSuccess(name string) {
	if t := c.get(name); t != nil && c.cfg.Enabled {
		c.record(t, true, "live traffic success")
	}
}

// Run probes every target now and then every Interval until ctx is done.
// With checking disabled it only waits for ctx.
func (c *Checker) Run(ctx context.Context) {
	if !c.cfg.Enabled {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(c.cfg.Interval.D())
	defer tick.Stop()
	for {
		c.ProbeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ProbeOnce probes every target in parallel and returns when all probes are
// done. A target whose previous probe is still in flight is skipped.
func (c *Checker) ProbeOnce(ctx context.Context) {
	if !c.cfg.Enabled {
		return
	}
	var wg sync.WaitGroup
	for _, t := range *c.targets.Load() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.probe(ctx, t)
		}()
	}
	wg.Wait()
}

// maxProbeBody bounds how much of a probe response is read (and discarded)
// so the connection can be reused without trusting the target's length.
const maxProbeBody = 64 << 10

func (c *Checker) probe(ctx context.Context, t *target) {
	if !t.probing.CompareAndSwap(false, true) {
		return
	}
	defer t.probing.Store(false)
	pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	start := time.Now()
	status, load, err := c.get1(pctx, t.probeURL)
	c.m.probe.WithLabelValues(t.Name).Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		// Shutting down: an interrupted probe says nothing about the target.
		return
	}
	if status != 0 {
		t.load.Store(load)
	}
	switch {
	case err != nil:
		c.m.failures.WithLabelValues(t.Name, "probe").Inc()
		c.record(t, false, err.Error())
	case status < 200 || status > 299:
		c.m.failures.WithLabelValues(t.Name, "probe").Inc()
		c.record(t, false, "probe status "+strconv.Itoa(status))
	default:
		c.record(t, true, "probe status "+strconv.Itoa(status))
	}
}

// get1 sends one probe and returns the status, the reported load (noLoad
// when absent or malformed) and a transport error.
func (c *Checker) get1(ctx context.Context, url string) (int, uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, noLoad, fmt.Errorf("health: bad probe URL: %w", err)
	}
	req.Header.Set("User-Agent", "verge-health")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, noLoad, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	load := noLoad
	if v := resp.Header.Get(LoadHeader); v != "" {
		if f, perr := strconv.ParseFloat(strings.TrimSpace(v), 64); perr == nil && f >= 0 && !math.IsInf(f, 0) {
			load = math.Float64bits(f)
		}
	}
	return resp.StatusCode, load, nil
}

// record feeds one observation into t's rise/fall counters and, on a state
// change, queues and delivers the event.
func (c *Checker) record(t *target, ok bool, cause string) {
	t.mu.Lock()
	changed := false
	if ok {
		t.failures = 0
		if !t.up.Load() {
			t.successes++
			if t.successes >= c.cfg.Rise {
				t.successes = 0
				t.up.Store(true)
				changed = true
			}
		}
	} else {
		t.successes = 0
		if t.up.Load() {
			t.failures++
			if t.failures >= c.cfg.Fall {
				t.failures = 0
				t.up.Store(false)
				changed = true
			}
		}
	}
	if changed {
		// Queued while t.mu is held so events of one target keep their order.
		c.evMu.Lock()
		c.pending = append(c.pending, event{t: t, up: ok, cause: cause})
		c.evMu.Unlock()
	}
	t.mu.Unlock()
	if changed {
		c.deliver()
	}
}

// deliver logs, counts and reports queued state changes in order, outside
// every lock. One goroutine delivers at a time; a change queued meanwhile is
// delivered by that goroutine before it returns.
func (c *Checker) deliver() {
	for {
		c.evMu.Lock()
		if c.delivering || len(c.pending) == 0 {
			c.evMu.Unlock()
			return
		}
		c.delivering = true
		evs := c.pending
		c.pending = nil
		c.evMu.Unlock()

		for _, e := range evs {
			c.report(e)
		}

		c.evMu.Lock()
		c.delivering = false
		c.evMu.Unlock()
	}
}

func (c *Checker) report(e event) {
	if e.t.removed.Load() {
		return
	}
	state, val := "down", 0.0
	if e.up {
		state, val = "up", 1
	}
	c.m.up.WithLabelValues(e.t.Name).Set(val)
	c.m.changes.WithLabelValues(e.t.Name, state).Inc()
	if e.up {
		c.log.Info("health: target up", "target", e.t.Name, "url", e.t.URL, "rise", c.cfg.Rise, "last", e.cause)
	} else {
		c.log.Warn("health: target down", "target", e.t.Name, "url", e.t.URL, "fall", c.cfg.Fall, "last", e.cause)
	}
	if c.onChange != nil {
		c.onChange(e.t.Name, e.up)
	}
}
