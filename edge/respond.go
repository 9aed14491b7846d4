package edge

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vergecdn/verge/edge/cachepolicy"
	"github.com/vergecdn/verge/edge/httprange"
	"github.com/vergecdn/verge/edge/storage"
)

// maxRanges is the most ranges one request may ask for; more and the whole
// representation is sent.
const maxRanges = 16

// multipartSlack is how much larger than the representation a multipart
// response may be; beyond it the whole representation is sent instead.
const multipartSlack = 1 << 10

// serveObject answers a GET or HEAD from a stored (or arriving) response:
// the client's preconditions, ranges and HEAD are handled here. src is the
// body: nil for obj's own (in RAM, or opened here from the disk tier), or a
// body still arriving from upstream.
func (e *Engine) serveObject(w http.ResponseWriter, r *http.Request, obj *storage.Object, src bodySource, entry string, res result, now time.Time) outcome {
	if src == nil {
		if obj.Body == nil && obj.HasDiskBody() {
			fb, err := openBody(obj)
			if err != nil {
				// it left the disk tier since the lookup
				e.plainError(w, http.StatusServiceUnavailable, "stored copy is gone; retry")
				return outcome{result: resError, status: http.StatusServiceUnavailable}
			}
			defer fb.close()
			src = fb
		} else {
			src = (*memBody)(obj)
		}
	}
	h := w.Header()
	for k, v := range obj.Header {
		h[k] = v
	}
	h["Age"] = ageValue(cachepolicy.Age(obj.InitialAge, obj.ResponseTime, now))
	if entry == e.status.hit && len(obj.HitStatus) > 0 && obj.HitStatus[len(obj.HitStatus)-1] == entry {
		h["Cache-Status"] = obj.HitStatus
	} else {
		h["Cache-Status"] = appendStatus(obj.Header["Cache-Status"], entry)
	}
	o := outcome{result: res, status: obj.Status}

	if obj.Status == http.StatusOK {
		if code := e.preconditions(r, obj, now); code != 0 {
			if code == http.StatusNotModified {
				stripFor304(h)
			} else {
				h = resetForError(h)
			}
			w.WriteHeader(code)
			o.status = code
			return o
		}
		if rng := r.Header.Get("Range"); rng != "" && r.Method == http.MethodGet && ifRangeHolds(r, obj, now) {
			size := src.size()
			if size < 0 {
				var err error
				if size, err = src.complete(r.Context()); err != nil {
					panic(http.ErrAbortHandler)
				}
			}
			if done, n, code := e.serveRanges(w, r, obj, src, rng, size); done {
				o.status, o.bytes = code, n
				return o
			}
		}
	}

	if n := src.size(); n >= 0 {
		h["Content-Length"] = contentLength(obj, n)
	}
	w.WriteHeader(obj.Status)
	if r.Method == http.MethodHead || !bodyAllowed(obj.Status) {
		return o
	}
	o.bytes = e.writeBody(w, r, src, 0, -1)
	return o
}

// contentLength returns the Content-Length value of a body of n bytes: the
// stored field (which the fill set from the body) when it agrees, so a hit
// formats nothing.
func contentLength(obj *storage.Object, n int64) []string {
	if v := obj.Header["Content-Length"]; len(v) == 1 {
		if stored, err := strconv.ParseInt(v[0], 10, 64); err == nil && stored == n {
			return v
		}
	}
	return []string{strconv.FormatInt(n, 10)}
}

// writeBody writes n bytes (n < 0: to the end) of src from off. A body that
// fails while arriving aborts the connection so the client sees a truncated
// response, never a short one that looks whole.
func (e *Engine) writeBody(w http.ResponseWriter, r *http.Request, src bodySource, off, n int64) int64 {
	k, err := src.write(r.Context(), w, off, n)
	if err == nil && n < 0 && src.size() < 0 && r.Context().Err() != nil {
		// The server ends the context when the client half-closes its side
		// too, and such a client is still reading. A body of unknown
		// length cut short here would end with a clean last chunk and look
		// whole: abort the response instead.
		err = r.Context().Err()
	}
	if err != nil {
		e.log.Debug("body failed mid-response", "err", err)
		panic(http.ErrAbortHandler)
	}
	return k
}

// preconditions evaluates a request's conditions against a stored 200
// (RFC 9110 section 13.2.2) and returns 412, 304, or 0 to proceed.
func (e *Engine) preconditions(r *http.Request, obj *storage.Object, now time.Time) int {
	etag := obj.Header.Get("Etag")
	if im := r.Header["If-Match"]; len(im) > 0 {
		if !strongMatch(im, etag) {
			return http.StatusPreconditionFailed
		}
	} else if ius := r.Header.Get("If-Unmodified-Since"); ius != "" {
		if since, ok := cachepolicy.ParseHTTPDate(ius, now); ok {
			if lm, ok := cachepolicy.ParseHTTPDate(obj.Header.Get("Last-Modified"), now); !ok || lm.After(since) {
				return http.StatusPreconditionFailed
			}
		}
	}
	if cachepolicy.NotModified(r.Header, obj.Header, now) {
		return http.StatusNotModified
	}
	return 0
}

// strongMatch reports whether If-Match values match etag by strong comparison.
func strongMatch(values []string, etag string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" && etag != "" {
				return true
			}
			if etag != "" && !strings.HasPrefix(etag, "W/") && t == etag {
				return true
			}
		}
	}
	return false
}

