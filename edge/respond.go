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
// the client's preconditions, ranges and HEAD are handled here. body is set
// while the response is still arriving from upstream.
func (e *Engine) serveObject(w http.ResponseWriter, r *http.Request, obj *storage.Object, body *growBody, entry string, res result, now time.Time) outcome {
	h := w.Header()
	for k, v := range obj.Header {
		h[k] = v
	}
	h["Age"] = ageValue(cachepolicy.Age(obj.InitialAge, obj.ResponseTime, now))
	if entry == e.status.hit && obj.HitStatus != nil {
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
			if body != nil && body.size < 0 {
				whole, err := body.whole(r.Context())
				if err != nil {
					panic(http.ErrAbortHandler)
				}
				full := *obj
				full.Body = whole
				obj, body = &full, nil
			}
			size := int64(len(obj.Body))
			if body != nil {
				size = body.size
			}
			if done, n, code := e.serveRanges(w, r, obj, body, rng, size); done {
				o.status, o.bytes = code, n
				return o
			}
		}
	}

	if body == nil {
		h["Content-Length"] = contentLength(obj)
	}
	w.WriteHeader(obj.Status)
	if r.Method == http.MethodHead || !bodyAllowed(obj.Status) {
		return o
	}
	n := e.writeBody(w, r, obj, body, 0, -1)
	o.bytes = n
	return o
}

// contentLength returns the Content-Length value of a whole stored object:
// the stored field, which put set from the body, when there is one.
func contentLength(obj *storage.Object) []string {
	if v := obj.Header["Content-Length"]; len(v) == 1 {
		return v
	}
	return []string{strconv.Itoa(len(obj.Body))}
}

// writeBody writes n bytes (n < 0: to the end) from off. A body that fails
// while arriving aborts the connection so the client sees a truncated
// response, never a short one that looks whole.
func (e *Engine) writeBody(w http.ResponseWriter, r *http.Request, obj *storage.Object, body *growBody, off, n int64) int64 {
	if body == nil {
		end := int64(len(obj.Body))
		if n >= 0 && off+n < end {
			end = off + n
		}
		k, _ := w.Write(obj.Body[off:end])
		return int64(k)
	}
	rc := http.NewResponseController(w)
	var written int64
	pos := off
	for n < 0 || written < n {
		p, done, err := body.next(r.Context(), pos)
		if err != nil {
			if r.Context().Err() != nil {
				return written // the client left
			}
			panic(http.ErrAbortHandler)
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
			return written
		}
		rc.Flush()
	}
	return written
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
func (e *Engine) serveRanges(w http.ResponseWriter, r *http.Request, obj *storage.Object, body *growBody, spec string, size int64) (done bool, n int64, code int) {
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
		return true, e.writeBody(w, r, obj, body, rg.Start, rg.Length), http.StatusPartialContent
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
		n += e.writeBody(w, r, obj, body, p.Range.Start, p.Range.Length)
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
