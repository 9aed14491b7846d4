package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/vergecdn/verge/edge/cachepolicy"
	"github.com/vergecdn/verge/edge/storage"
)

// A fill is one upstream fetch for a key that any number of requests wait on.
// The leader publishes its result once the response head is known; waiters
// then stream the body from the shared growBody, or, if the response cannot
// be shared, go upstream on their own.
type fill struct {
	ready chan struct{} // closed when res is set
	res   fillResult
}

type fillResult struct {
	obj    *storage.Object // shareable response (nil: not shareable)
	body   bodySource      // its body while it is still arriving (nil: obj's own)
	status int             // upstream status, when there was a response
	err    error           // upstream failure
}

// fillTable tracks the fills in flight, by key.
type fillTable struct {
	mu sync.Mutex // guards m
	m  map[string]*fill
}

// join returns the fill in flight for key, or starts one and makes the
// caller its leader.
func (t *fillTable) join(key string) (f *fill, leader bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*fill{}
	}
	if f, ok := t.m[key]; ok {
		return f, false
	}
	f = &fill{ready: make(chan struct{})}
	t.m[key] = f
	return f, true
}

// done removes f from the table (if it is still the one for key).
func (t *fillTable) done(key string, f *fill) {
	t.mu.Lock()
	if t.m[key] == f {
		delete(t.m, key)
	}
	t.mu.Unlock()
}

func (f *fill) publish(r fillResult) {
	f.res = r
	close(f.ready)
}

// inFlight reports how many fills are running (for tests and metrics).
func (t *fillTable) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// growBody is a response body being filled by one writer and read by any
// number of readers. buf[:n] never changes once written, so readers use it
// without copying.
type growBody struct {
	mu     sync.Mutex // guards buf's length, done, err and wake
	buf    []byte
	done   bool
	err    error
	wake   chan struct{} // made by a reader that waits; closed (and dropped) on the next change
	length int64         // Content-Length, or -1
}

func newGrowBody(length int64) *growBody {
	g := &growBody{length: length}
	if length > 0 {
		g.buf = make([]byte, 0, length)
	}
	return g
}

func (g *growBody) size() int64 { return g.length }

func (g *growBody) complete(ctx context.Context) (int64, error) {
	b, err := g.whole(ctx)
	return int64(len(b)), err
}

// write streams n bytes from off (n < 0: to the end) as they arrive.
func (g *growBody) write(ctx context.Context, w http.ResponseWriter, off, n int64) (int64, error) {
	rc := http.NewResponseController(w)
	var written int64
	pos := off
	for n < 0 || written < n {
		p, done, err := g.next(ctx, pos)
		if err != nil {
			if ctx.Err() != nil {
				return written, nil // the client left
			}
			return written, err
		}
		if done && len(p) == 0 {
			break
		}
		if n >= 0 && int64(len(p)) > n-written {
			p = p[:n-written]
		}
		k, werr := w.Write(p)
		written += int64(k)
		pos += int64(k)
		if werr != nil {
			return written, nil
		}
		rc.Flush()
	}
	return written, nil
}

// readFrom fills g from r until EOF, an error, or limit bytes (beyond which
// the body is not storable: tooBig). idle bounds the wait for each read.
// The read that completes the body wakes no reader: finish does, after the
// caller has stored the object, so a client that has the whole body finds
// it in the cache on its next request.
func (g *growBody) readFrom(r io.Reader, limit int64, cancel func(), idle time.Duration) (tooBig bool, err error) {
	t := time.AfterFunc(idle, cancel)
	defer t.Stop()
	var tmp []byte
	for {
		var n int
		if g.length >= 0 && int64(len(g.buf)) >= g.length {
			// All the announced bytes are here; only the end of the stream
			// is left to read (Go's client returns it with the last bytes,
			// and never reads past Content-Length). A byte more is an
			// upstream that lied about its length.
			var probe [1]byte
			if n, err = r.Read(probe[:]); n > 0 {
				return tooBig, errLongerThanAnnounced
			}
		} else if g.length > 0 {
			// read straight into the preallocated tail, which no reader sees yet
			n, err = r.Read(g.buf[len(g.buf):cap(g.buf)])
			if n > 0 {
				g.mu.Lock()
				g.buf = g.buf[:len(g.buf)+n]
				if err == nil && int64(len(g.buf)) < g.length {
					g.signal()
				}
				g.mu.Unlock()
			}
		} else {
			if tmp == nil {
				tmp = make([]byte, 32<<10)
			}
			n, err = r.Read(tmp)
			if n > 0 {
				g.mu.Lock()
				g.buf = append(g.buf, tmp[:n]...)
				if err == nil {
					g.signal()
				}
				g.mu.Unlock()
			}
		}
		if n > 0 {
			t.Reset(idle)
			if int64(len(g.buf)) > limit {
				tooBig = true
			}
		}
		if err == io.EOF {
			err = nil
			if g.length >= 0 && int64(len(g.buf)) != g.length {
				err = io.ErrUnexpectedEOF
			}
			return tooBig, err
		}
		if err != nil {
			return tooBig, err
		}
	}
}

