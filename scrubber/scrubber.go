// Package scrubber keeps a node serving legitimate users while it is flooded:
// allow/deny lists, per-source token buckets (by address and by prefix), a
// global ceiling, per-client connection caps, slow-client protection, attack
// detection with an under-attack mode (penalty box, stricter buckets, an
// optional cookie challenge) and a report to management when the mode
// changes.
//
// It runs in two ways. Inside an edge: New, then Wrap the edge's handler,
// wrap its listener with Listener and build its http.Server with HTTPServer,
// and call Run. Standalone ("verge scrubber"): the same stages in front of a
// pool of edges, served by Front, a small HTTP/1.1 server that decides each
// request from the connection's source address before it parses anything and
// refuses it with a pre-built response.
//
// The stages, in order (addrStages is the one place that orders them):
//
//  1. lists: deny-listed sources get 403 and are disconnected; allow-listed
//     ones skip every limit and the challenge.
//  2. per_ip: a token bucket per source address.
//  3. per_prefix: a token bucket per /24 (IPv4) or /64 (IPv6).
//  4. global: one bucket for the node (503 when empty).
//  5. challenge: under attack, when enabled, a signed cookie is required.
//
// Stages 1-4 decide from the remote address alone, without allocating; a
// refused request gets a constant response (429 or 503 with Retry-After,
// 403), a counter increment and, at most every 10 seconds, one sampled log
// line. Limiter state lives in scrubber/buckets tables of fixed capacity, so
// rotating source addresses cannot grow memory past the cap.
//
// Every decision takes its time from the injected clock (Options.Now), so
// tests are deterministic.
package scrubber

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/vergecdn/verge/scrubber/buckets"
	"github.com/vergecdn/verge/scrubber/iplist"
)

// Options are the scrubber's collaborators.
type Options struct {
	// Logger receives transitions, reloads and the sampled rejection log.
	// Default: discard.
	Logger *slog.Logger
	// Registerer receives the metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Reporter receives attack transitions. Default: built from
	// Attack.Report (an HTTPReporter when a URL is set), else none.
	Reporter AttackReporter
}

// Scrubber holds the stages' state. It is safe for concurrent use.
type Scrubber struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	clock    func() time.Time
	epoch    time.Time // clock reading at New; decisions use nanoseconds since
	epochNS  int64     // epoch as Unix nanoseconds (for Date headers)
	reporter AttackReporter

	perIP     *buckets.Table // nil when neither policy has a per-IP bucket
	perPrefix *buckets.Table // nil when neither policy has a per-prefix bucket
	v4Bits    int
	v6Bits    int

	normal, attack *policy
	pol            atomic.Pointer[policy] // the policy in force

	lists    atomic.Pointer[iplist.List]
	inline   []iplist.Rule
	listMu   sync.Mutex // serializes reloads; guards listStat
	listStat fileStat   // the lists file as last loaded

	conns  connTracker
	det    detector
	chal   *challenger
	rejLog sampler
	upLog  atomic.Int64 // clock nanos before which no upstream failure is logged
}

