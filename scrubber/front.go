package scrubber

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Front is the standalone scrubber's HTTP/1.1 server. Where net/http parses
// a request (and allocates its header map, URL and body) before any handler
// runs, Front runs the address stages as soon as a request's first byte
// arrives, from the connection's source address alone. A refused request's
// head is only framed (its end found, and whether a body follows) and
// answered with pre-built bytes: no parsing, no allocation, no log line. An
// admitted request is parsed with http.ReadRequest and served by an
// http.Handler as usual (request stages, then the proxy).
//
// Slow clients: the first request must arrive within read_header_timeout of
// the connection, later ones within idle_timeout of the previous response; a
// header must arrive within read_header_timeout of its first byte and fit in
// max_header_bytes (else 431 and the connection is closed); a body may pause
// at most body_read_timeout between reads, and the client may stall a
// response at most write_timeout between writes.
//
// What it does not do: TLS, HTTP/2, and noticing that a client went away
// while its request waits for the upstream (the upstream timeout bounds
// that). A refused request that carries a body, or a head larger than the
// 4 KiB read buffer, is answered and the connection closed rather than
// read through.
type Front struct {
	s     *Scrubber
	after http.Handler // admitted requests: request stages, then next
	next  http.Handler // allow-listed requests
	log   *slog.Logger

	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex // guards conns and listeners
	conns     map[*frontConn]struct{}
	listeners map[net.Listener]struct{}
	shutdown  atomic.Bool

	date atomic.Pointer[dateLine]
}

// NewFront returns a front end that serves next behind every stage.
func (s *Scrubber) NewFront(next http.Handler) *Front {
	f := &Front{s: s, after: s.requestStages(next), next: next, log: s.log,
		conns: map[*frontConn]struct{}{}, listeners: map[net.Listener]struct{}{}}
	f.baseCtx, f.cancel = context.WithCancel(context.Background())
	return f
}

// Serve accepts connections on ln (wrapped with the scrubber's Listener, so
// connection limits apply) until Shutdown or Close, then returns
// http.ErrServerClosed.
func (f *Front) Serve(ln net.Listener) error {
	ln = f.s.Listener(ln)
	f.mu.Lock()
	if f.shutdown.Load() {
		f.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	f.listeners[ln] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.listeners, ln)
		f.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if f.shutdown.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.log.Warn("scrubber: accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("scrubber: accept: %w", err)
		}
		backoff = 0
		c := f.newConn(nc)
		f.mu.Lock()
		if f.shutdown.Load() {
			f.mu.Unlock()
			nc.Close()
			return http.ErrServerClosed
		}
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets active requests
// finish (their connections close after the response), and returns when
// every connection is gone or ctx is done.
func (f *Front) Shutdown(ctx context.Context) error {
	f.shutdown.Store(true)
	f.closeListeners()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if f.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (f *Front) Close() error {
	f.shutdown.Store(true)
	f.closeListeners()
	f.mu.Lock()
	for c := range f.conns {
		c.state.Store(stateClosed)
		c.nc.Close()
	}
	f.mu.Unlock()
	f.cancel()
	return nil
}

func (f *Front) closeListeners() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ln := range f.listeners {
		ln.Close()
	}
}

// closeIdle closes connections waiting for a request and reports whether
// none are left.
func (f *Front) closeIdle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.nc.Close()
		}
	}
	return len(f.conns) == 0
}

// dateLine is a cached "Date: ...\r\n" line for one second.
type dateLine struct {
	sec  int64
	line []byte
}

func (f *Front) dateLine(now time.Time) []byte {
	sec := now.Unix()
	if d := f.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	b := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	b = append(b, "\r\n"...)
	f.date.Store(&dateLine{sec: sec, line: b})
	return b
}

const (
	stateIdle   int32 = iota // waiting for a request; Shutdown may close it
	stateActive              // serving a request
	stateClosed
)

// readBufSize is the per-connection read buffer; a refused request's head
// must fit in it to be framed.
const readBufSize = 4096

