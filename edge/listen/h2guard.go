package listen

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// The HTTP/2 guard reads each client connection's frames as they pass from
// TLS to the HTTP/2 server (golang.org/x/net/http2) and ends the connection
// on floods that server lets through:
//
//   - Rapid reset (CVE-2023-44487): requests cancelled at once with
//     RST_STREAM. The server bounds the handlers running at once but never
//     closes a connection whose handlers finish fast, so a client can make
//     it start requests without limit. The guard ends the connection once
//     the client has reset at least MaxResets streams and at least half of
//     the streams it opened (a browser cancels a few; an attack cancels all).
//   - CONTINUATION floods (CVE-2024-27316 and kin): a header block that
//     never ends. The server stops decoding past its header list limit, but
//     empty CONTINUATION frames decode to nothing and it reads them forever.
//     The guard ends the connection once one header block (HEADERS and
//     CONTINUATION frames, frame headers included) passes MaxHeaderBlock
//     bytes, or has taken longer than HeaderTimeout to arrive.
//
// Ending a connection closes it at once: the guard's Read returns an error,
// and the server drops every stream and closes. A flood gets no GOAWAY and
// no grace period: a graceful end would keep the connection, its handlers
// and their memory for another second, and a client opening connections as
// fast as it can would hold that memory times its rate.
//
// The guard also keeps the idle timeout of HTTP/2 connections (the server's
// own is off). The server re-arms its idle timer while it closes a
// connection that still has streams open, which keeps every such
// connection's memory (about 20 KiB) alive for the whole idle timeout after
// it closed: under a flood of connections the server closes, memory grows
// with the attack rate times the idle timeout. The guard's timer stops when
// the connection is done.
//
// Everything else (HPACK limits, MAX_CONCURRENT_STREAMS, control-frame
// floods, flow control) stays with the server.

// H2Options configures GuardHTTP2. Zero fields get the defaults.
type H2Options struct {
	// MaxHeaderBlock bounds one header block on the wire. Default 64 KiB.
	MaxHeaderBlock int
	// HeaderTimeout bounds the time from a header block's first frame to
	// its last. Default 10s; the edge passes limits.read_header_timeout.
	HeaderTimeout time.Duration
	// MaxResets is how many streams a client may reset before the reset
	// ratio is checked. Default 200.
	MaxResets int
	// MaxConcurrentStreams is advertised in SETTINGS. Default 100.
	MaxConcurrentStreams uint32
	// IdleTimeout closes (GOAWAY NO_ERROR) a connection with no open stream
	// for this long. Default: the http.Server's IdleTimeout; none if that is 0.
	IdleTimeout time.Duration
	Metrics     *H2Metrics // may be nil
	Log         *slog.Logger
}

