package origin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options are a Server's collaborators; every field may be left zero.
type Options struct {
	// Logger receives structured logs. nil discards them.
	Logger *slog.Logger
	// Registerer receives the origin's metrics. nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Now is the clock (used to keep Last-Modified from being in the future).
	// nil is time.Now.
	Now func() time.Time
	// Sleep waits d for a rule's delay, or less if ctx ends first (then it
	// returns ctx's error). nil uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Server serves a content directory; it is an http.Handler.
type Server struct {
	cfg   Config
	root  *os.Root
	rules ruleSet
	types *typeTable
	metas *metaCache
	m     *metrics
	log   *slog.Logger
	now   func() time.Time
	sleep func(context.Context, time.Duration) error

	notFoundCC []string
	allow      []string // the Allow header value

	uploads  bool
	tokenSum [sha256.Size]byte // SHA-256 of the upload token
	// uploadMu makes each PUT's or DELETE's precondition check and the
	// rename or remove it guards one step; bodies are written outside it.
	uploadMu sync.Mutex
}

// Header values shared by every response.
var (
	hAcceptRanges = []string{"bytes"}
	hNoSniff      = []string{"nosniff"}
	hNoStore      = []string{"no-store"}
	hTextPlain    = []string{"text/plain; charset=utf-8"}
)

// New checks cfg, opens its root and returns a Server. Close releases the root.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("origin: config: %w", err)
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("origin: root: %w", err)
	}
	s := &Server{cfg: cfg, root: root, log: opts.Logger, now: opts.Now, sleep: opts.Sleep}
	fail := func(err error) (*Server, error) {
		root.Close()
		return nil, err
	}
	if fi, err := root.Stat("."); err != nil {
		return fail(fmt.Errorf("origin: root: %w", err))
	} else if !fi.IsDir() {
		return fail(fmt.Errorf("origin: root %s is not a directory", cfg.Root))
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = sleepCtx
	}
	if s.rules, err = compileRules(cfg.Rules); err != nil {
		return fail(err)
	}
	if s.m, err = newMetrics(opts.Registerer); err != nil {
		return fail(fmt.Errorf("origin: metrics: %w", err))
	}
	if s.metas, err = newMetaCache(cfg.ETagCacheEntries, s.m.hashed); err != nil {
		return fail(err)
	}
	s.types = newTypeTable(cfg.Types)
	s.notFoundCC = []string{cfg.NotFoundCacheControl}
	s.allow = []string{"GET, HEAD, OPTIONS"}
	if token, err := loadToken(cfg.Upload); err != nil {
		return fail(err)
	} else if token != "" {
		s.uploads = true
		s.tokenSum = sha256.Sum256([]byte(token))
		s.allow = []string{"GET, HEAD, OPTIONS, PUT, DELETE"}
	}
	return s, nil
}

