package cachepolicy

import (
	"net/http"
	"strings"
	"time"
)

// RequestDirectives parses a request's Cache-Control, and Pragma: no-cache
// when Cache-Control is absent (RFC 9111 section 5.4).
func RequestDirectives(h http.Header) Directives {
	cc := h["Cache-Control"]
	if len(cc) == 0 {
		d := empty()
		for _, p := range h["Pragma"] {
			for _, f := range strings.Split(p, ",") {
				if equalFold(strings.TrimSpace(f), "no-cache") {
					d.NoCache = true
				}
			}
		}
		return d
	}
	return ParseCacheControl(cc)
}

// Stored is the freshness state of a stored response.
type Stored struct {
	Lifetime     time.Duration
	InitialAge   time.Duration
	ResponseTime time.Time
	NoCache      bool // validate before every use
	NoStale      bool // never serve stale
	SWR          time.Duration
	SIE          time.Duration
}

// Use is what a cache may do with a stored response for a request.
type Use uint8

const (
	// Fresh: serve it.
	Fresh Use = iota
	// StaleOK: serve it stale, the request allows it (max-stale).
	StaleOK
	// StaleRevalidate: serve it stale and revalidate in the background
	// (stale-while-revalidate).
	StaleRevalidate
	// Validate: it must be validated (or replaced) upstream before use;
	// it may still be served if that fails and StaleIfError allows.
	Validate
)

func (u Use) String() string {
	switch u {
	case Fresh:
		return "fresh"
	case StaleOK:
		return "stale"
	case StaleRevalidate:
		return "stale-while-revalidate"
	}
	return "validate"
}

// Evaluate decides how a stored response may serve a request with
// directives req at now (RFC 9111 section 4, RFC 5861 section 3).
func Evaluate(s *Stored, req *Directives, now time.Time) Use {
	if req.NoCache || s.NoCache {
		return Validate
	}
	age := Age(s.InitialAge, s.ResponseTime, now)
	if req.MaxAge != Absent && (req.MaxAge == 0 || age > seconds(req.MaxAge)) {
		return Validate
	}
	freshFor := s.Lifetime - age
	if req.MinFresh != Absent && freshFor < seconds(req.MinFresh) {
		return Validate
	}
	if freshFor > 0 {
		return Fresh
	}
	if s.NoStale {
		return Validate
	}
	staleFor := -freshFor
	if req.MaxStaleAny || (req.MaxStale != Absent && staleFor <= seconds(req.MaxStale)) {
		return StaleOK
	}
	if s.SWR > 0 && staleFor <= s.SWR {
		return StaleRevalidate
	}
	return Validate
}

// ServeStaleOnError reports whether a stale stored response may be served
// when validation failed with an error or a 5xx (RFC 5861 section 4).
func ServeStaleOnError(s *Stored, req *Directives, now time.Time) bool {
	if s.NoStale {
		return false
	}
	staleFor := Age(s.InitialAge, s.ResponseTime, now) - s.Lifetime
	if staleFor <= 0 {
		return true
	}
	limit := s.SIE
	if req.StaleIfError != Absent {
		limit = seconds(req.StaleIfError)
	}
	return limit > 0 && staleFor <= limit
}