type frontConn struct {
	f     *Front
	s     *Scrubber
	nc    net.Conn
	addr  netip.Addr
	keyed bool
	lr    connReader
	br    *bufio.Reader
	cw    connWriter
	bw    *bufio.Writer
	state atomic.Int32
	rdl   time.Time // read deadline in force (conn goroutine only)

	wmu sync.Mutex  // guards bw and cur's writes (a body reader may send 100 Continue from the upstream's goroutine)
	cur *respWriter // the response in progress

	hijacked bool
	remote   string // RemoteAddr for admitted requests, built once
}

func (f *Front) newConn(nc net.Conn) *frontConn {
	c := &frontConn{f: f, s: f.s, nc: nc}
	if tc, ok := nc.(*trackedConn); ok && tc.addr.IsValid() {
		c.addr, c.keyed = tc.addr, true
	} else if a, ok := connAddr(nc); ok {
		c.addr, c.keyed = a, true
	}
	c.lr.nc = nc
	c.cw = connWriter{nc: nc, timeout: f.s.cfg.Connections.WriteTimeout.D()}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.lr)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(&c.cw)
	return c
}

// The connections' buffers are reused (a flood of short connections would
// otherwise allocate 8 KiB each).
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// release returns the buffers; the connection is done with them.
func (c *frontConn) release() {
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	c.br, c.bw = nil, nil
}

