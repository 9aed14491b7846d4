// Package dnsredirect is Verge's GeoDNS server: it answers authoritatively
// for the configured zones and sends each client to the nearest healthy,
// least-loaded edge (seed section 2.2, DNS redirection).
//
// For a CDN hostname the server locates the client, by its EDNS Client
// Subnet (RFC 7871) when the resolver sends one and by the resolver's
// address otherwise, in a GeoIP2/GeoLite2 database; ranks the sites by
// configured country and continent overrides and then great-circle
// distance; and answers from the first site with a healthy edge with that
// site's least-loaded edges (Config.Answers of them), each replaced by the
// site's scrubber while it is marked under attack. When no edge anywhere is
// healthy it fails open: every edge of the nearest site, with a log line and
// the verge_dns_fail_open gauge.
//
// Health comes from a distribution/health Checker probing every edge's
// /healthz (rise/fall counts, so a flapping edge does not bounce), load from
// the probes' Verge-Load header or from management through SetLoad.
//
// The serving loops run on miekg/dns servers (SO_REUSEPORT UDP sockets, one
// per CPU, and a TCP listener) with decorated readers that answer each
// message in place from a zero-allocation wire-format responder; Server is
// also a dns.Handler for use behind any miekg/dns server.
package dnsredirect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vergecdn/verge/distribution/health"
)

// Health is what selection needs to know about edges; *health.Checker has
// these methods.
type Health interface {
	Healthy(name string) bool
	Load(name string) (float64, bool)
}

var _ Health = (*health.Checker)(nil)

// Options are the parts of a Server that are not configuration.
type Options struct {
	// Geo locates clients; a *geo.DB. Required.
	Geo Locator
	// Health overrides the built-in checker (tests pass a double). When nil
	// and Config.Health.Enabled, the server probes every edge itself; when
	// nil and disabled, every edge counts as healthy.
	Health Health
	// HTTPClient sends the built-in checker's probes; nil for its default.
	HTTPClient *http.Client
	// ManualProbes keeps Serve from probing on its own: the built-in checker
	// probes only when ProbeOnce is called (deterministic tests).
	ManualProbes bool
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry receives the metrics; nil leaves them unregistered.
	Registry prometheus.Registerer
	// Now is the clock for pushed-load expiry and DNS cookie timestamps;
	// nil means time.Now.
	Now func() time.Time
	// CookieSecret keys the DNS server cookies (RFC 9018); servers that
	// share one accept each other's cookies. Nil: a random secret.
	CookieSecret *[16]byte
}

// Server is a GeoDNS server. Create it with New, open its sockets with
// Listen, then Serve.
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	geo       Locator
	zones     *zoneSet
	sites     []site
	edges     []edge
	edgeIdx   map[string]int
	ranker    *ranker
	cache     *geoCache
	answers   int
	maxUDP    int
	cookies   cookieSecret // keys DNS server cookies
	pushedTTL time.Duration
	aTail     [10]byte // TYPE, CLASS, TTL, RDLENGTH of a geo A record
	aaaaTail  [10]byte

	health  Health
	checker *health.Checker // the built-in checker, nil when Options.Health is set or checking is off
	manual  bool            // Options.ManualProbes

	mu    sync.Mutex // guards state and the building of snapshots
	state []edgeState
	snap  atomic.Pointer[snapshot]

	m       *metrics
	shardMu sync.Mutex // guards shards
	shards  []*counters
	shared  *counters // for TCP connections and ServeDNS
	scratch sync.Pool // *scratch for ServeDNS

	udp     []*net.UDPConn
	tcp     net.Listener
	serving atomic.Bool
}