// New builds a scrubber from a validated config.
func New(cfg Config, opt Options) (*Scrubber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("scrubber: config: %w", err)
	}
	s := &Scrubber{cfg: cfg, log: opt.Logger, clock: opt.Now, reporter: opt.Reporter}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	reg := opt.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.epoch = s.clock()
	s.epochNS = s.epoch.UnixNano()
	s.m = newMetrics(reg)
	s.v4Bits, s.v6Bits = cfg.Limits.IPv4Prefix, cfg.Limits.IPv6Prefix

	closeBoxed := cfg.Connections.ClosePenalized
	s.normal = newPolicy("normal", cfg.Limits.Policy, closeBoxed)
	s.attack = newPolicy("attack", cfg.Attack.Limits, closeBoxed)
	if s.normal.perIP || (cfg.Attack.Enabled && s.attack.perIP) {
		s.perIP = buckets.New(cfg.Limits.MaxSources, s.normal.ipParams)
	}
	if s.normal.perPrefix || (cfg.Attack.Enabled && s.attack.perPrefix) {
		s.perPrefix = buckets.New(cfg.Limits.MaxSources, s.normal.prefixParams)
	}
	s.setPolicy(s.normal)
	s.registerTables(reg)

	var err error
	if s.inline, err = cfg.inlineRules(); err != nil {
		return nil, fmt.Errorf("scrubber: lists: %w", err)
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}

	s.det.init(cfg.Attack)
	s.conns.init()
	if cfg.Attack.Challenge.Enabled {
		if s.chal, err = newChallenger(cfg.Attack.Challenge); err != nil {
			return nil, err
		}
	}
	if s.reporter == nil && cfg.Attack.Report.URL != "" {
		tok, err := readSecretFile(cfg.Attack.Report.TokenFile, 1)
		if err != nil {
			return nil, fmt.Errorf("scrubber: attack.report.token_file: %w", err)
		}
		s.reporter = &HTTPReporter{URL: cfg.Attack.Report.URL, Token: string(tok)}
	}
	return s, nil
}

// Config returns the config the scrubber was built with.
func (s *Scrubber) Config() Config { return s.cfg }

// nowNanos is the injected clock as nanoseconds since New.
func (s *Scrubber) nowNanos() int64 { return int64(s.clock().Sub(s.epoch)) }

// policy is one set of limits in force, with its pre-built refusals.
type policy struct {
	name                   string
	penalty                bool
	perIP, perPrefix       bool
	ipParams, prefixParams buckets.Params
	global                 *rate.Limiter // nil = off
	resp                   [nReasons]rejectResp
	wire                   atomic.Pointer[wireSet] // fast front end's bytes, rebuilt each second
}

func newPolicy(name string, p Policy, closeBoxed bool) *policy {
	pen := int64(0)
	if p.Mode == ModePenaltyBox {
		pen = int64(p.Penalty.D())
	}
	pol := &policy{name: name, penalty: pen > 0, perIP: p.PerIP.on(), perPrefix: p.PerPrefix.on()}
	pol.ipParams = buckets.NewParams(nonzero(p.PerIP.Rate), p.PerIP.Burst, pen)
	pol.prefixParams = buckets.NewParams(nonzero(p.PerPrefix.Rate), p.PerPrefix.Burst, pen)
	if p.Global.on() {
		pol.global = rate.NewLimiter(rate.Limit(p.Global.Rate), p.Global.Burst)
	}
	retry := func(b Bucket) int {
		if !b.on() {
			return 1
		}
		return int(math.Ceil(1 / b.Rate))
	}
	pol.resp = buildRejects(retry(p.PerIP), retry(p.PerPrefix), retry(p.Global),
		int(math.Ceil(p.Penalty.D().Seconds())), closeBoxed)
	return pol
}

func nonzero(r float64) float64 {
	if r <= 0 {
		return 1
	}
	return r
}

func (s *Scrubber) setPolicy(p *policy) {
	if s.perIP != nil && p.perIP {
		s.perIP.SetParams(p.ipParams)
	}
	if s.perPrefix != nil && p.perPrefix {
		s.perPrefix.SetParams(p.prefixParams)
	}
	s.pol.Store(p)
}

// UnderAttack reports whether the node is in under-attack mode.
func (s *Scrubber) UnderAttack() bool { return s.pol.Load() == s.attack }

// ipKey is a source address's table key; prefixKey its prefix's.
func ipKey(a netip.Addr) buckets.Key { return a.As16() }

func (s *Scrubber) prefixKey(a netip.Addr) buckets.Key {
	bits := s.v6Bits
	if a.Is4() {
		bits = s.v4Bits
	}
	p, _ := a.Prefix(bits)
	return p.Addr().As16()
}