// connReader reads from the connection, at most remain bytes while a head
// is being read (so an endless header cannot grow memory); hit records that
// the cap was reached.
type connReader struct {
	nc     net.Conn
	remain int64
	hit    bool
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.remain <= 0 {
		r.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.nc.Read(p)
	r.remain -= int64(n)
	return n, err
}

// connWriter writes to the connection with a deadline that is pushed
// forward as writes make progress: a client may stall a response at most
// timeout (and at least timeout/2) between writes. The deadline is moved at
// most once per timeout/2, so a stream of small responses costs no timer
// updates.
type connWriter struct {
	nc      net.Conn
	timeout time.Duration
	dl      time.Time
}

func (w *connWriter) Write(p []byte) (int, error) {
	now := time.Now()
	if w.dl.Sub(now) < w.timeout/2 {
		w.dl = now.Add(w.timeout)
		w.nc.SetWriteDeadline(w.dl)
	}
	return w.nc.Write(p)
}

func (c *frontConn) serve() {
	defer func() {
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
		if !c.hijacked {
			c.nc.Close()
			// Hijacked connections keep theirs: the handler holds them.
			c.release()
		}
	}()
	cfg := &c.s.cfg.Connections
	idle, hdr := cfg.IdleTimeout.D(), cfg.ReadHeaderTimeout.D()
	maxHead := int64(cfg.MaxHeaderBytes) + readBufSize
	first := true
	for {
		now := time.Now()
		if first {
			c.rdl = now.Add(hdr)
			c.nc.SetReadDeadline(c.rdl)
		} else if c.rdl.Before(now.Add(idle/2)) || c.rdl.After(now.Add(idle)) {
			// Moved at most once per idle/2: an idle connection is closed
			// after between idle/2 and idle without a request.
			c.rdl = now.Add(idle)
			c.nc.SetReadDeadline(c.rdl)
		}
		c.lr.remain, c.lr.hit = maxHead, false
		if _, err := c.br.Peek(1); err != nil {
			if first && isTimeout(err) {
				c.s.m.slowClosed.WithLabelValues("header_timeout").Inc()
			}
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		first = false
		if !c.serveOne() || c.f.shutdown.Load() || !c.state.CompareAndSwap(stateActive, stateIdle) {
			return
		}
	}
}

// serveOne serves the request whose first byte is buffered and reports
// whether the connection may carry another.
func (c *frontConn) serveOne() bool {
	if !c.keyed {
		c.s.m.unkeyed.Inc()
		return c.serveAdmitted(c.f.next)
	}
	now := c.s.nowNanos()
	r, p := c.s.admit(c.addr, now)
	switch {
	case r.refuses():
		return c.refuse(r, p, now)
	case r == rAllow:
		return c.serveAdmitted(c.f.next)
	}
	return c.serveAdmitted(c.f.after)
}

var errHeadTooBig = errors.New("request head larger than the read buffer")

// refuse answers a refused request with its pre-built response. Only the
// head is framed; the connection stays open when the head was complete, had
// no body and did not ask to close.
func (c *frontConn) refuse(r reason, p *policy, now int64) bool {
	n, keep, err := c.frameHead()
	switch {
	case errors.Is(err, errHeadTooBig):
		n, keep = c.br.Buffered(), false
	case err != nil:
		if isTimeout(err) {
			c.s.m.slowClosed.WithLabelValues("header_timeout").Inc()
		}
		return false
	}
	keep = keep && !p.resp[r].close && !c.f.shutdown.Load()
	c.br.Discard(n)
	b := p.wireReject(r, !keep, (c.s.epochNS+now)/1e9)
	if _, err := c.cw.Write(b); err != nil {
		return false
	}
	if !keep {
		if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else if tc, ok := c.nc.(*trackedConn); ok {
			if cw, ok := tc.Conn.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		}
	}
	return keep
}

// frameHead finds the end of the buffered request head, reading more under
// the header timeout when it is incomplete.
func (c *frontConn) frameHead() (n int, keep bool, err error) {
	deadline := false
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		n, keep, done := scanHead(buf)
		if done {
			return n, keep, nil
		}
		if c.br.Buffered() >= c.br.Size() {
			return 0, false, errHeadTooBig
		}
		if !deadline {
			deadline = true
			c.rdl = time.Now().Add(c.s.cfg.Connections.ReadHeaderTimeout.D())
			c.nc.SetReadDeadline(c.rdl)
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			return 0, false, err
		}
	}
}

// scanHead frames an HTTP/1.x request head in b without parsing it: n is
// the length through the blank line that ends it, done whether that line is
// in b, and keep whether the connection can carry another request after a
// refusal: HTTP/1.1, no request body (no Transfer-Encoding, no
// Content-Length other than 0), no "Connection: close", and nothing odd
// (a header line without a colon or with a non-token name, obsolete line
// folding). keep is conservative: when in doubt the connection is closed.
func scanHead(b []byte) (n int, keep bool, done bool) {
	keep = true
	i := 0
	// RFC 9112 section 2.2: a server should ignore at least one empty line
	// before the request line.
	for k := 0; k < 4; k++ {
		switch {
		case i < len(b) && b[i] == '\n':
			i++
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			i += 2
		default:
			k = 4
		}
	}
	for line := 0; ; line++ {
		j := indexByte(b[i:], '\n')
		if j < 0 {
			return 0, false, false
		}
		l := b[i : i+j]
		i += j + 1
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if len(l) == 0 {
			if line == 0 {
				return i, false, true // no request line at all
			}
			return i, keep, true
		}
		if line == 0 {
			keep = hasSuffix(l, " HTTP/1.1")
			continue
		}
		if keep {
			keep = headerKeeps(l)
		}
	}
}

// hasBothLengths reports whether a request head (through its blank line)
// has both a Content-Length and a Transfer-Encoding field.
func hasBothLengths(head []byte) bool {
	var cl, te bool
	for len(head) > 0 {
		j := indexByte(head, '\n')
		if j < 0 {
			j = len(head) - 1
		}
		l := head[:j]
		head = head[j+1:]
		if colon := indexByte(l, ':'); colon > 0 {
			name := l[:colon]
			cl = cl || equalFold(name, "content-length")
			te = te || equalFold(name, "transfer-encoding")
		}
	}
	return cl && te
}

func headerKeeps(l []byte) bool {
	colon := indexByte(l, ':')
	if colon <= 0 {
		return false
	}
	name := l[:colon]
	for _, ch := range name {
		if !httpguts.IsTokenRune(rune(ch)) {
			return false // includes obs-fold (leading space) and "Name :"
		}
	}
	v := trimOWS(l[colon+1:])
	switch {
	case equalFold(name, "content-length"):
		return len(v) == 1 && v[0] == '0'
	case equalFold(name, "transfer-encoding"):
		return false
	case equalFold(name, "connection"):
		return !containsFold(v, "close")
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares b with the lower-case ASCII s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether the lower-case ASCII s occurs in b.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if equalFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

// serveAdmitted parses the request and runs h on it.
func (c *frontConn) serveAdmitted(h http.Handler) bool {
	cfg := &c.s.cfg.Connections
	c.rdl = time.Now().Add(cfg.ReadHeaderTimeout.D())
	c.nc.SetReadDeadline(c.rdl)
	// http.ReadRequest drops Content-Length when Transfer-Encoding is
	// present, so look at the head first while it sits in the buffer.
	buffered, _ := c.br.Peek(c.br.Buffered())
	headLen, _, headWhole := scanHead(buffered)
	framingConflict := headWhole && hasBothLengths(buffered[:headLen])
	req, err := http.ReadRequest(c.br)
	if err != nil {
		switch {
		case c.lr.hit:
			c.s.m.slowClosed.WithLabelValues("header_too_large").Inc()
			c.writeError(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		case isTimeout(err):
			c.s.m.slowClosed.WithLabelValues("header_timeout").Inc()
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		default:
			c.s.m.slowClosed.WithLabelValues("bad_request").Inc()
			c.writeError(http.StatusBadRequest, "malformed request")
		}
		return false
	}
	c.lr.remain = math.MaxInt64
	if len(req.TransferEncoding) > 0 && (framingConflict || !headWhole) {
		// RFC 9112 section 6.1: after a request with both Content-Length
		// and Transfer-Encoding the connection must close, so a proxy in
		// front that framed it by Content-Length cannot pass a second
		// request through. A chunked request whose head was not whole in
		// the buffer cannot be checked, and closes too.
		req.Close = true
	}
	if code, msg := checkRequest(req); code != 0 {
		c.s.m.slowClosed.WithLabelValues("bad_request").Inc()
		c.writeError(code, msg)
		return false
	}
	if c.remote == "" {
		c.remote = c.nc.RemoteAddr().String()
	}
	req.RemoteAddr = c.remote
	ctx, cancel := context.WithCancel(c.f.baseCtx)
	defer cancel()
	req = req.WithContext(ctx)
	var body *bodyReader
	if req.Body != nil && req.Body != http.NoBody {
		body = &bodyReader{c: c, rc: req.Body, timeout: cfg.BodyReadTimeout.D(),
			expect: req.ProtoAtLeast(1, 1) && hasToken(req.Header["Expect"], "100-continue")}
		req.Body = body
		// However the handler ends, no reader (the upstream transport's
		// goroutine may still hold the body) touches the connection's
		// buffer after this request: Close waits for a read in flight.
		defer body.Close()
	}
	w := &respWriter{c: c, req: req, h: make(http.Header, 8), cl: -1}
	c.wmu.Lock()
	c.cur = w
	c.wmu.Unlock()
	if !c.runHandler(h, w, req) {
		return false
	}
	if w.hijacked {
		c.hijacked = true
		return false
	}
	c.wmu.Lock()
	err = w.finish()
	c.cur = nil
	c.wmu.Unlock()
	// Body reads moved the read deadline without updating c.rdl: make the
	// idle wait set it afresh.
	c.rdl = time.Time{}
	if err != nil {
		return false
	}
	if body != nil && !body.drain() {
		return false
	}
	return !w.closeAfter && !req.Close
}

// checkRequest applies the checks net/http's server makes after parsing.
func checkRequest(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "HTTP/1.x only"
	}
	if req.Method == http.MethodConnect {
		return http.StatusMethodNotAllowed, "CONNECT is not supported"
	}
	// http.ReadRequest has moved the Host header to req.Host (and refused
	// more than one).
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		return http.StatusBadRequest, "missing required Host header"
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	if ex, ok := req.Header["Expect"]; ok && !(len(ex) == 1 && strings.EqualFold(strings.TrimSpace(ex[0]), "100-continue")) {
		return http.StatusExpectationFailed, "unsupported Expect"
	}
	return 0, ""
}

func hasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

// writeError answers with a short text error and the connection's end.
func (c *frontConn) writeError(code int, msg string) {
	body := strconv.Itoa(code) + " " + msg + "\n"
	var b []byte
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	b = append(b, c.f.dateLine(time.Now())...)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.cw.Write(b)
}

// runHandler runs h and reports whether it returned normally.
func (c *frontConn) runHandler(h http.Handler, w *respWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				c.f.log.Error("scrubber: handler panic", "panic", v, "stack", string(debug.Stack()))
			}
		}
	}()
	h.ServeHTTP(w, req)
	return true
}