func (o *H2Options) defaults(srv *http.Server) {
	if o.MaxHeaderBlock <= 0 {
		o.MaxHeaderBlock = 64 << 10
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 10 * time.Second
	}
	if o.MaxResets <= 0 {
		o.MaxResets = 200
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 100
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = srv.IdleTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// GuardHTTP2 makes srv, a server that will serve TLS, speak HTTP/2 through
// golang.org/x/net/http2 with every connection behind the guard. Call it
// after setting srv.TLSConfig, srv.IdleTimeout and srv.MaxHeaderBytes,
// before serving. It wraps srv.ConnState (which the HTTP/2 server calls
// with the guarded connection).
//
// It doubles srv.MaxHeaderBytes: the HTTP/2 server advertises and decodes
// header lists up to that size and answers a larger one with a connection
// error, not a status; so a head between one and two times the limit must
// get its 431 from the handler, which has to check the size itself (the
// edge engine does, for every protocol).
func GuardHTTP2(srv *http.Server, opts H2Options) error {
	opts.defaults(srv)
	if srv.MaxHeaderBytes > 0 {
		srv.MaxHeaderBytes *= 2
	}
	// IdleTimeout < 0: no idle timer in the server; the guard keeps it.
	h2 := &http2.Server{MaxConcurrentStreams: opts.MaxConcurrentStreams, IdleTimeout: -1}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return fmt.Errorf("listen: http2: %w", err)
	}
	srv.TLSNextProto["h2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// net/http passes its per-connection context through the handler,
		// as x/net/http2's own hook reads it.
		var ctx context.Context
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		g := newGuardConn(c, &opts)
		h2.ServeConn(g, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
		g.done()
	}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if g, ok := c.(*guardConn); ok {
			g.connState(st)
		}
		if prev != nil {
			prev(c, st)
		}
	}
	return nil
}

// Why the guard ended a connection: the reason label of the metric.
const (
	reasonRapidReset    = "rapid_reset"
	reasonHeaderBlock   = "header_block"
	reasonHeaderTimeout = "header_timeout"
)

// errGuard is why the guard ended a connection, for the log.
type errGuard struct{ msg string }

func (e *errGuard) Error() string { return "listen: http2 guard: " + e.msg }

// errEnded is what Read returns once the guard ended a connection: the
// server closes it at once.
var errEnded = errors.New("listen: http2 connection ended by the guard")

// errIdle is what Read returns when the connection has been idle: as a
// connection error it makes the server send GOAWAY(NO_ERROR) and close.
var errIdle = http2.ConnectionError(http2.ErrCodeNo)

// HTTP/2 frame types and flags the guard reads (RFC 9113 section 6).
const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	frameHeaderLen    = 9
)

// guardConn is a TLS connection whose reads pass through the frame scanner.
// Only the server's frame-reading goroutine calls Read, so the scanner's
// state needs no lock.
type guardConn struct {
	*tls.Conn
	opts *H2Options
	now  func() time.Time
	rd   func(time.Time) error // sets the read deadline (tests stub it)

	preface int                  // client preface bytes still to pass
	hdr     [frameHeaderLen]byte // the frame header being collected
	hn      int                  // bytes of hdr collected
	left    int                  // payload bytes of the current frame still to pass

	inBlock    bool // between a HEADERS frame and the end of its END_HEADERS frame
	endHeaders bool // the current frame ends the header block
	blockBytes int
	deadline   bool // a read deadline is armed for the header block

	streams, resets int
	lastStream      uint32

	ended  bool   // the guard ended the connection
	reason string // why, for the metric

	idleMu    sync.Mutex  // guards idleTimer, idle and closed
	idleTimer *time.Timer // runs while the connection has no open stream
	idle      bool        // the server said the connection is idle
	closed    bool        // ServeConn returned: no more timers
	idleFired atomic.Bool
}

func newGuardConn(c *tls.Conn, opts *H2Options) *guardConn {
	return &guardConn{Conn: c, opts: opts, preface: len(http2.ClientPreface), now: time.Now, rd: c.SetReadDeadline}
}