// ifRangeHolds reports whether a Range request may be answered with a part:
// without If-Range, or when If-Range matches the stored validator strongly.
func ifRangeHolds(r *http.Request, obj *storage.Object, now time.Time) bool {
	ir := r.Header.Get("If-Range")
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) {
		et := obj.Header.Get("Etag")
		return et != "" && et == ir
	}
	t, ok := cachepolicy.ParseHTTPDate(ir, now)
	lm, ok2 := cachepolicy.ParseHTTPDate(obj.Header.Get("Last-Modified"), now)
	return ok && ok2 && t.Equal(lm)
}

// serveRanges answers a Range request. done is false when the whole
// representation should be sent instead.
func (e *Engine) serveRanges(w http.ResponseWriter, r *http.Request, obj *storage.Object, src bodySource, spec string, size int64) (done bool, n int64, code int) {
	ranges, err := httprange.Parse(spec, size, maxRanges)
	h := w.Header()
	switch {
	case err == httprange.ErrUnsatisfiable:
		h = resetForError(h)
		h["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true, 0, http.StatusRequestedRangeNotSatisfiable
	case err != nil:
		return false, 0, 0
	case len(ranges) == 1:
		rg := ranges[0]
		h["Content-Range"] = []string{rg.ContentRange(size)}
		h["Content-Length"] = []string{strconv.FormatInt(rg.Length, 10)}
		w.WriteHeader(http.StatusPartialContent)
		return true, e.writeBody(w, r, src, rg.Start, rg.Length), http.StatusPartialContent
	}
	parts, trailer, length := httprange.Multipart(ranges, size, obj.Header.Get("Content-Type"), e.boundary)
	if length > size+multipartSlack {
		return false, 0, 0
	}
	h["Content-Type"] = []string{"multipart/byteranges; boundary=" + e.boundary}
	h["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	delete(h, "Content-Range")
	w.WriteHeader(http.StatusPartialContent)
	for _, p := range parts {
		k, _ := w.Write([]byte(p.Header))
		n += int64(k)
		n += e.writeBody(w, r, src, p.Range.Start, p.Range.Length)
	}
	k, _ := w.Write([]byte(trailer))
	return true, n + int64(k), http.StatusPartialContent
}

// stripFor304 removes the representation fields a 304 does not carry.
func stripFor304(h http.Header) {
	for _, k := range []string{"Content-Length", "Content-Type", "Content-Range", "Content-Encoding", "Content-Language", "Content-Md5", "Transfer-Encoding"} {
		delete(h, k)
	}
}

// resetForError keeps only the fields an error answer about a stored
// response needs.
func resetForError(h http.Header) http.Header {
	for k := range h {
		switch k {
		case "Date", "Etag", "Last-Modified", "Cache-Status", "Age", "Via", "Vary", "Cache-Control":
		default:
			delete(h, k)
		}
	}
	return h
}

// appendStatus returns the upstream Cache-Status entries followed by ours.
func appendStatus(upstream []string, entry string) []string {
	if len(upstream) == 0 {
		return []string{entry}
	}
	return append(slices.Clip(upstream), entry)
}

// statusStrings are this node's Cache-Status entries (RFC 9211), built once.
type statusStrings struct {
	hit, staleHit, swr, staleError         string
	bypassRequest, bypassMethod, passMiss  string
	miss, missCollapsed                    string
	validate, validated, validatedCollapse string
}

func newStatusStrings(name string) statusStrings {
	return statusStrings{
		hit:               name + "; hit",
		staleHit:          name + "; hit; detail=stale",
		swr:               name + "; hit; detail=stale-while-revalidate",
		staleError:        name + "; fwd=stale; detail=stale-if-error",
		bypassRequest:     name + "; fwd=request",
		bypassMethod:      name + "; fwd=method",
		passMiss:          name + "; fwd=miss; detail=pass",
		miss:              name + "; fwd=uri-miss",
		missCollapsed:     name + "; fwd=uri-miss; collapsed",
		validate:          name + "; fwd=stale",
		validated:         name + "; fwd=stale; fwd-status=304",
		validatedCollapse: name + "; fwd=stale; fwd-status=304; collapsed",
	}
}

// missFor is the entry for a fill: a miss, or a validation of a stale response.
func (s *statusStrings) missFor(validating, collapsed bool) string {
	switch {
	case validating:
		return s.validate
	case collapsed:
		return s.missCollapsed
	}
	return s.miss
}

func (s *statusStrings) revalidated(collapsed bool) string {
	if collapsed {
		return s.validatedCollapse
	}
	return s.validated
}

// hitFor is the whole Cache-Status value of a hit on a response with header h.
func (s *statusStrings) hitFor(h http.Header) []string {
	return appendStatus(h["Cache-Status"], s.hit)
}

// ageStrings holds the Age values of the first hour, so a hit formats nothing.
var ageStrings = func() [][]string {
	t := make([][]string, 3600)
	for i := range t {
		t[i] = []string{strconv.Itoa(i)}
	}
	return t
}()

func ageValue(age time.Duration) []string {
	s := int64(age / time.Second)
	if s < 0 {
		s = 0
	}
	if s < int64(len(ageStrings)) {
		return ageStrings[s]
	}
	if s > cachepolicy.MaxDelta {
		s = cachepolicy.MaxDelta
	}
	return []string{strconv.FormatInt(s, 10)}
}