// New builds a server from a valid configuration.
func New(cfg Config, opt Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dnsredirect: config: %w", err)
	}
	if opt.Geo == nil {
		return nil, errors.New("dnsredirect: no geo database")
	}
	zones, err := compileZones(&cfg, uint32(time.Now().Unix()))
	if err != nil {
		return nil, fmt.Errorf("dnsredirect: %w", err)
	}
	s := &Server{
		cfg: cfg, log: opt.Logger, now: opt.Now, geo: opt.Geo, zones: zones,
		edgeIdx: map[string]int{}, answers: cfg.Answers, maxUDP: cfg.MaxUDPSize,
		pushedTTL: cfg.PushedLoadTTL.D(), cache: newGeoCache(cfg.GeoCache), manual: opt.ManualProbes,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.cookies = randomCookieSecret()
	if opt.CookieSecret != nil {
		s.cookies = newCookieSecret(*opt.CookieSecret)
	}
	ttl := uint32(cfg.TTL.D() / time.Second)
	s.aTail = [10]byte{0, typeA, 0, classIN, byte(ttl >> 24), byte(ttl >> 16), byte(ttl >> 8), byte(ttl), 0, 4}
	s.aaaaTail = [10]byte{0, typeAAAA, 0, classIN, byte(ttl >> 24), byte(ttl >> 16), byte(ttl >> 8), byte(ttl), 0, 16}

	var siteNames []string
	for si, sc := range cfg.Sites {
		st := site{name: sc.Name, lat: *sc.Lat, lon: *sc.Lon, scrubber: sc.Scrubber}
		for _, ec := range sc.Edges {
			s.edgeIdx[ec.Name] = len(s.edges)
			st.edges = append(st.edges, len(s.edges))
			s.edges = append(s.edges, edge{name: ec.Name, site: si, addrs: ec.Addrs, probe: ec.Probe})
		}
		s.sites = append(s.sites, st)
		siteNames = append(siteNames, sc.Name)
	}
	s.ranker = newRanker(s.sites, cfg.Routing)
	s.state = make([]edgeState, len(s.edges))
	for i := range s.state {
		s.state[i].up = true
	}
	s.m = newMetrics(siteNames, func() []*counters {
		s.shardMu.Lock()
		defer s.shardMu.Unlock()
		return append([]*counters(nil), s.shards...)
	})
	s.shared = s.newShard()
	s.scratch.New = func() any { return newScratch(0) }

	s.health = opt.Health
	if s.health == nil && cfg.Health.Enabled {
		s.checker = health.NewChecker(cfg.Health, opt.HTTPClient, s.log.With("component", "health"),
			func(string, bool) { s.Refresh() })
		for _, e := range s.edges {
			s.checker.Add(health.Target{Name: e.name, URL: e.probe})
		}
		s.health = s.checker
	}
	if opt.Registry != nil {
		if err := s.m.register(opt.Registry); err != nil {
			return nil, fmt.Errorf("dnsredirect: register metrics: %w", err)
		}
		if s.checker != nil {
			if err := s.checker.Register(opt.Registry); err != nil {
				return nil, fmt.Errorf("dnsredirect: %w", err)
			}
		}
	}
	s.mu.Lock()
	s.readHealthLocked()
	s.rebuildLocked()
	s.mu.Unlock()
	return s, nil
}

func (s *Server) newShard() *counters {
	c := newCounters(len(s.sites))
	s.shardMu.Lock()
	s.shards = append(s.shards, c)
	s.shardMu.Unlock()
	return c
}

// udpReadBuffer is the receive buffer asked for each UDP socket.
const udpReadBuffer = 4 << 20