func loadToken(u Upload) (string, error) {
	if u.TokenFile == "" {
		return u.Token, nil
	}
	b, err := os.ReadFile(u.TokenFile)
	if err != nil {
		return "", fmt.Errorf("origin: upload.token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if err := checkToken(t); err != nil {
		return "", fmt.Errorf("origin: upload.token_file %s: %w", u.TokenFile, err)
	}
	return t, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close releases the root directory.
func (s *Server) Close() error { return s.root.Close() }

// Healthy reports whether the root directory can still be read.
func (s *Server) Healthy() error {
	if _, err := s.root.Stat("."); err != nil {
		return fmt.Errorf("origin: root: %w", err)
	}
	return nil
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

// ServeHTTP answers GET and HEAD from the root, PUT and DELETE through the
// upload API (when enabled) and OPTIONS with the allowed methods.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := recorders.Get().(*recorder)
	*rec = recorder{w: w}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.serveContent(rec, r)
	case http.MethodPut, http.MethodDelete:
		if s.uploads {
			s.serveUpload(rec, r)
		} else {
			s.notAllowed(rec)
		}
	case http.MethodOptions:
		h := rec.Header()
		h["Allow"] = s.allow
		h["Cache-Control"] = hNoStore
		rec.WriteHeader(http.StatusNoContent)
	default:
		s.notAllowed(rec)
	}
	code := rec.status
	if code == 0 {
		code = http.StatusOK // net/http sends an empty 200
		if r.Context().Err() != nil {
			code = statusClientClosed
		}
	}
	s.m.request(r.Method, code, rec.bytes, time.Since(start).Seconds())
	*rec = recorder{}
	recorders.Put(rec)
}

// serveContent answers GET and HEAD.
func (s *Server) serveContent(w *recorder, r *http.Request) {
	p, err := parsePath(r.URL.Path, r.URL.EscapedPath(), s.cfg.Index)
	if errors.Is(err, errHidden) {
		s.notFound(w, nil)
		return
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	matchPath := p.url
	if p.dir && s.cfg.Index != "" {
		matchPath += s.cfg.Index
	}
	rl := s.rules.find(matchPath)
	if rl != nil && rl.delay > 0 {
		if err := s.sleep(r.Context(), rl.delay); err != nil {
			return // the client left
		}
	}
	f, err := s.root.OpenFile(p.rel, openFlags, 0)
	if err != nil {
		s.openFailed(w, r, rl, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.internal(w, r, "stat", err)
		return
	}
	if fi.IsDir() {
		if !p.dir && s.cfg.Index != "" {
			s.redirectToDir(w, r, rl)
			return
		}
		s.notFound(w, rl) // never a listing
		return
	}
	if !fi.Mode().IsRegular() {
		s.notFound(w, rl)
		return
	}
	m, err := s.metas.get(r.Context(), f, fi)
	switch {
	case err == nil:
	case r.Context().Err() != nil:
		return
	case errors.Is(err, errChanging):
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusServiceUnavailable, "file is being modified")
		return
	default:
		s.internal(w, r, "hash", err)
		return
	}

	h := w.Header()
	v := validators{etag: m.etag, modTime: m.modTime}
	h["Etag"] = m.hETag
	h["Last-Modified"] = m.hLastMod
	if now := s.now(); m.modTime.After(now) {
		// RFC 9110 section 8.8.2.1: never a Last-Modified later than Date.
		v.modTime = now.UTC().Truncate(time.Second)
		h["Last-Modified"] = []string{v.modTime.Format(http.TimeFormat)}
	}
	s.ruleHeaders(h, rl)
	h["Accept-Ranges"] = hAcceptRanges
	switch evalPreconditions(r.Header, r.Method, true, v) {
	case condNotModified:
		w.WriteHeader(http.StatusNotModified)
		return
	case condFailed:
		s.fail(w, http.StatusPreconditionFailed, "precondition failed")
		return
	}
	ctype := s.types.lookup(p.rel)
	h["Content-Type"] = ctype
	h["X-Content-Type-Options"] = hNoSniff

	if rh := r.Header.Get("Range"); rh != "" && r.Method == http.MethodGet && ifRangeAllows(r.Header, v) {
		ranges, res := parseRange(rh, m.size, s.cfg.MaxRanges)
		switch res {
		case rangeOK:
			s.serveRanges(w, r, f, m, ctype[0], ranges)
			return
		case rangeUnsatisfiable, rangeTooMany, rangeOverlap:
			h.Set("Content-Range", "bytes */"+m.hLength[0])
			s.fail(w, http.StatusRequestedRangeNotSatisfiable, s.rangeRefusal(res))
			return
		}
	}
	h["Content-Length"] = m.hLength
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	s.copyBody(w, r, f, -1, m.size)
}

func (s *Server) rangeRefusal(res rangeResult) string {
	switch res {
	case rangeTooMany:
		return "more than " + strconv.Itoa(s.cfg.MaxRanges) + " ranges"
	case rangeOverlap:
		return "overlapping ranges"
	}
	return "no requested range is within the representation"
}

// ruleHeaders sets the headers a rule adds to a successful answer.
func (s *Server) ruleHeaders(h http.Header, rl *rule) {
	if rl == nil {
		return
	}
	if rl.cacheControl != nil {
		h["Cache-Control"] = rl.cacheControl
	}
	if rl.cdnCacheControl != nil {
		h["Cdn-Cache-Control"] = rl.cdnCacheControl
	}
	if rl.surrogateKey != nil {
		h["Surrogate-Key"] = rl.surrogateKey
	}
}

// serveRanges sends a 206: one range as is, several as multipart/byteranges.
func (s *Server) serveRanges(w *recorder, r *http.Request, f *os.File, m *meta, ctype string, ranges []byteRange) {
	h := w.Header()
	size := m.hLength[0]
	if len(ranges) == 1 {
		rg := ranges[0]
		h.Set("Content-Range", contentRange(rg, size))
		h.Set("Content-Length", strconv.FormatInt(rg.length, 10))
		w.WriteHeader(http.StatusPartialContent)
		s.copyBody(w, r, f, rg.start, rg.length)
		return
	}
	boundary := rand.Text()
	parts := make([]string, len(ranges))
	total := int64(0)
	for i, rg := range ranges {
		lead := "\r\n--"
		if i == 0 {
			lead = "--"
		}
		parts[i] = lead + boundary + "\r\nContent-Type: " + ctype + "\r\nContent-Range: " + contentRange(rg, size) + "\r\n\r\n"
		total += int64(len(parts[i])) + rg.length
	}
	closing := "\r\n--" + boundary + "--\r\n"
	total += int64(len(closing))
	h.Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	h.Set("Content-Length", strconv.FormatInt(total, 10))
	w.WriteHeader(http.StatusPartialContent)
	for i, rg := range ranges {
		if _, err := io.WriteString(w, parts[i]); err != nil {
			return
		}
		if !s.copyBody(w, r, f, rg.start, rg.length) {
			return
		}
	}
	io.WriteString(w, closing)
}

func contentRange(rg byteRange, size string) string {
	return "bytes " + strconv.FormatInt(rg.start, 10) + "-" + strconv.FormatInt(rg.end()-1, 10) + "/" + size
}

// copyBody sends n bytes of f from off (off < 0: from where f is, which for
// a whole file just opened is its start). The response writer turns this
// into sendfile(2) on a plain TCP connection. It reports whether all were sent.
func (s *Server) copyBody(w *recorder, r *http.Request, f *os.File, off, n int64) bool {
	if off >= 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			s.log.Warn("origin: seek", "path", r.URL.Path, "err", err)
			return false
		}
	}
	w.lr = io.LimitedReader{R: f, N: n}
	sent, err := w.ReadFrom(&w.lr)
	w.lr.R = nil
	if err == nil && sent < n {
		err = io.ErrUnexpectedEOF // the file shrank under us
	}
	if err != nil {
		// Headers are gone; all that is left is to cut the response short,
		// which a cache sees as an incomplete body.
		if r.Context().Err() == nil {
			s.log.Warn("origin: body", "path", r.URL.Path, "sent", sent, "want", n, "err", err)
		}
		return false
	}
	return true
}

