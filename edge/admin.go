package edge

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vergecdn/verge/edge/cachekey"
	"github.com/vergecdn/verge/edge/storage"
)

// PurgeKind says what a purge selects.
type PurgeKind string

const (
	PurgeURL    PurgeKind = "url"    // one URL (all its variants)
	PurgePrefix PurgeKind = "prefix" // every URL under a URL prefix (host and path)
	PurgeTag    PurgeKind = "tag"    // every object with a surrogate key (Surrogate-Key / Cache-Tag)
	PurgeHost   PurgeKind = "host"   // every object of a host
	PurgeAll    PurgeKind = "all"    // everything
)

// Purge is one purge request, as the node admin API takes it in JSON.
type Purge struct {
	// Seq is the purge's number in the cluster's purge log (0: a local purge
	// outside the log). The engine does not interpret it; the purge log does.
	Seq   uint64    `json:"seq,omitempty"`
	Kind  PurgeKind `json:"kind"`
	Value string    `json:"value,omitempty"` // URL, URL prefix, tag or host; empty for "all"
	// Soft marks matching objects stale instead of deleting them, so they
	// revalidate (and may still be served under stale-if-error).
	Soft bool `json:"soft,omitempty"`
}

// maxPurgeValue bounds the value of a purge request.
const maxPurgeValue = 8 << 10

// ParsePurge decodes and checks a purge request body.
func ParsePurge(body []byte) (Purge, error) {
	var p Purge
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("bad purge request: %v", err)
	}
	if dec.More() {
		return p, errors.New("bad purge request: trailing data after the JSON object")
	}
	return p, p.Validate()
}

// Validate checks a purge request.
func (p Purge) Validate() error {
	if len(p.Value) > maxPurgeValue {
		return fmt.Errorf("bad purge request: value longer than %d bytes", maxPurgeValue)
	}
	switch p.Kind {
	case PurgeAll:
		if p.Value != "" {
			return errors.New(`bad purge request: kind "all" takes no value`)
		}
		return nil
	case PurgeURL, PurgePrefix:
		u, err := url.Parse(p.Value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bad purge request: %s needs an absolute http(s) URL, got %q", p.Kind, p.Value)
		}
		if u.Fragment != "" {
			return errors.New("bad purge request: URL has a fragment")
		}
		return nil
	case PurgeTag:
		if p.Value == "" || strings.ContainsAny(p.Value, " ,\t\r\n") {
			return fmt.Errorf("bad purge request: tag must be one non-empty word, got %q", p.Value)
		}
		return nil
	case PurgeHost:
		if p.Value == "" || strings.ContainsAny(p.Value, "/ ?#@") {
			return fmt.Errorf("bad purge request: bad host %q", p.Value)
		}
		return nil
	case "":
		return errors.New(`bad purge request: "kind" is required (url, prefix, tag, host or all)`)
	}
	return fmt.Errorf("bad purge request: unknown kind %q (want url, prefix, tag, host or all)", p.Kind)
}

// PurgeResult is what a node answers.
type PurgeResult struct {
	Node    string        `json:"node"`
	Seq     uint64        `json:"seq,omitempty"`
	Matched int           `json:"matched"` // objects deleted or marked stale
	Took    time.Duration `json:"took_ns"`
}

// baseKey is a storage key without its variant and keyed-header suffixes.
func baseKey(k string) string {
	if i := strings.IndexByte(k, 0); i >= 0 {
		return k[:i]
	}
	return k
}

// keyOfURL is the cache key prefix (host + path + query) of an absolute URL.
func keyOfURL(raw string) string {
	u, _ := url.Parse(raw)
	k := cachekey.Host(u.Host) + u.EscapedPath()
	if u.RawQuery != "" {
		k += "?" + u.RawQuery
	}
	return k
}

