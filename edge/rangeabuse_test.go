package edge

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// Range abuse, on whole responses through the engine: whatever Range a
// client sends, from the cache or while the object arrives, the answer is
// the whole object (200), some of its bytes in at most maxRanges parts
// (206), or 416, and never larger than the object plus multipartSlack.

// objectSizes are the representations the property runs against.
var objectSizes = []int{0, 1, 100, 4096, 100_000}

// rangeEngine is an engine whose upstream is in-process: GET /o/<size>/...
// answers size bytes (cacheable); with ?chunked, without a Content-Length.
func rangeEngine(t testing.TB) *Engine {
	return engineWithUpstream(t, "www.example.test", objectUpstream)
}

// engineWithUpstream is an engine "edge1" serving host, whose upstream is
// rt in-process.
func engineWithUpstream(t testing.TB, host string, rt roundTripFunc) *Engine {
	cfg := DefaultConfig()
	cfg.Node.Name = "edge1"
	prop := DefaultProperty()
	prop.Name, prop.Hosts, prop.Origin = "site", []string{host}, "http://origin.test"
	cfg.Properties = []Property{prop}
	e, err := New(cfg, Options{Transport: rt, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// objectBytes is the representation of size bytes: every byte tells its
// position, so a misplaced byte shows.
func objectBytes(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = "0123456789abcdefghijklmnopqrstuvwxyz"[i%36]
	}
	return b
}

func objectUpstream(r *http.Request) (*http.Response, error) {
	var size int
	fmt.Sscanf(r.URL.Path, "/o/%d/", &size)
	body := objectBytes(size)
	resp := &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Request: r,
		Header: http.Header{"Cache-Control": {"max-age=600"}, "Content-Type": {"text/plain"}, "Etag": {`"o"`}},
		Body:   io.NopCloser(bytes.NewReader(body)), ContentLength: int64(size)}
	if r.URL.RawQuery == "chunked" {
		resp.ContentLength = -1
	}
	return resp, nil
}

var rangeKeys atomic.Uint64

// rangeStats is what the property test saw, for its figure.
type rangeStats struct {
	answers, maxParts int
	maxOver           int // largest body minus object size
	status            map[int]int
}

// checkRange sends Range spec for an object of size bytes twice through e
// (a miss, as the object arrives, then a hit) and checks each answer.
func checkRange(t *testing.T, e *Engine, spec string, size int, chunked bool, st *rangeStats) {
	t.Helper()
	target := fmt.Sprintf("/o/%d/%d", size, rangeKeys.Add(1))
	if chunked {
		target += "?chunked"
	}
	for _, pass := range []string{"miss", "hit"} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "www.example.test"
		req.Header.Set("Range", spec)
		rec := httptest.NewRecorder()
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("%s %q size %d: handler panicked: %v", pass, spec, size, v)
				}
			}()
			e.ServeHTTP(rec, req)
		}()
		parts, err := rangeAnswerOK(rec.Result(), rec.Body.Bytes(), size)
		if err != nil {
			t.Fatalf("%s, Range %q, %d-byte object (chunked %v): %v", pass, spec, size, chunked, err)
		}
		if st != nil {
			st.answers++
			st.status[rec.Code]++
			st.maxParts = max(st.maxParts, parts)
			st.maxOver = max(st.maxOver, rec.Body.Len()-size)
		}
	}
}

// rangeAnswerOK checks one answer to a Range request for the object and
// returns how many parts it had.
func rangeAnswerOK(resp *http.Response, body []byte, size int) (parts int, err error) {
	obj := objectBytes(size)
	if len(body) > size+multipartSlack {
		return 0, fmt.Errorf("%d bytes of body for a %d-byte object", len(body), size)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
		return 0, fmt.Errorf("Content-Length %s, body %d bytes", cl, len(body))
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if !bytes.Equal(body, obj) {
			return 0, fmt.Errorf("200 with %d bytes, not the object", len(body))
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if want := "bytes */" + strconv.Itoa(size); resp.Header.Get("Content-Range") != want || len(body) != 0 {
			return 0, fmt.Errorf("416 with Content-Range %q and %d bytes", resp.Header.Get("Content-Range"), len(body))
		}
	case http.StatusPartialContent:
		ct, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if ct != "multipart/byteranges" {
			return 1, partOK(resp.Header.Get("Content-Range"), body, obj)
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		covered := make([]bool, size)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("multipart: %v", err)
			}
			parts++
			b, err := io.ReadAll(p)
			if err != nil {
				return 0, err
			}
			cr := p.Header.Get("Content-Range")
			if err := partOK(cr, b, obj); err != nil {
				return 0, err
			}
			var first, last int
			fmt.Sscanf(cr, "bytes %d-%d/", &first, &last)
			for i := first; i <= last; i++ {
				if covered[i] {
					return 0, fmt.Errorf("byte %d sent twice", i)
				}
				covered[i] = true
			}
		}
		if parts < 2 || parts > maxRanges {
			return 0, fmt.Errorf("%d parts", parts)
		}
	default:
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return parts, nil
}

// partOK checks that body is the object's bytes that Content-Range cr names.
func partOK(cr string, body, obj []byte) error {
	var first, last, total int
	if n, _ := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); n != 3 ||
		total != len(obj) || first < 0 || first > last || last >= len(obj) {
		return fmt.Errorf("Content-Range %q for a %d-byte object", cr, len(obj))
	}
	if !bytes.Equal(body, obj[first:last+1]) {
		return fmt.Errorf("part %q holds other bytes (%d of them)", cr, len(body))
	}
	return nil
}