func (s *Server) redirectToDir(w *recorder, r *http.Request, rl *rule) {
	loc := r.URL.EscapedPath() + "/"
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	h := w.Header()
	s.ruleHeaders(h, rl)
	h.Set("Location", loc)
	h["Content-Type"] = hTextPlain
	w.WriteHeader(http.StatusMovedPermanently)
	if r.Method != http.MethodHead {
		io.WriteString(w, "moved to "+loc+"\n")
	}
}

// openFailed answers a failed open: 404 for anything about the path (it does
// not exist, escapes the root, runs through a file, ...), 403 when it exists
// but the origin may not read it, 503 when the process is short of resources.
func (s *Server) openFailed(w *recorder, r *http.Request, rl *rule, err error) {
	switch {
	case transientOpenError(err):
		s.log.Error("origin: open", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusServiceUnavailable, "temporarily unable to open files")
	case errors.Is(err, fs.ErrPermission):
		s.log.Warn("origin: open", "path", r.URL.Path, "err", err)
		s.fail(w, http.StatusForbidden, "forbidden")
	default:
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("origin: open", "path", r.URL.Path, "err", err)
		}
		s.notFound(w, rl)
	}
}

func (s *Server) notFound(w *recorder, rl *rule) {
	h := w.Header()
	if rl != nil && rl.surrogateKey != nil {
		h["Surrogate-Key"] = rl.surrogateKey // purging the key clears cached 404s too
	}
	h["Cache-Control"] = s.notFoundCC
	h["Content-Type"] = hTextPlain
	h["X-Content-Type-Options"] = hNoSniff
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, "404 not found\n")
}

func (s *Server) notAllowed(w *recorder) {
	w.Header()["Allow"] = s.allow
	s.fail(w, http.StatusMethodNotAllowed, "method not allowed")
}

func (s *Server) internal(w *recorder, r *http.Request, op string, err error) {
	s.log.Error("origin: "+op, "path", r.URL.Path, "err", err)
	s.fail(w, http.StatusInternalServerError, "internal error")
}

// fail sends a short text error that no cache stores.
func (s *Server) fail(w *recorder, code int, msg string) {
	h := w.Header()
	for _, k := range []string{"Etag", "Last-Modified", "Cdn-Cache-Control", "Surrogate-Key", "Accept-Ranges", "Content-Length"} {
		delete(h, k)
	}
	h["Cache-Control"] = hNoStore
	h["Content-Type"] = hTextPlain
	h["X-Content-Type-Options"] = hNoSniff
	w.WriteHeader(code)
	io.WriteString(w, strconv.Itoa(code)+" "+msg+"\n")
}

// recorder notes the status and body size of a response for the metrics.
type recorder struct {
	w      http.ResponseWriter
	status int
	bytes  int64
	lr     io.LimitedReader // reused by copyBody: pooled with the recorder
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.w.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path reachable through the recorder.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{r.w}, src)
	}
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

type writerOnly struct{ io.Writer }
