package scrubber

import (
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/vergecdn/verge/scrubber/buckets"
	"github.com/vergecdn/verge/scrubber/iplist"
)

// reason is what the address stages decided about a request.
type reason uint8

const (
	rPass      reason = iota // go on to the next stage
	rAllow                   // allow-listed: skip the remaining stages
	rDeny                    // deny-listed: 403, disconnect
	rPerIP                   // the source's bucket is empty: 429
	rPerPrefix               // the source's prefix's bucket is empty: 429
	rBoxed                   // the source (or its prefix) is in the penalty box: 429
	rGlobal                  // the node's ceiling: 503
	nReasons
)

func (r reason) label() string {
	switch r {
	case rPass:
		return "pass"
	case rAllow:
		return "allowlist"
	case rDeny:
		return "deny"
	case rPerIP:
		return "per_ip"
	case rPerPrefix:
		return "per_prefix"
	case rBoxed:
		return "penalty_box"
	case rGlobal:
		return "global"
	}
	return "unknown"
}

func (r reason) refuses() bool { return r >= rDeny }

// stage is one address stage: it decides from the source address and the
// time alone, without allocating.
type stage struct {
	name  string
	check func(s *Scrubber, p *policy, a netip.Addr, now int64) reason
}

// addrStages is the one place the address stages are ordered. Wrap chains
// them as middleware in this order and the fast front end runs the same list
// (admit). The request stages (the challenge) come after them.
var addrStages = [...]stage{
	{"lists", (*Scrubber).checkLists},
	{"per_ip", (*Scrubber).checkPerIP},
	{"per_prefix", (*Scrubber).checkPerPrefix},
	{"global", (*Scrubber).checkGlobal},
}

func (s *Scrubber) checkLists(_ *policy, a netip.Addr, _ int64) reason {
	switch s.lists.Load().Lookup(a) {
	case iplist.Deny:
		return rDeny
	case iplist.Allow:
		return rAllow
	}
	return rPass
}

func (s *Scrubber) checkPerIP(p *policy, a netip.Addr, now int64) reason {
	if !p.perIP || s.perIP == nil {
		return rPass
	}
	return tableReason(s.perIP.Take(ipKey(a), now), rPerIP)
}

func (s *Scrubber) checkPerPrefix(p *policy, a netip.Addr, now int64) reason {
	if !p.perPrefix || s.perPrefix == nil {
		return rPass
	}
	return tableReason(s.perPrefix.Take(s.prefixKey(a), now), rPerPrefix)
}

func (s *Scrubber) checkGlobal(p *policy, _ netip.Addr, now int64) reason {
	if p.global == nil || p.global.AllowN(s.epoch.Add(time.Duration(now)), 1) {
		return rPass
	}
	return rGlobal
}

func tableReason(v buckets.Verdict, limited reason) reason {
	switch v {
	case buckets.Allowed:
		return rPass
	case buckets.Limited:
		return limited
	}
	return rBoxed
}

// admit runs the address stages for one request from a at now. It is the
// fast front end's whole admission decision; the middleware (Wrap) runs the
// same stages one handler at a time.
func (s *Scrubber) admit(a netip.Addr, now int64) (reason, *policy) {
	s.det.requests.Add(1)
	p := s.pol.Load()
	for i := range addrStages {
		switch v := addrStages[i].check(s, p, a, now); v {
		case rPass:
		case rAllow:
			s.m.verdict[rAllow].Inc()
			return rAllow, p
		default:
			s.rejected(v, a, now)
			return v, p
		}
	}
	s.m.verdict[rPass].Inc()
	return rPass, p
}