// bodyReader is an admitted request's body: it sends 100 Continue when the
// client asked for it, bounds each read by body_read_timeout, and lets the
// connection drain what the handler left unread.
type bodyReader struct {
	mu      sync.Mutex // guards every field; the upstream transport reads from its own goroutine
	c       *frontConn
	rc      io.ReadCloser
	timeout time.Duration
	expect  bool // 100 Continue not sent yet
	sawEOF  bool
	closed  bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.sawEOF {
		return 0, io.EOF
	}
	c := b.c
	if b.expect {
		b.expect = false
		c.wmu.Lock()
		if w := c.cur; w != nil && !w.wroteHeader && !w.hijacked {
			c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			c.bw.Flush()
		}
		c.wmu.Unlock()
	}
	c.nc.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.sawEOF = true
	} else if err != nil && isTimeout(err) {
		c.s.m.slowClosed.WithLabelValues("body_timeout").Inc()
	}
	return n, err
}

func (b *bodyReader) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// maxDrain is how much unread body is read through to keep a connection.
const maxDrain = 256 << 10

// drain reads what is left of the body (up to maxDrain) and reports whether
// the connection can carry another request.
func (b *bodyReader) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.sawEOF {
		return true
	}
	if b.expect {
		return false // the client is still waiting to send it
	}
	b.c.nc.SetReadDeadline(time.Now().Add(b.timeout))
	_, err := io.CopyN(io.Discard, b.rc, maxDrain)
	return err == io.EOF
}