// Listen opens Config.Listen: UDP sockets sharing the port with
// SO_REUSEPORT (Config.UDPSockets, default one per CPU) and a TCP listener
// on the same port. With port 0 the kernel picks a port free for both.
func (s *Server) Listen() error {
	host, port, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("dnsredirect: listen %q: %w", s.cfg.Listen, err)
	}
	n := s.cfg.UDPSockets
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if !canReusePort {
		n = 1
	}
	lc := net.ListenConfig{Control: reusePort}
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("dnsredirect: listen udp %s: %w", s.cfg.Listen, err)
		}
		first := pc.(*net.UDPConn)
		bound := net.JoinHostPort(host, strconv.Itoa(first.LocalAddr().(*net.UDPAddr).Port))
		tcp, err := net.Listen("tcp", bound)
		if err != nil {
			first.Close()
			if port == "0" && attempt < 10 {
				continue // the port the kernel picked for UDP is taken for TCP
			}
			return fmt.Errorf("dnsredirect: listen tcp %s: %w", bound, err)
		}
		conns := []*net.UDPConn{first}
		for len(conns) < n {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				tcp.Close()
				return fmt.Errorf("dnsredirect: listen udp %s (socket %d): %w", bound, len(conns)+1, err)
			}
			conns = append(conns, pc.(*net.UDPConn))
		}
		for _, c := range conns {
			// Room for bursts (a GC pause, a scheduling hiccup) so they
			// do not drop queries; the kernel caps it at net.core.rmem_max.
			c.SetReadBuffer(udpReadBuffer)
		}
		s.udp, s.tcp = conns, tcp
		return nil
	}
}

// Addr is the address Listen bound ("127.0.0.1:5304"); "" before Listen.
func (s *Server) Addr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

// Close closes sockets opened by Listen when Serve will not run.
func (s *Server) Close() error {
	var errs []error
	for _, c := range s.udp {
		errs = append(errs, c.Close())
	}
	if s.tcp != nil {
		errs = append(errs, s.tcp.Close())
	}
	return errors.Join(errs...)
}

// Serve answers queries on the sockets Listen opened, runs the health
// checker and the refresh loop, and returns when ctx is done (after
// draining TCP connections for up to Config.Drain) or a socket fails.
func (s *Server) Serve(ctx context.Context) error {
	if s.tcp == nil {
		return errors.New("dnsredirect: Serve before Listen")
	}
	var servers []*dns.Server
	errc := make(chan error, len(s.udp)+1)
	started := make(chan struct{}, len(s.udp)+1)
	notify := func() { started <- struct{}{} }
	for _, c := range s.udp {
		r := &udpReader{s: s, ctr: s.newShard(), sc: newScratch(0), in: make([]byte, maxTCP)}
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
			r.plain = true // bound to one address: replies leave from it without control messages
		}
		servers = append(servers, &dns.Server{
			PacketConn: c, Handler: s, NotifyStartedFunc: notify,
			DecorateReader: func(dns.Reader) dns.Reader { return r },
		})
	}
	idle := s.cfg.TCPIdleTimeout.D()
	servers = append(servers, &dns.Server{
		Listener: s.tcp, Handler: s, NotifyStartedFunc: notify,
		ReadTimeout: s.cfg.TCPTimeout.D(), WriteTimeout: s.cfg.TCPTimeout.D(),
		IdleTimeout:    func() time.Duration { return idle },
		DecorateReader: func(inner dns.Reader) dns.Reader { return &tcpReader{s: s, inner: inner} },
	})
	for _, srv := range servers {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	var err error
	for range servers {
		select {
		case <-started:
		case err = <-errc:
		}
		if err != nil {
			break
		}
	}
	loops, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if err == nil {
		s.serving.Store(true)
		s.log.Info("dns serving", "addr", s.Addr(), "udp_sockets", len(s.udp), "zones", len(s.cfg.Zones), "sites", len(s.sites), "edges", len(s.edges))
		if s.checker != nil && !s.manual {
			wg.Go(func() { s.checker.Run(loops) })
		}
		wg.Go(func() { s.refreshLoop(loops) })
		select {
		case <-ctx.Done():
		case err = <-errc:
			err = fmt.Errorf("dnsredirect: serve: %w", err)
		}
	}
	s.serving.Store(false)
	stop()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Drain.D())
	defer cancel()
	for _, srv := range servers {
		srv.ShutdownContext(sctx) // a server that never started says so; nothing to do
	}
	s.Close()
	return err
}

// refreshLoop re-reads health and load every probe interval, so loads from
// probes and the expiry of pushed loads reach the answers.
func (s *Server) refreshLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Health.Interval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Refresh()
		}
	}
}