// Run does the background work until ctx is done: attack detection every
// tick, checking the lists file for changes, and sending attack reports.
func (s *Scrubber) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.runReports(ctx) }()
	every := time.Second
	if w := s.cfg.Attack.Window.D() / 4; w < every {
		every = w
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	nextListCheck := time.Now().Add(s.cfg.Lists.ReloadInterval.D())
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case t := <-tick.C:
			s.evaluate(s.nowNanos())
			if iv := s.cfg.Lists.ReloadInterval.D(); iv > 0 && s.cfg.Lists.File != "" && !t.Before(nextListCheck) {
				nextListCheck = t.Add(iv)
				if changed, err := s.listsChanged(); err != nil {
					s.log.Warn("scrubber: lists file", "file", s.cfg.Lists.File, "err", err)
				} else if changed {
					if err := s.Reload(); err != nil {
						s.log.Error("scrubber: lists reload failed; previous lists stay in force", "err", err)
					}
				}
			}
		}
	}
}

// fileStat identifies a version of the lists file.
type fileStat struct {
	mod  time.Time
	size int64
	ok   bool
}

func (s *Scrubber) listsChanged() (bool, error) {
	fi, err := os.Stat(s.cfg.Lists.File)
	if err != nil {
		return false, err
	}
	s.listMu.Lock()
	defer s.listMu.Unlock()
	return !s.listStat.ok || !fi.ModTime().Equal(s.listStat.mod) || fi.Size() != s.listStat.size, nil
}

// Reload re-reads the lists file (if any) and swaps in the new lists. On
// error the lists in force stay as they were.
func (s *Scrubber) Reload() error {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	rules := append([]iplist.Rule(nil), s.inline...)
	var st fileStat
	if f := s.cfg.Lists.File; f != "" {
		fi, err := os.Stat(f)
		if err == nil {
			st = fileStat{mod: fi.ModTime(), size: fi.Size(), ok: true}
		}
		data, err := os.ReadFile(f)
		if err != nil {
			s.m.listReloads.WithLabelValues("error").Inc()
			return fmt.Errorf("scrubber: lists: %w", err)
		}
		fr, err := iplist.Parse(f, data)
		if err != nil {
			s.m.listReloads.WithLabelValues("error").Inc()
			return fmt.Errorf("scrubber: lists: %w", err)
		}
		rules = append(rules, fr...)
	}
	l, err := iplist.New(rules)
	if err != nil {
		s.m.listReloads.WithLabelValues("error").Inc()
		return fmt.Errorf("scrubber: lists: %w", err)
	}
	s.lists.Store(l)
	s.listStat = st
	s.m.listReloads.WithLabelValues("ok").Inc()
	s.m.listRules.Set(float64(l.Len()))
	s.log.Info("scrubber: lists loaded", "rules", l.Len(), "file", s.cfg.Lists.File)
	return nil
}

// sampler keeps the rejection log to one line per interval.
type sampler struct {
	next  atomic.Int64 // clock nanos before which nothing is logged
	count atomic.Int64 // refusals since the last line
}

const rejectLogEvery = int64(10 * time.Second)

// rejected counts a refusal and, at most once per rejectLogEvery, logs one
// sample of it. Nothing here allocates unless it logs.
func (s *Scrubber) rejected(r reason, a netip.Addr, now int64) {
	s.m.verdict[r].Inc()
	s.det.limited.Add(1)
	s.rejLog.count.Add(1)
	next := s.rejLog.next.Load()
	if now < next || !s.rejLog.next.CompareAndSwap(next, now+rejectLogEvery) {
		return
	}
	s.log.Info("scrubber: refusing requests (one sampled line per 10s)",
		"refused", s.rejLog.count.Swap(0), "sample_source", a.String(), "sample_reason", r.label(),
		"policy", s.pol.Load().name)
}

// readSecretFile reads a token or key file, trimmed of surrounding
// whitespace, and checks its length.
func readSecretFile(path string, minLen int) ([]byte, error) {
	if path == "" {
		return nil, errors.New("no file given")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for len(data) > 0 && (data[len(data)-1] == '\n' || data[len(data)-1] == '\r' || data[len(data)-1] == ' ') {
		data = data[:len(data)-1]
	}
	if len(data) < minLen {
		return nil, fmt.Errorf("%s: want at least %d bytes, got %d", path, minLen, len(data))
	}
	return data, nil
}