// respWriter is the http.ResponseWriter of an admitted request. All its
// writes go through the connection's bufio.Writer under c.wmu.
type respWriter struct {
	c           *frontConn
	req         *http.Request
	h           http.Header
	status      int
	wroteHeader bool
	bodyOK      bool
	chunked     bool
	trailers    []string // announced trailer names (chunked only)
	cl          int64    // declared Content-Length, -1 unknown
	written     int64
	closeAfter  bool
	hijacked    bool
	err         error // sticky write error
	scratch     [20]byte
}

var (
	_ http.ResponseWriter = (*respWriter)(nil)
	_ http.Flusher        = (*respWriter)(nil)
	_ http.Hijacker       = (*respWriter)(nil)
)

func (w *respWriter) Header() http.Header { return w.h }

func (w *respWriter) WriteHeader(code int) {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	w.writeHeader(code)
}

// excluded headers are the ones the front end writes itself.
var (
	excludeHop      = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Keep-Alive": true, "Trailer": true}
	excludeHopKeep  = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Keep-Alive": true}
	excludeInterim  = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Keep-Alive": true, "Trailer": true, "Content-Length": true}
	statusLinePrefx = "HTTP/1.1 "
)

func (w *respWriter) statusLine(code int) {
	bw := w.c.bw
	bw.WriteString(statusLinePrefx)
	bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// writeHeader sends the status line and header; c.wmu is held.
func (w *respWriter) writeHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	bw := w.c.bw
	if code < 200 && code != http.StatusSwitchingProtocols {
		// Interim response (103 Early Hints, ...): sent now, the final
		// one still to come.
		w.statusLine(code)
		w.h.WriteSubset(bw, excludeInterim)
		bw.WriteString("\r\n")
		if err := bw.Flush(); err != nil {
			w.err = err
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.h
	w.bodyOK = code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified && w.req.Method != http.MethodHead
	if code == http.StatusNoContent || code < 200 {
		delete(h, "Content-Length")
	}
	if cls, ok := h["Content-Length"]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(first(cls)), 10, 64)
		if err != nil || n < 0 || len(cls) != 1 {
			delete(h, "Content-Length")
		} else {
			w.cl = n
		}
	}
	if hasToken(h["Connection"], "close") || w.req.Close || w.c.f.shutdown.Load() {
		w.closeAfter = true
	}
	if w.bodyOK && w.cl < 0 {
		if w.req.ProtoAtLeast(1, 1) {
			w.chunked = true
		} else {
			w.closeAfter = true // the body ends with the connection
		}
	}
	exclude := excludeHop
	if w.chunked {
		for _, v := range h["Trailer"] {
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(t))
				}
			}
		}
		if len(w.trailers) > 0 {
			exclude = excludeHopKeep
		}
	}
	w.statusLine(code)
	if code == http.StatusSwitchingProtocols {
		h.Write(bw)
	} else {
		h.WriteSubset(bw, exclude)
	}
	if _, ok := h["Date"]; !ok {
		bw.Write(w.c.f.dateLine(time.Now()))
	}
	switch {
	case code == http.StatusSwitchingProtocols:
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case !w.req.ProtoAtLeast(1, 1):
		bw.WriteString("Connection: keep-alive\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (w *respWriter) Write(p []byte) (int, error) {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		if _, ok := w.h["Content-Type"]; !ok && len(p) > 0 {
			w.h.Set("Content-Type", http.DetectContentType(p))
		}
		w.writeHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyOK {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		w.closeAfter = true
		return 0, http.ErrContentLength
	}
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	if err != nil {
		w.err, w.closeAfter = err, true
	}
	return n, err
}