// udpReader answers UDP queries in the miekg/dns server's read loop: every
// message gets its reply here and none is handed on, so a query costs no
// goroutine and no message unpacking. One per socket; not shared.
type udpReader struct {
	s     *Server
	ctr   *counters
	sc    *scratch
	in    []byte
	plain bool
}

func (r *udpReader) ReadTCP(net.Conn, time.Duration) ([]byte, error) {
	return nil, errors.New("dnsredirect: TCP read on a UDP socket")
}

func (r *udpReader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		if r.plain {
			n, from, err := conn.ReadFromUDPAddrPort(r.in)
			if err != nil {
				return nil, nil, err
			}
			start := time.Now()
			if resp := r.s.respond(r.sc, r.ctr, r.in[:n], from.Addr(), true); resp != nil {
				if _, err := conn.WriteToUDPAddrPort(resp, from); err != nil {
					r.ctr.sendErrors.Add(1)
				}
				r.ctr.observe(time.Since(start))
			}
			continue
		}
		// A wildcard socket: the session remembers which local address the
		// query came to, so the reply leaves from it.
		n, sess, err := dns.ReadFromSessionUDP(conn, r.in)
		if err != nil {
			return nil, nil, err
		}
		start := time.Now()
		src, _ := netip.AddrFromSlice(sess.RemoteAddr().(*net.UDPAddr).IP)
		if resp := r.s.respond(r.sc, r.ctr, r.in[:n], src, true); resp != nil {
			if _, err := dns.WriteToSessionUDP(conn, resp, sess); err != nil {
				r.ctr.sendErrors.Add(1)
			}
			r.ctr.observe(time.Since(start))
		}
	}
}

// tcpReader answers the queries of one TCP connection in place, in order,
// up to Config.TCPMaxQueries; an error (including the client's EOF or an
// idle timeout) ends the connection.
type tcpReader struct {
	s     *Server
	inner dns.Reader
}

var errTooManyQueries = errors.New("dnsredirect: query limit for this TCP connection reached")

func (r *tcpReader) ReadUDP(*net.UDPConn, time.Duration) ([]byte, *dns.SessionUDP, error) {
	return nil, nil, errors.New("dnsredirect: UDP read on a TCP socket")
}

func (r *tcpReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	s := r.s
	sc := newScratch(2)
	src := addrOf(conn.RemoteAddr())
	for q := 0; q < s.cfg.TCPMaxQueries; q++ {
		m, err := r.inner.ReadTCP(conn, timeout)
		if err != nil {
			return nil, err
		}
		timeout = s.cfg.TCPIdleTimeout.D()
		start := time.Now()
		resp := s.respond(sc, s.shared, m, src, false)
		if resp == nil {
			continue
		}
		frame := sc.buf[:2+len(resp)]
		frame[0], frame[1] = byte(len(resp)>>8), byte(len(resp))
		conn.SetWriteDeadline(time.Now().Add(s.cfg.TCPTimeout.D()))
		if _, err := conn.Write(frame); err != nil {
			s.shared.sendErrors.Add(1)
			return nil, err
		}
		s.shared.observe(time.Since(start))
	}
	return nil, errTooManyQueries
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr()
	}
	return netip.Addr{}
}

// ServeDNS implements dns.Handler, for serving behind another miekg/dns
// server. It repacks the parsed message and answers it like the serving
// loops do.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	m, err := r.Pack()
	if err != nil {
		fail := new(dns.Msg)
		fail.SetRcodeFormatError(r)
		w.WriteMsg(fail)
		return
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	udp := w.LocalAddr().Network() == "udp"
	if resp := s.respond(sc, s.shared, m, addrOf(w.RemoteAddr()), udp); resp != nil {
		if _, err := w.Write(resp); err != nil {
			s.shared.sendErrors.Add(1)
		}
		s.shared.observe(time.Since(start))
	}
}

// Refresh re-reads every edge's health and probe load and republishes the
// answers if anything changed (the built-in checker calls it on every state
// change; so does the refresh loop, every probe interval).
func (s *Server) Refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readHealthLocked() {
		s.rebuildLocked()
	}
}