// Read reads from TLS and scans what it read. On a flood it returns
// errEnded instead of the bytes.
func (g *guardConn) Read(p []byte) (int, error) {
	if g.ended {
		return 0, errEnded
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		if serr := g.scan(p[:n]); serr != nil {
			g.end(serr)
			return 0, errEnded
		}
	}
	if err != nil && isTimeout(err) {
		switch {
		case g.deadline: // a header block is in progress, idle or not
			g.reason = reasonHeaderTimeout
			g.end(&errGuard{fmt.Sprintf("header block not complete within %v", g.opts.HeaderTimeout)})
			return n, errEnded
		case g.idleFired.Load():
			return n, errIdle
		}
	}
	return n, err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// end records that the guard ends the connection.
func (g *guardConn) end(err error) {
	g.ended = true
	g.opts.Metrics.inc(g.reason)
	g.opts.Log.Debug("http2 connection ended by the guard", "remote", g.RemoteAddr().String(), "err", err)
}

// scan walks the client's byte stream frame by frame.
func (g *guardConn) scan(b []byte) error {
	for len(b) > 0 {
		switch {
		case g.preface > 0:
			k := min(g.preface, len(b))
			g.preface -= k
			b = b[k:]
		case g.left > 0:
			k := min(g.left, len(b))
			g.left -= k
			b = b[k:]
			if g.left == 0 {
				g.frameDone()
			}
		default:
			k := copy(g.hdr[g.hn:], b)
			g.hn += k
			b = b[k:]
			if g.hn < frameHeaderLen {
				return nil
			}
			g.hn = 0
			length := int(g.hdr[0])<<16 | int(g.hdr[1])<<8 | int(g.hdr[2])
			if err := g.frame(length, g.hdr[3], g.hdr[4], binary.BigEndian.Uint32(g.hdr[5:])&0x7fffffff); err != nil {
				return err
			}
			g.left = length
			if length == 0 {
				g.frameDone()
			}
		}
	}
	return nil
}

// frame judges a frame by its header, before its payload.
func (g *guardConn) frame(length int, typ, flags byte, stream uint32) error {
	switch typ {
	case frameHeaders:
		if stream > g.lastStream { // a new stream, not trailers
			g.streams++
			g.lastStream = stream
		}
		g.inBlock, g.blockBytes = true, 0
		if !g.deadline {
			g.rd(g.now().Add(g.opts.HeaderTimeout))
			g.deadline = true
		}
		fallthrough
	case frameContinuation:
		// A CONTINUATION outside a block is the server's protocol error to
		// report; it counts as a block of its own here.
		g.blockBytes += frameHeaderLen + length
		g.endHeaders = flags&flagEndHeaders != 0
		if g.blockBytes > g.opts.MaxHeaderBlock {
			g.reason = reasonHeaderBlock
			return &errGuard{fmt.Sprintf("header block of more than %d bytes", g.opts.MaxHeaderBlock)}
		}
	case frameRSTStream:
		g.resets++
		if g.resets >= g.opts.MaxResets && 2*g.resets >= g.streams {
			g.reason = reasonRapidReset
			return &errGuard{fmt.Sprintf("%d of %d streams reset by the client", g.resets, g.streams)}
		}
	default:
		g.endHeaders = false
	}
	return nil
}

// frameDone is called when a frame's payload has been read.
func (g *guardConn) frameDone() {
	if g.inBlock && g.endHeaders {
		g.inBlock, g.endHeaders = false, false
		if g.deadline {
			g.rd(time.Time{})
			g.deadline = false
		}
	}
}

// connState follows the server's view of the connection: idle (no open
// stream) arms the idle timer, active stops it.
func (g *guardConn) connState(st http.ConnState) {
	if g.opts.IdleTimeout <= 0 {
		return
	}
	g.idleMu.Lock()
	defer g.idleMu.Unlock()
	if g.closed {
		return
	}
	g.idle = st == http.StateIdle
	switch st {
	case http.StateIdle:
		if g.idleTimer == nil {
			g.idleTimer = time.AfterFunc(g.opts.IdleTimeout, g.onIdle)
		} else {
			g.idleTimer.Reset(g.opts.IdleTimeout)
		}
	default:
		if g.idleTimer != nil {
			g.idleTimer.Stop()
		}
	}
}

// onIdle wakes the frame reader with an expired deadline; Read then
// returns errIdle and the server says GOAWAY(NO_ERROR) and closes.
func (g *guardConn) onIdle() {
	g.idleMu.Lock()
	defer g.idleMu.Unlock()
	if g.closed || !g.idle {
		return
	}
	g.idleFired.Store(true)
	g.rd(time.Unix(1, 0))
}

// done is called when the server is finished with the connection.
func (g *guardConn) done() {
	g.idleMu.Lock()
	defer g.idleMu.Unlock()
	g.closed = true
	if g.idleTimer != nil {
		g.idleTimer.Stop()
	}
}