// FlushError sends what is buffered (http.ResponseController uses it).
func (w *respWriter) FlushError() error {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.writeHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.c.bw.Flush(); err != nil {
		w.err, w.closeAfter = err, true
	}
	return w.err
}

func (w *respWriter) Flush() { w.FlushError() }

// Hijack hands the connection to the handler (the proxy does this for
// protocol upgrades such as WebSocket). Timeouts are lifted; the caller
// owns the connection from here on.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		if err := w.c.bw.Flush(); err != nil {
			return nil, nil, err
		}
	}
	w.hijacked = true
	c := w.c
	c.nc.SetDeadline(time.Time{})
	return c.nc, bufio.NewReadWriter(c.br, c.bw), nil
}

// finish ends the response: an empty 200 when nothing was written, the last
// chunk (and announced trailers), and a flush. c.wmu is held.
func (w *respWriter) finish() error {
	if !w.wroteHeader {
		if _, ok := w.h["Content-Length"]; !ok {
			w.h["Content-Length"] = []string{"0"}
		}
		w.writeHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			w.writeTrailer(k, w.h[k])
		}
		for k, vs := range w.h {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				w.writeTrailer(http.CanonicalHeaderKey(name), vs)
			}
		}
		bw.WriteString("\r\n")
	}
	if w.bodyOK && w.cl >= 0 && w.written < w.cl {
		w.closeAfter = true // the client sees a short body and a closed connection
	}
	return bw.Flush()
}

// writeTrailer writes one trailer field of a chunked body; c.wmu is held.
func (w *respWriter) writeTrailer(k string, vs []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	bw := w.c.bw
	for _, v := range vs {
		bw.WriteString(k)
		bw.WriteString(": ")
		bw.WriteString(sanitize(v))
		bw.WriteString("\r\n")
	}
}

// sanitize replaces line breaks in a header value with spaces.
func sanitize(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)
	}
	return v
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