// readHealthLocked updates s.state from the health source and expires
// pushed loads; it reports whether anything changed.
func (s *Server) readHealthLocked() bool {
	changed := false
	now := s.now()
	for i, e := range s.edges {
		st := &s.state[i]
		up, load, has := true, 0.0, false
		if s.health != nil {
			up = s.health.Healthy(e.name)
			load, has = s.health.Load(e.name)
		}
		if up != st.up || has != st.hasProbe || (has && load != st.probeLoad) {
			changed = true
		}
		st.up, st.probeLoad, st.hasProbe = up, load, has
		if st.hasPushed && s.pushedTTL > 0 && now.Sub(st.pushedAt) >= s.pushedTTL {
			st.hasPushed = false
			changed = true
		}
	}
	return changed
}

// ProbeOnce runs one round of the built-in health probes and republishes
// the answers. Tests use it for deterministic rounds; without a built-in
// checker it only refreshes.
func (s *Server) ProbeOnce(ctx context.Context) {
	if s.checker != nil {
		s.checker.ProbeOnce(ctx)
	}
	s.Refresh()
}

// SetLoad records an edge's load as reported by management; it overrides
// the probe's load for Config.PushedLoadTTL. Lower is preferred; the unit is
// the caller's, consistently.
func (s *Server) SetLoad(edge string, load float64) error {
	if math.IsNaN(load) || math.IsInf(load, 0) || load < 0 {
		return fmt.Errorf("dnsredirect: load of edge %q must be a finite non-negative number, got %v", edge, load)
	}
	i, ok := s.edgeIdx[edge]
	if !ok {
		return fmt.Errorf("dnsredirect: unknown edge %q", edge)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.state[i]
	st.pushedLoad, st.pushedAt, st.hasPushed = load, s.now(), true
	s.rebuildLocked()
	return nil
}

// SetUnderAttack marks or clears an edge as under attack. While marked, the
// edge is answered with its site's scrubber address (if the site has one
// for the queried family).
func (s *Server) SetUnderAttack(edge string, on bool) error {
	i, ok := s.edgeIdx[edge]
	if !ok {
		return fmt.Errorf("dnsredirect: unknown edge %q", edge)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.state[i]
	if st.underAttack == on {
		return nil
	}
	st.underAttack = on
	site := s.sites[s.edges[i].site]
	if on {
		if !site.scrubber.IPv4.IsValid() && !site.scrubber.IPv6.IsValid() {
			s.log.Warn("edge under attack but its site has no scrubber: answering with the edge itself", "edge", edge, "site", site.name)
		} else {
			s.log.Warn("edge under attack: answering with the site's scrubber", "edge", edge, "site", site.name)
		}
	} else {
		s.log.Info("edge no longer under attack", "edge", edge, "site", site.name)
	}
	s.rebuildLocked()
	return nil
}

// Stats returns the counters and edge state, for a reporter to send to
// management.
func (s *Server) Stats() Stats {
	t := s.m.total()
	var count uint64
	for _, b := range t.buckets {
		count += b
	}
	st := Stats{
		Queries: t.queries, Truncated: t.truncated, Dropped: t.dropped, SendErrors: t.sendErrors,
		GeoCacheHits: t.geoHit, GeoLookups: t.geoMiss, GeoErrors: t.geoErr,
		AnswerCount: count, AnswerTimeMean: meanDuration(t.sumNanos, count),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.FailOpen = s.snap.Load().failOpen
	now := s.now()
	for i, e := range s.edges {
		es := &s.state[i]
		st.Edges = append(st.Edges, EdgeStatus{Name: e.name, Site: s.sites[e.site].name, Healthy: es.up,
			Load: es.load(now, s.pushedTTL), UnderAttack: es.underAttack})
	}
	return st
}

// Healthz is nil while the server is serving.
func (s *Server) Healthz() error {
	if !s.serving.Load() {
		return errors.New("dns: not serving")
	}
	return nil
}
