package edge

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vergecdn/verge/edge/cachepolicy"
	"github.com/vergecdn/verge/edge/storage"
)

// hopByHop are the fields that describe one connection, never stored or
// forwarded (RFC 9110 section 7.6.1), plus proxy authentication fields, and
// Alt-Svc: an upstream's alternative services are its own, not this node's
// (the public listener advertises HTTP/3 itself).
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Authentication-Info", "Alt-Svc",
}

// cleanHeader returns a copy of h without hop-by-hop fields, the fields that
// Connection lists, and omit.
func cleanHeader(h http.Header, omit []string) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		out[k] = v
	}
	for _, c := range h["Connection"] {
		for f := range strings.SplitSeq(c, ",") {
			if f = strings.TrimSpace(f); f != "" {
				delete(out, http.CanonicalHeaderKey(f))
			}
		}
	}
	for _, k := range hopByHop {
		delete(out, k)
	}
	for _, k := range omit {
		delete(out, k)
	}
	return out
}

// newObject prepares a storable upstream response for storage. reqHeader is
// the client request's header (for Vary).
func (e *Engine) newObject(key string, resp *http.Response, a *cachepolicy.Analysis, reqHeader http.Header, reqTime, respTime time.Time) *storage.Object {
	h := cleanHeader(resp.Header, a.OmitFields)
	delete(h, "Age")
	if e.role == RoleEdge {
		delete(h, "Verge-Cache-Control") // only Verge nodes obey it; clients never see it
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{respTime.UTC().Format(http.TimeFormat)}
	}
	h["Via"] = append(slices.Clip(h["Via"]), e.via)
	obj := &storage.Object{
		Key:          key,
		Status:       resp.StatusCode,
		Header:       h,
		RequestTime:  reqTime,
		ResponseTime: respTime,
		Lifetime:     a.Lifetime,
		InitialAge:   a.InitialAge,
		SWR:          a.StaleWhileReval,
		SIE:          a.StaleIfError,
		NoCache:      a.NoCache,
		NoStale:      a.NoStale,
	}
	obj.SurrogateKeys = surrogateKeys(h)
	if names, _ := cachepolicy.VaryFields(h); len(names) > 0 {
		obj.VaryGen = e.markerGen(key, names)
		obj.Key = variantKey(key, obj.VaryGen, names, reqHeader)
	}
	obj.HitStatus = e.status.hitFor(h)
	return obj
}

// markerGen returns the generation of key's Vary marker for names: the
// stored marker's if it lists the same names, else a new one.
func (e *Engine) markerGen(key string, names []string) uint64 {
	if m, ok := e.store.Get(key); ok && m.IsMarker() && slices.Equal(m.VaryNames, names) {
		return m.VaryGen
	}
	return e.varyGen.Add(1)
}

// put stores obj; a variant also (re)writes its URL's Vary marker.
func (e *Engine) put(obj *storage.Object, key string) {
	e.putMarker(obj, key)
	e.store.Put(obj)
}

// putMarker writes the Vary marker at key when obj is a variant stored
// under another key.
func (e *Engine) putMarker(obj *storage.Object, key string) {
	if obj.Key == key {
		return
	}
	names, _ := cachepolicy.VaryFields(obj.Header)
	if m, ok := e.store.Get(key); !ok || !m.IsMarker() || m.VaryGen != obj.VaryGen {
		e.store.Put(&storage.Object{Key: key, VaryNames: names, VaryGen: obj.VaryGen})
	}
}

// varyNamesOf returns the Vary names of a stored response.
func varyNamesOf(obj *storage.Object) []string {
	if obj.VaryGen == 0 {
		return nil
	}
	names, _ := cachepolicy.VaryFields(obj.Header)
	return names
}

// surrogateKeys reads Surrogate-Key and Cache-Tag (space or comma separated).
func surrogateKeys(h http.Header) []string {
	var out []string
	for _, f := range []string{"Surrogate-Key", "Cache-Tag"} {
		for _, v := range h[f] {
			for _, k := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
				if !slices.Contains(out, k) {
					out = append(out, k)
				}
			}
		}
	}
	return out
}

// addValidators makes a validation request conditional on obj's validators.
func addValidators(h http.Header, obj *storage.Object) {
	if et := obj.Header.Get("Etag"); et != "" {
		if !strings.HasPrefix(et, "\"") && !strings.HasPrefix(et, "W/") {
			et = `"` + et + `"`
		}
		h.Set("If-None-Match", et)
	}
	if lm := obj.Header.Get("Last-Modified"); lm != "" {
		h.Set("If-Modified-Since", lm)
	}
}

// notUpdatedBy304 are stored fields a 304 must not replace.
var notUpdatedBy304 = []string{"Content-Length", "Content-Range", "Transfer-Encoding"}

// updateFrom304 merges a 304's header fields into the stored response
// (RFC 9111 section 4.3.4) and recomputes its freshness. The merged response
// answers the request either way; storable says whether to keep it.
func (e *Engine) updateFrom304(stale *storage.Object, resp *http.Response, p *property, reqHeader http.Header, reqTime, respTime time.Time) (obj *storage.Object, storable bool) {
	h := make(http.Header, len(stale.Header)+len(resp.Header))
	for k, v := range stale.Header {
		h[k] = v
	}
	for k, v := range cleanHeader(resp.Header, notUpdatedBy304) {
		if k == "Age" {
			continue
		}
		h[k] = v
	}
	h["Via"] = stale.Header["Via"]
	// Freshness is computed on the merged fields with this exchange's times.
	fresh := h.Clone()
	if age, ok := resp.Header["Age"]; ok {
		fresh["Age"] = age
	} else {
		delete(fresh, "Age")
	}
	a := cachepolicy.Analyze(&cachepolicy.Response{
		Method: http.MethodGet, Status: stale.Status, Header: fresh,
		RequestTime: reqTime, ResponseTime: respTime, Authorization: reqHeader.Get("Authorization") != "",
		Cookie: reqHeader.Get("Cookie") != "",
	}, &p.policy)
	o := *stale
	obj = &o
	obj.Header = cleanHeader(h, a.OmitFields)
	obj.RequestTime, obj.ResponseTime = reqTime, respTime
	obj.Lifetime, obj.InitialAge = a.Lifetime, a.InitialAge
	obj.SWR, obj.SIE, obj.NoCache, obj.NoStale = a.StaleWhileReval, a.StaleIfError, a.NoCache, a.NoStale
	obj.SurrogateKeys = surrogateKeys(obj.Header)
	obj.HitStatus = e.status.hitFor(obj.Header)
	return obj, a.Storable
}

// withContentLength returns h with Content-Length set to n (a copy).
func withContentLength(h http.Header, n int64) http.Header {
	if v := h["Content-Length"]; len(v) == 1 && v[0] == strconv.FormatInt(n, 10) {
		return h
	}
	out := make(http.Header, len(h)+1)
	for k, v := range h {
		out[k] = v
	}
	out["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	return out
}