// signal wakes readers; g.mu must be held. Nothing is allocated when no
// reader waits, the common case for small bodies.
func (g *growBody) signal() {
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
}

// waitChan returns the channel the next change closes; g.mu must be held.
func (g *growBody) waitChan() chan struct{} {
	if g.wake == nil {
		g.wake = make(chan struct{})
	}
	return g.wake
}

func (g *growBody) finish(err error) {
	g.mu.Lock()
	g.done, g.err = true, err
	g.signal()
	g.mu.Unlock()
}

// next returns the bytes available from off, waiting for some if there are
// none yet. It returns an empty slice with done=true at the end, or err.
func (g *growBody) next(ctx context.Context, off int64) (p []byte, done bool, err error) {
	for {
		g.mu.Lock()
		buf, d, e := g.buf, g.done, g.err
		var wake chan struct{}
		if int64(len(buf)) <= off && e == nil && !d {
			wake = g.waitChan()
		}
		g.mu.Unlock()
		if int64(len(buf)) > off {
			return buf[off:], false, nil
		}
		if e != nil {
			return nil, true, e
		}
		if d {
			return nil, true, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, true, ctx.Err()
		}
	}
}

// whole waits for the body to complete and returns it.
func (g *growBody) whole(ctx context.Context) ([]byte, error) {
	for {
		g.mu.Lock()
		buf, d, e := g.buf, g.done, g.err
		var wake chan struct{}
		if e == nil && !d {
			wake = g.waitChan()
		}
		g.mu.Unlock()
		if e != nil {
			return nil, e
		}
		if d {
			return buf, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// hitForPass remembers, for a while, keys whose last response could not be
// stored, so requests for them go upstream in parallel instead of queueing
// behind one another. Responses are still stored if they become storable.
type hitForPass struct {
	mu  sync.Mutex // guards lru
	lru *simplelru.LRU[string, time.Time]
}

const hitForPassTTL = 30 * time.Second

func newHitForPass(size int) *hitForPass {
	l, _ := simplelru.NewLRU[string, time.Time](size, nil)
	return &hitForPass{lru: l}
}

func (h *hitForPass) mark(key string, now time.Time) {
	h.mu.Lock()
	h.lru.Add(key, now.Add(hitForPassTTL))
	h.mu.Unlock()
}

func (h *hitForPass) clear(key string) {
	h.mu.Lock()
	h.lru.Remove(key)
	h.mu.Unlock()
}

func (h *hitForPass) has(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.lru.Peek(key)
	if ok && now.After(until) {
		h.lru.Remove(key)
		return false
	}
	return ok
}

// fetch gets a response from upstream for a GET or HEAD that the cache
// could not answer: collapsed with concurrent requests for the same key.
// stale is the stored response that needs validation, if any.
func (e *Engine) fetch(w http.ResponseWriter, r *http.Request, p *property, key string, stale *storage.Object, varyMiss bool, dirs *cachepolicy.Directives) outcome {
	now := e.now()
	if e.pass.has(key, now) {
		// The last answer could not be stored: forward the request as it is.
		return e.passThrough(w, r, p, key, e.status.passMiss)
	}
	f, leader := e.fills.join(key)
	if leader {
		// A fill of this key may have stored it and left the table between
		// our lookup and the join: look again before going upstream.
		if obj, _ := e.lookup(key, r.Header); obj != nil && obj != stale {
			if st := storedOf(obj); cachepolicy.Evaluate(&st, dirs, now) == cachepolicy.Fresh {
				f.publish(fillResult{obj: obj, status: obj.Status})
				e.fills.done(key, f)
				return e.serveObject(w, r, obj, nil, e.status.hit, resHit, now)
			}
		}
		resp := e.runFill(f, r, p, key, stale)
		if resp != nil {
			// Not shareable: the leader streams it alone, unless the client
			// asked for a range, which the fill did not forward.
			if r.Header.Get("Range") != "" && resp.StatusCode == http.StatusOK {
				resp.Body.Close()
				return e.passThrough(w, r, p, key, e.status.passMiss)
			}
			return e.relay(w, r, resp, stale, dirs, e.status.missFor(stale != nil, false), resMiss)
		}
		return e.afterFill(w, r, p, key, f, stale, dirs, false)
	}
	select {
	case <-f.ready:
	case <-r.Context().Done():
		return outcome{result: resMiss, status: 499}
	}
	e.stats.collapsed.Add(1)
	return e.afterFill(w, r, p, key, f, stale, dirs, true)
}

// afterFill serves a request from a fill's published result.
func (e *Engine) afterFill(w http.ResponseWriter, r *http.Request, p *property, key string, f *fill, stale *storage.Object, dirs *cachepolicy.Directives, collapsed bool) outcome {
	res := f.res
	now := e.now()
	if (res.err != nil || staleErrorStatus(res.status)) && stale != nil {
		st := storedOf(stale)
		if cachepolicy.ServeStaleOnError(&st, dirs, now) {
			return e.serveObject(w, r, stale, nil, e.status.staleError, resStale, now)
		}
	}
	if res.err != nil {
		return e.upstreamError(w, res.err)
	}
	if res.obj == nil {
		// not shareable: this request goes upstream as it is
		return e.passThrough(w, r, p, key, e.status.passMiss)
	}
	if res.obj.Key != key && res.obj.Key != variantKeyFor(res.obj, key, r.Header) {
		// a variant for other selecting headers: fill our own
		return e.fetchAlone(w, r, p, key, stale, dirs, e.status.missFor(stale != nil, collapsed))
	}
	cs := e.status.missFor(stale != nil, collapsed)
	if res.status == http.StatusNotModified {
		cs = e.status.revalidated(collapsed)
	}
	return e.serveObject(w, r, res.obj, res.body, cs, resMiss, now)
}

// variantKeyFor is the variant key that h selects among obj's siblings.
func variantKeyFor(obj *storage.Object, key string, h http.Header) string {
	names := varyNamesOf(obj)
	if len(names) == 0 {
		return key
	}
	return variantKey(key, obj.VaryGen, names, h)
}

// fetchAlone goes upstream without collapsing and streams the answer,
// storing it when it may be stored.
func (e *Engine) fetchAlone(w http.ResponseWriter, r *http.Request, p *property, key string, stale *storage.Object, dirs *cachepolicy.Directives, entry string) outcome {
	f := &fill{ready: make(chan struct{})}
	resp := e.runFill(f, r, p, key, stale)
	if resp != nil {
		if r.Header.Get("Range") != "" && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			return e.passThrough(w, r, p, key, e.status.passMiss)
		}
		return e.relay(w, r, resp, stale, dirs, entry, resMiss)
	}
	return e.afterFill(w, r, p, key, f, stale, dirs, false)
}

// runFill sends the upstream request for f and publishes its result. When
// the response cannot be shared it returns it, for the caller to relay.
func (e *Engine) runFill(f *fill, r *http.Request, p *property, key string, stale *storage.Object) *http.Response {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	out := e.upstreamRequest(ctx, r, p, key, http.MethodGet, true)
	if stale != nil {
		addValidators(out.Header, stale)
	}
	epoch := e.purgeEpoch.Load()
	reqTime := e.now()
	p.stats.upstreamRequests.Add(1)
	resp, err := e.transport.RoundTrip(out)
	respTime := e.now()
	if err != nil {
		cancel()
		f.publish(fillResult{err: err})
		e.fills.done(key, f)
		return nil
	}
	p.stats.upstreamStatus(resp.StatusCode)

	if resp.StatusCode == http.StatusNotModified && stale != nil {
		resp.Body.Close()
		cancel()
		obj, storable := e.updateFrom304(stale, resp, p, r.Header, reqTime, respTime)
		f.publish(fillResult{obj: obj, status: http.StatusNotModified})
		if storable {
			e.putUnlessPurged(obj, key, epoch)
		} else {
			e.invalidate(key)
		}
		e.fills.done(key, f)
		return nil
	}

	a := cachepolicy.Analyze(&cachepolicy.Response{
		Method: http.MethodGet, Status: resp.StatusCode, Header: resp.Header,
		RequestTime: reqTime, ResponseTime: respTime, Authorization: r.Header.Get("Authorization") != "",
		Cookie: r.Header.Get("Cookie") != "",
	}, &p.policy)
	if !a.Storable || resp.ContentLength > e.maxObject {
		e.pass.mark(key, respTime)
		f.publish(fillResult{status: resp.StatusCode})
		e.fills.done(key, f)
		resp.Body = cancelOnClose{resp.Body, cancel}
		return resp
	}
	e.pass.clear(key)
	obj := e.newObject(key, resp, &a, r.Header, reqTime, respTime)
	if e.tiered != nil && (resp.ContentLength < 0 || resp.ContentLength > e.tiered.RAM().MaxObject()) {
		// Too large for RAM, or of unknown size: stream it into the disk
		// tier, so it never sits whole in memory. Without a usable disk
		// tier it is held in memory below.
		if wr, err := e.tiered.Create(obj); err == nil {
			f.publish(fillResult{obj: obj, body: writerBody{wr}, status: resp.StatusCode})
			go e.fillToDisk(f, p, key, wr, resp, cancel, epoch)
			return nil
		}
	}
	body := newGrowBody(resp.ContentLength)
	f.publish(fillResult{obj: obj, body: body, status: resp.StatusCode})
	go func() {
		defer cancel()
		defer resp.Body.Close()
		tooBig, err := body.readFrom(resp.Body, e.maxObject, cancel, e.cfg.UpstreamHTTP.HeaderTimeout.D())
		p.stats.upstreamBytes.Add(uint64(len(body.buf)))
		if err != nil {
			e.log.Warn("upstream body failed", "key", key, "err", err)
		} else if !tooBig {
			whole := *obj
			whole.Body = body.buf
			whole.Header = withContentLength(obj.Header, int64(len(body.buf)))
			e.putUnlessPurged(&whole, key, epoch)
		}
		body.finish(err) // stored first: see readFrom
		e.fills.done(key, f)
	}()
	return nil
}

// fillToDisk copies an upstream body into a disk-tier writer and commits
// it, unless it failed, was not the length it announced, grew past the
// largest object, or a purge happened since the fill began.
func (e *Engine) fillToDisk(f *fill, p *property, key string, wr *storage.Writer, resp *http.Response, cancel func(), epoch uint64) {
	defer cancel()
	defer resp.Body.Close()
	defer e.fills.done(key, f)
	idle := e.cfg.UpstreamHTTP.HeaderTimeout.D()
	t := time.AfterFunc(idle, cancel)
	defer t.Stop()
	buf := make([]byte, 64<<10)
	var n int64
	var err error
	for {
		var k int
		k, err = resp.Body.Read(buf)
		if k > 0 {
			t.Reset(idle)
			if _, werr := wr.Write(buf[:k]); werr != nil {
				err = werr
				break
			}
			n += int64(k)
			if n > e.maxObject {
				err = errTooBig
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.stats.upstreamBytes.Add(uint64(n))
	if err == io.EOF {
		err = nil
		if resp.ContentLength >= 0 && n != resp.ContentLength {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		e.log.Warn("upstream body not stored", "key", key, "bytes", n, "err", err)
		wr.Abort()
		return
	}
	e.purgeMu.RLock()
	defer e.purgeMu.RUnlock()
	if e.purgeEpoch.Load() != epoch {
		wr.Abort()
		return
	}
	stored, err := wr.Commit()
	if err != nil {
		e.log.Warn("storing a streamed body failed", "key", key, "err", err)
		return
	}
	e.putMarker(stored, key)
}

var (
	errTooBig              = errors.New("edge: body larger than cache.max_object_bytes")
	errLongerThanAnnounced = errors.New("edge: upstream body longer than its Content-Length")
)

// putUnlessPurged stores obj unless a purge happened since its fill began.
func (e *Engine) putUnlessPurged(obj *storage.Object, key string, epoch uint64) {
	e.purgeMu.RLock()
	defer e.purgeMu.RUnlock()
	if e.purgeEpoch.Load() == epoch {
		e.put(obj, key)
	}
}

// revalidateInBackground refreshes a stale object served under
// stale-while-revalidate, collapsed with any other fill of the key.
func (e *Engine) revalidateInBackground(r *http.Request, p *property, key string, stale *storage.Object) {
	f, leader := e.fills.join(key)
	if !leader {
		return
	}
	bg := r.Clone(context.WithoutCancel(r.Context()))
	go func() {
		if resp := e.runFill(f, bg, p, key, stale); resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
	}()
}

// cancelOnClose cancels the upstream request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
