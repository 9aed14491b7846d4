package cachepolicy

import (
	"net/http"
	"strings"
	"time"
)

// Options are a property's overrides of what the origin says.
type Options struct {
	// DefaultTTL is the freshness lifetime of a response that carries no
	// explicit one (no s-maxage, max-age or Expires). 0 leaves such responses
	// to heuristic freshness.
	DefaultTTL time.Duration
	// MaxTTL caps every freshness lifetime. 0 means no cap.
	MaxTTL time.Duration
	// HeuristicFraction of (Date - Last-Modified) is the heuristic freshness
	// lifetime (RFC 9111 section 4.2.2). 0 disables heuristic freshness.
	HeuristicFraction float64
	// HeuristicMax caps heuristic freshness. 0 means no cap.
	HeuristicMax time.Duration
	// Targets lists the targeted cache-control fields this cache obeys, most
	// specific first (RFC 9213), e.g. Verge-Cache-Control, CDN-Cache-Control.
	Targets []string
	// StaleIfError is how long past its freshness a response may be served
	// when the upstream is unreachable, times out or answers 500, 502, 503 or
	// 504, unless the response says otherwise with its own stale-if-error or
	// forbids stale use (must-revalidate, proxy-revalidate, s-maxage,
	// no-cache). RFC 9111 section 4.2.4 allows a disconnected cache this;
	// RFC 5861 lets the origin set it per response.
	StaleIfError time.Duration
	// ImplicitForCookies lets DefaultTTL and heuristic freshness also make
	// storable a response to a request with Cookie, or one that sets a
	// cookie. Off, such a response is stored only when the origin gives it
	// an explicit lifetime or marks it public: a page made for one user's
	// session is never kept for others on a default (web cache deception).
	ImplicitForCookies bool
}

// DefaultOptions are the defaults of a property: 10% heuristic freshness
// capped at one day, obeying Verge-Cache-Control then CDN-Cache-Control.
func DefaultOptions() Options {
	return Options{
		HeuristicFraction: 0.1,
		HeuristicMax:      24 * time.Hour,
		Targets:           []string{"Verge-Cache-Control", "Cdn-Cache-Control"},
	}
}

// Response is what Analyze needs to know about an upstream response.
type Response struct {
	Method       string // of the request that produced it
	Status       int
	Header       http.Header
	RequestTime  time.Time // when the upstream request was sent
	ResponseTime time.Time // when the response headers arrived
	// Authorization reports whether the request carried Authorization.
	Authorization bool
	// Cookie reports whether the request carried Cookie.
	Cookie bool
}

// Analysis is the verdict on one response.
type Analysis struct {
	Storable bool
	Reason   string // why it is not storable ("no-store", "private", ...)

	Lifetime   time.Duration // freshness lifetime
	InitialAge time.Duration // corrected initial age at ResponseTime
	Date       time.Time     // the Date header, or ResponseTime when absent or invalid

	NoCache          bool // must be validated before every use
	NoStale          bool // must never be served stale (must-revalidate, proxy-revalidate, s-maxage, no-cache)
	StaleWhileReval  time.Duration
	StaleIfError     time.Duration
	OmitFields       []string // fields not to store: no-cache="..", private="..", listed in Connection
	GoverningField   string   // the targeted field obeyed, or "Cache-Control"
	HasValidator     bool     // ETag or Last-Modified present
	ExplicitLifetime bool     // lifetime came from the origin, not a default or heuristic
}

// heuristicStatus are the status codes heuristically cacheable by default
// (RFC 9110 section 15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus are the codes whose caching semantics this cache knows,
// for must-understand (RFC 9111 section 5.2.2.3).
func understoodStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 451, 500, 501, 502, 503, 504:
		return true
	}
	return false
}

// Governing returns the directives that rule a response for this cache: the
// first valid targeted field in opts.Targets, else Cache-Control. targeted
// reports whether a targeted field was used (Expires is then ignored).
func Governing(h http.Header, opts *Options) (d Directives, field string, targeted bool) {
	for _, name := range opts.Targets {
		if lines := h[name]; len(lines) > 0 {
			if td, ok := ParseTargeted(lines); ok {
				return td, name, true
			}
		}
	}
	return ParseCacheControl(h["Cache-Control"]), "Cache-Control", false
}