// matcher returns the predicate selecting the objects a valid purge covers.
func (p Purge) matcher() func(*storage.Object) bool {
	switch p.Kind {
	case PurgeURL:
		k := keyOfURL(p.Value)
		return func(o *storage.Object) bool { return baseKey(o.Key) == k }
	case PurgePrefix:
		k := keyOfURL(p.Value)
		return func(o *storage.Object) bool { return strings.HasPrefix(baseKey(o.Key), k) }
	case PurgeHost:
		h := cachekey.Host(p.Value)
		return func(o *storage.Object) bool { return cachekey.HostOf(o.Key) == h }
	case PurgeTag:
		return func(o *storage.Object) bool { return slices.Contains(o.SurrogateKeys, p.Value) }
	}
	return func(*storage.Object) bool { return true } // all
}

// Purge applies p to this node's cache and reports how many objects matched.
func (e *Engine) Purge(p Purge) (PurgeResult, error) {
	res, err := e.PurgeBatch([]Purge{p})
	if err != nil {
		return PurgeResult{}, err
	}
	return res[0], nil
}

// PurgeBatch applies several purges in one pass over the cache (a node
// catching up on many purges scans once, not once per purge). An object
// that any hard purge covers is deleted; one that only soft purges cover is
// marked stale. Each result counts the objects its purge covered.
func (e *Engine) PurgeBatch(ps []Purge) ([]PurgeResult, error) {
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return nil, err
		}
	}
	start := e.now()
	e.purgeMu.Lock()
	e.purgeEpoch.Add(1) // fills that began before now will not store
	e.purgeMu.Unlock()
	match := make([]func(*storage.Object) bool, len(ps))
	for i, p := range ps {
		match[i] = p.matcher()
	}
	counts := make([]int, len(ps))
	e.store.Range(func(o *storage.Object) bool {
		hard, soft := false, false
		for i, m := range match {
			if !m(o) {
				continue
			}
			if !o.IsMarker() {
				counts[i]++
			}
			if ps[i].Soft {
				soft = true
			} else {
				hard = true
			}
		}
		switch {
		case hard:
			e.store.Delete(o.Key)
		case soft && !o.IsMarker():
			stale := *o
			stale.Lifetime, stale.SWR, stale.InitialAge = 0, 0, 0
			e.store.Put(&stale)
		}
		return true
	})
	took := e.now().Sub(start)
	out := make([]PurgeResult, len(ps))
	for i, p := range ps {
		out[i] = PurgeResult{Node: e.name, Seq: p.Seq, Matched: counts[i], Took: took}
	}
	return out, nil
}

// LoadToken reads the cluster token a config names (cluster_token, or the
// trimmed contents of cluster_token_file), for the components wired around
// the engine.
func LoadToken(cfg Config) (string, error) { return loadToken(cfg) }

// Admin returns the node admin API (besides /healthz and /metrics, which the
// server adds): POST /purge and POST /preload, with a cluster token. It must
// only be served on the admin listener.
func (e *Engine) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /purge", e.handlePurge)
	mux.HandleFunc("POST /preload", e.handlePreload)
	return mux
}

// Authorized checks a bearer token against the cluster token in constant
// time. With no token configured nothing is authorized.
func (e *Engine) Authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && e.token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(e.token)) == 1
}

// adminBody checks an admin request's cluster token and reads its body, at
// most limit bytes (413 beyond). ok is false when it has answered already.
func (e *Engine) adminBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, ok bool) {
	if !e.Authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="verge"`)
		jsonError(w, http.StatusUnauthorized, "missing or bad cluster token")
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return nil, false
	}
	if int64(len(body)) > limit {
		jsonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
		return nil, false
	}
	return body, true
}

func (e *Engine) handlePurge(w http.ResponseWriter, r *http.Request) {
	body, ok := e.adminBody(w, r, maxPurgeValue+1024)
	if !ok {
		return
	}
	p, err := ParsePurge(body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := e.Purge(p)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	e.log.Info("purge", "kind", p.Kind, "value", p.Value, "soft", p.Soft, "matched", res.Matched)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