// rangeSpecs are hand-picked abuses, also the fuzz target's seeds.
var rangeSpecs = []string{
	"bytes=0-0", "bytes=-1", "bytes=0-", "bytes=1-0", "bytes=-0", "bytes=0-4294967296",
	"bytes=0-1,1-2,2-3,3-4,4-5,5-6,6-7,7-8,8-9,9-10,10-11,11-12,12-13,13-14,14-15,15-16",
	"bytes=0-1,1-2,2-3,3-4,4-5,5-6,6-7,7-8,8-9,9-10,10-11,11-12,12-13,13-14,14-15,15-16,16-17",
	"bytes=0-,0-,0-,0-,0-,0-,0-,0-,0-,0-", "bytes=-100000,-100000,-100000",
	"bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30",
	"bytes=50-60,0-10,55-99", "bytes=99999999999999999999-", "bytes= 0-1 , 3-4 ",
	"BYTES=0-1", "items=0-1", "bytes=0-1;2-3", "bytes=,,,,,0-1", "bytes=--1", "bytes=+1-2",
	"bytes=0-1," + strings.Repeat("2-3,", 500), "bytes=4096-", "bytes=4095-", "bytes=100000-",
}

func TestRangeAbuseThroughTheEngine(t *testing.T) {
	e := rangeEngine(t)
	st := &rangeStats{status: map[int]int{}, maxOver: -1 << 31}
	for _, spec := range rangeSpecs {
		for _, size := range objectSizes {
			checkRange(t, e, spec, size, false, st)
			checkRange(t, e, spec, size, true, st)
		}
	}
	// Random sets of ranges: many, overlapping, suffixes, open ends.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		size := objectSizes[rng.IntN(len(objectSizes))]
		n := 1 + rng.IntN(24)
		specs := make([]string, n)
		for j := range specs {
			a := rng.IntN(size + 10)
			switch rng.IntN(4) {
			case 0:
				specs[j] = strconv.Itoa(a) + "-"
			case 1:
				specs[j] = "-" + strconv.Itoa(1+rng.IntN(size+10))
			default:
				specs[j] = strconv.Itoa(a) + "-" + strconv.Itoa(a+rng.IntN(size/4+3))
			}
		}
		checkRange(t, e, "bytes="+strings.Join(specs, ","), size, i%2 == 0, st)
	}
	t.Logf("range abuse: %d answers (%d of them 206 with parts, %d 200, %d 416): at most %d parts, "+
		"the largest body is the object %+d bytes (limit +%d)", st.answers, st.status[206], st.status[200], st.status[416],
		st.maxParts, st.maxOver, multipartSlack)

	// What the limits mean: 16 disjoint ranges are honoured, 17 are not,
	// and parts whose headers would outweigh the slack give the whole.
	disjoint := func(n int) string {
		var b []string
		for i := 0; i < n; i++ {
			b = append(b, fmt.Sprintf("%d-%d", 10*i, 10*i+4))
		}
		return "bytes=" + strings.Join(b, ",")
	}
	for _, c := range []struct {
		spec  string
		size  int
		code  int
		parts int
	}{
		{disjoint(16), 100_000, 206, 16},
		{disjoint(17), 100_000, 200, 0},
		{disjoint(16), 200, 200, 0},
		{"bytes=0-4,10-14", 200, 206, 2},
	} {
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/o/%d/limits", c.size), nil)
		req.Host = "www.example.test"
		req.Header.Set("Range", c.spec)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		parts, err := rangeAnswerOK(rec.Result(), rec.Body.Bytes(), c.size)
		if err != nil || rec.Code != c.code || parts != c.parts {
			t.Errorf("%q on %d bytes: %d with %d parts (%v), want %d with %d", c.spec, c.size, rec.Code, parts, err, c.code, c.parts)
		}
	}
}

// FuzzRangeResponse: any Range header, on any object size, cached or
// arriving, gets an answer that rangeAnswerOK accepts.
func FuzzRangeResponse(f *testing.F) {
	for _, s := range rangeSpecs {
		f.Add(s, uint8(2), false)
	}
	e := rangeEngine(f)
	f.Fuzz(func(t *testing.T, spec string, sizeSel uint8, chunked bool) {
		if !httpguts.ValidHeaderFieldValue(spec) {
			return // never reaches a handler
		}
		checkRange(t, e, spec, objectSizes[int(sizeSel)%len(objectSizes)], chunked, nil)
	})
}