// Analyze decides whether r may be stored by a shared cache and computes its
// freshness (RFC 9111 sections 3 and 4.2).
func Analyze(r *Response, opts *Options) Analysis {
	a := Analysis{}
	h := r.Header
	d, field, targeted := Governing(h, opts)
	a.GoverningField = field

	a.Date = r.ResponseTime
	if dv := h["Date"]; len(dv) > 0 {
		if t, ok := ParseHTTPDate(dv[0], r.ResponseTime); ok {
			a.Date = t
		}
	}
	a.InitialAge = initialAge(h, a.Date, r.RequestTime, r.ResponseTime)
	a.HasValidator = h.Get("Etag") != "" || h.Get("Last-Modified") != ""

	switch {
	case r.Method != http.MethodGet:
		return a.no("method " + r.Method)
	case r.Status < 200 || r.Status == http.StatusNotModified || r.Status == http.StatusPartialContent:
		return a.no("status")
	case d.NoStore && !(d.MustUnderstand && understoodStatus(r.Status)):
		return a.no("no-store")
	case d.MustUnderstand && !understoodStatus(r.Status):
		return a.no("must-understand")
	case d.Private:
		return a.no("private")
	case r.Authorization && !d.Public && d.SMaxAge == Absent && !d.MustRevalidate:
		return a.no("authorization")
	}
	if _, star := VaryFields(h); star {
		return a.no("vary *")
	}

	// Freshness lifetime, most specific first.
	var expires []string
	if !targeted {
		expires = h["Expires"]
	}
	switch {
	case d.SMaxAge != Absent:
		a.Lifetime, a.ExplicitLifetime = seconds(d.SMaxAge), true
	case d.MaxAge != Absent:
		a.Lifetime, a.ExplicitLifetime = seconds(d.MaxAge), true
	case len(expires) > 0:
		a.ExplicitLifetime = true
		if t, ok := ParseHTTPDate(expires[0], r.ResponseTime); ok && t.After(a.Date) {
			a.Lifetime = t.Sub(a.Date)
		} // an invalid Expires means already expired
	case opts.DefaultTTL > 0:
		a.Lifetime = opts.DefaultTTL
	case opts.HeuristicFraction > 0 && (heuristicStatus(r.Status) || d.Public):
		if lm := h["Last-Modified"]; len(lm) > 0 {
			if t, ok := ParseHTTPDate(lm[0], r.ResponseTime); ok && a.Date.After(t) {
				a.Lifetime = time.Duration(float64(a.Date.Sub(t)) * opts.HeuristicFraction)
				if opts.HeuristicMax > 0 && a.Lifetime > opts.HeuristicMax {
					a.Lifetime = opts.HeuristicMax
				}
			}
		}
	}
	if opts.MaxTTL > 0 && a.Lifetime > opts.MaxTTL {
		a.Lifetime = opts.MaxTTL
	}

	// Worth storing: it can be reused fresh, or validated later.
	if !a.ExplicitLifetime && !d.Public && !opts.ImplicitForCookies && (r.Cookie || len(h["Set-Cookie"]) > 0) {
		// Likely personal, and the origin said nothing: neither a
		// default nor a heuristic lifetime, nor validation (an origin may
		// answer 304 for another user's page) may serve it to others.
		return a.no("cookie without explicit freshness")
	}
	if !a.ExplicitLifetime && !heuristicStatus(r.Status) && !d.Public {
		return a.no("status not heuristically cacheable")
	}
	if a.Lifetime <= 0 && !a.HasValidator {
		return a.no("no freshness and no validator")
	}
	if (d.NoCache || a.Lifetime <= 0) && !a.HasValidator {
		return a.no("no-cache without validator")
	}

	a.Storable = true
	a.NoCache = d.NoCache
	a.NoStale = d.NoCache || d.MustRevalidate || d.ProxyRevalidate || d.SMaxAge != Absent
	if d.StaleWhileRevalidate > 0 {
		a.StaleWhileReval = seconds(d.StaleWhileRevalidate)
	}
	a.StaleIfError = opts.StaleIfError
	if d.StaleIfError != Absent {
		a.StaleIfError = seconds(d.StaleIfError)
	}
	a.OmitFields = append(a.OmitFields, d.NoCacheFields...)
	a.OmitFields = append(a.OmitFields, d.PrivateFields...)
	return a
}

func (a Analysis) no(reason string) Analysis {
	a.Storable = false
	a.Reason = reason
	return a
}

func seconds(n int64) time.Duration {
	return time.Duration(n) * time.Second
}

// initialAge is corrected_initial_age (RFC 9111 section 4.2.3).
func initialAge(h http.Header, date, reqTime, respTime time.Time) time.Duration {
	var ageValue time.Duration
	if av := h["Age"]; len(av) > 0 {
		v := av[0]
		if i := strings.IndexByte(v, ','); i >= 0 {
			v = v[:i]
		}
		v = strings.TrimSpace(v)
		if v != "" {
			if n := parseDelta(v); n > 0 || v == "0" || strings.Trim(v, "0") == "" {
				ageValue = seconds(n)
			}
		}
	}
	apparent := respTime.Sub(date)
	if apparent < 0 {
		apparent = 0
	}
	delay := respTime.Sub(reqTime)
	if delay < 0 {
		delay = 0
	}
	corrected := ageValue + delay
	if apparent > corrected {
		return apparent
	}
	return corrected
}

// Age returns the current age of a stored response at now.
func Age(initialAge time.Duration, responseTime, now time.Time) time.Duration {
	resident := now.Sub(responseTime)
	if resident < 0 {
		resident = 0
	}
	return initialAge + resident
}