// remoteAddr parses an http.Request's RemoteAddr without allocating. It is
// false for addresses that are not ip:port (a Unix socket, a test's "pipe").
func remoteAddr(s string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// Wrap returns next behind every stage, in order: the address stages
// (addrStages), then the request stages (the challenge, when enabled).
// Allow-listed sources go straight to next. A request whose RemoteAddr is
// not ip:port cannot be keyed and passes unlimited (counted as "unkeyed").
func (s *Scrubber) Wrap(next http.Handler) http.Handler {
	var h http.Handler = passHandler{s: s, next: s.requestStages(next)}
	for i := len(addrStages) - 1; i >= 0; i-- {
		h = &stageHandler{s: s, st: addrStages[i], next: h, bypass: next, first: i == 0}
	}
	return h
}

// requestStages are the stages that need the parsed request.
func (s *Scrubber) requestStages(next http.Handler) http.Handler {
	if s.chal == nil {
		return next
	}
	return &challengeHandler{s: s, c: s.chal, next: next}
}

// stageHandler is one address stage as middleware.
type stageHandler struct {
	s      *Scrubber
	st     stage
	next   http.Handler // the next stage
	bypass http.Handler // past every stage (allow-listed, unkeyed)
	first  bool         // counts the request for attack detection
}

func (h *stageHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	a, ok := remoteAddr(r.RemoteAddr)
	if !ok {
		if h.first {
			s.m.unkeyed.Inc()
		}
		h.bypass.ServeHTTP(w, r)
		return
	}
	now := s.nowNanos()
	if h.first {
		s.det.requests.Add(1)
	}
	p := s.pol.Load()
	switch v := h.st.check(s, p, a, now); v {
	case rPass:
		h.next.ServeHTTP(w, r)
	case rAllow:
		s.m.verdict[rAllow].Inc()
		h.bypass.ServeHTTP(w, r)
	default:
		s.rejected(v, a, now)
		writeReject(w, &p.resp[v])
	}
}

// passHandler counts requests that passed every address stage.
type passHandler struct {
	s    *Scrubber
	next http.Handler
}

func (h passHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.s.m.verdict[rPass].Inc()
	h.next.ServeHTTP(w, r)
}

// rejectResp is a pre-built refusal. Its slices are shared by every response
// and never modified.
type rejectResp struct {
	code  int
	retry []string // Retry-After value; nil = none
	close bool     // disconnect after it
	body  []byte
	clen  []string
}

var (
	hdrTextPlain = []string{"text/plain; charset=utf-8"}
	hdrNoStore   = []string{"no-store"}
	hdrClose     = []string{"close"}
)

func writeReject(w http.ResponseWriter, rr *rejectResp) {
	h := w.Header()
	h["Content-Type"] = hdrTextPlain
	h["Content-Length"] = rr.clen
	h["Cache-Control"] = hdrNoStore
	if rr.retry != nil {
		h["Retry-After"] = rr.retry
	}
	if rr.close {
		h["Connection"] = hdrClose
	}
	w.WriteHeader(rr.code)
	w.Write(rr.body)
}

// buildRejects builds a policy's refusals; the Retry-After values are the
// time one token takes to come back (1/rate, at least 1 s) and, in the
// penalty box, the penalty.
func buildRejects(ipRetry, prefixRetry, globalRetry, penaltySecs int, closeBoxed bool) [nReasons]rejectResp {
	mk := func(code int, retry int, close bool, body string) rejectResp {
		r := rejectResp{code: code, close: close, body: []byte(body), clen: []string{strconv.Itoa(len(body))}}
		if retry > 0 {
			r.retry = []string{strconv.Itoa(retry)}
		}
		return r
	}
	var out [nReasons]rejectResp
	out[rDeny] = mk(http.StatusForbidden, 0, true, "403 forbidden: this source is denied\n")
	out[rPerIP] = mk(http.StatusTooManyRequests, max(ipRetry, 1), false, "429 too many requests from this address\n")
	out[rPerPrefix] = mk(http.StatusTooManyRequests, max(prefixRetry, 1), false, "429 too many requests from this network\n")
	out[rBoxed] = mk(http.StatusTooManyRequests, max(penaltySecs, 1), closeBoxed, "429 too many requests: this source is in the penalty box\n")
	out[rGlobal] = mk(http.StatusServiceUnavailable, max(globalRetry, 1), false, "503 over capacity, retry later\n")
	return out
}

// wireSet is every refusal of a policy as HTTP/1.1 bytes, for one second's
// Date header: [reason][0] keeps the connection open, [reason][1] closes it.
type wireSet struct {
	sec int64
	b   [nReasons][2][]byte
}

func buildWire(resp *[nReasons]rejectResp, sec int64) *wireSet {
	ws := &wireSet{sec: sec}
	date := time.Unix(sec, 0).UTC().AppendFormat(nil, http.TimeFormat)
	for r := rDeny; r < nReasons; r++ {
		rr := &resp[r]
		for v := 0; v < 2; v++ {
			var b []byte
			b = append(b, "HTTP/1.1 "...)
			b = strconv.AppendInt(b, int64(rr.code), 10)
			b = append(b, ' ')
			b = append(b, http.StatusText(rr.code)...)
			b = append(b, "\r\nDate: "...)
			b = append(b, date...)
			b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
			b = append(b, rr.clen[0]...)
			b = append(b, "\r\nCache-Control: no-store\r\n"...)
			if rr.retry != nil {
				b = append(b, "Retry-After: "...)
				b = append(b, rr.retry[0]...)
				b = append(b, "\r\n"...)
			}
			if v == 1 || rr.close {
				b = append(b, "Connection: close\r\n"...)
			}
			b = append(b, "\r\n"...)
			b = append(b, rr.body...)
			ws.b[r][v] = b
		}
	}
	return ws
}

// wireReject returns refusal r as bytes, with the Date of wall-clock second
// sec; close selects the variant that announces the connection's end.
// Rebuilt at most once per second, so it does not allocate per request.
func (p *policy) wireReject(r reason, close bool, sec int64) []byte {
	ws := p.wire.Load()
	if ws == nil || ws.sec != sec {
		ws = buildWire(&p.resp, sec)
		p.wire.Store(ws)
	}
	if close || p.resp[r].close {
		return ws.b[r][1]
	}
	return ws.b[r][0]
}
