package scrubber

import (
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/vergecdn/verge/scrubber/iplist"
)

// Listener wraps ln so that connections are screened at accept, before a
// goroutine or a buffer is spent on them: deny-listed sources, sources in the
// penalty box (with connections.close_penalized) and sources already holding
// connections.per_client connections are disconnected at once (with a reset,
// so no TIME_WAIT piles up here). Allow-listed sources are not capped.
func (s *Scrubber) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, s: s}
}

type listener struct {
	net.Listener
	s *Scrubber
}

func (l *listener) Accept() (net.Conn, error) {
	s := l.s
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a, ok := connAddr(c)
		if !ok {
			s.m.connOpen.Inc()
			return &trackedConn{Conn: c, s: s}, nil
		}
		tc := &trackedConn{Conn: c, s: s, addr: a}
		if s.screenConn(a, tc) {
			s.m.connOpen.Inc()
			return tc, nil
		}
		abort(c)
	}
}

// screenConn decides whether a new connection from a may stay; when the
// per-client cap applies it takes a slot in tc.
func (s *Scrubber) screenConn(a netip.Addr, tc *trackedConn) bool {
	switch s.lists.Load().Lookup(a) {
	case iplist.Deny:
		s.m.connDeny.Inc()
		return false
	case iplist.Allow:
		return true
	}
	if s.cfg.Connections.ClosePenalized {
		now := s.nowNanos()
		p := s.pol.Load()
		if p.penalty && ((p.perIP && s.perIP != nil && s.perIP.InBox(ipKey(a), now)) ||
			(p.perPrefix && s.perPrefix != nil && s.perPrefix.InBox(s.prefixKey(a), now))) {
			s.m.connBoxed.Inc()
			return false
		}
	}
	if n := s.cfg.Connections.PerClient; n > 0 {
		if !s.conns.acquire(a, n) {
			s.m.connLimit.Inc()
			return false
		}
		tc.counted = true
	}
	return true
}

// abort closes c with a reset rather than a FIN handshake.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// connAddr is c's remote address, unmapped; false when it has none.
func connAddr(c net.Conn) (netip.Addr, bool) {
	switch ra := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		a := ra.AddrPort().Addr()
		return a.Unmap(), a.IsValid()
	case *net.UDPAddr:
		a := ra.AddrPort().Addr()
		return a.Unmap(), a.IsValid()
	}
	return netip.Addr{}, false
}

// trackedConn gives back its per-client slot when closed.
type trackedConn struct {
	net.Conn
	s       *Scrubber
	addr    netip.Addr // invalid when the connection has no IP source
	counted bool       // holds a slot in s.conns
	closed  atomic.Bool
}

func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.counted {
			c.s.conns.release(c.addr)
		}
		c.s.m.connOpen.Dec()
	}
	return c.Conn.Close()
}

// connTracker counts open connections per source. Entries exist only while
// a source has connections open, so it is bounded by the open connections.
type connTracker struct {
	mu sync.Mutex // guards n
	n  map[netip.Addr]int32
}

func (t *connTracker) init() { t.n = map[netip.Addr]int32{} }

func (t *connTracker) acquire(a netip.Addr, limit int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(t.n[a]) >= limit {
		return false
	}
	t.n[a]++
	return true
}

func (t *connTracker) release(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[a] <= 1 {
		delete(t.n, a)
		return
	}
	t.n[a]--
}

// open returns how many connections a holds (for tests and status).
func (t *connTracker) open(a netip.Addr) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(t.n[a])
}

// HTTPServer returns an http.Server for h with the slow-client protection of
// the config's connections section: ReadHeaderTimeout, ReadTimeout (header
// plus body), WriteTimeout, IdleTimeout and MaxHeaderBytes. net/http applies
// the read and write timeouts to a whole request and a whole response (the
// fast front end applies the body and write timeouts between reads and
// writes instead); an edge serving large objects to slow clients should size
// connections.write_timeout for them. Serve it on s.Listener(ln) to get the
// connection limits too.
func (s *Scrubber) HTTPServer(h http.Handler, errorLog *log.Logger) *http.Server {
	c := s.cfg.Connections
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout.D(),
		ReadTimeout:       c.ReadHeaderTimeout.D() + c.BodyReadTimeout.D(),
		WriteTimeout:      c.WriteTimeout.D(),
		IdleTimeout:       c.IdleTimeout.D(),
		MaxHeaderBytes:    int(c.MaxHeaderBytes),
		ErrorLog:          errorLog,
	}
}
