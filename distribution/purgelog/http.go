package purgelog

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/vergecdn/verge/edge"
)

// The log protocol, served under /purgelog/ on an admin listener; every
// request needs the cluster bearer token.
//
//	GET /purgelog/summary
//	    {"last":N,"count":C,"level":L,"hashes":["hex" or "" (empty range), ...]}
//	GET /purgelog/tree?level=L&nodes=i,j,...   (1 <= L, at most MaxTreeNodes nodes)
//	    {"level":L,"children":[[16 hashes of node i's children], [...j's], ...]}
//	GET /purgelog/records?ranges=a-b,c-d[&limit=n]   (at most MaxRanges ranges)
//	    {"records":[{"seq":..,"kind":..,"value":..,"soft":..}, ...],"next":S}
//	    next, when not 0, is where to continue: the answer stopped at the limit.
const (
	MaxTreeNodes   = 64   // nodes per tree request
	MaxRanges      = 256  // ranges per records request
	MaxRecords     = 5000 // records per records answer (and the default limit)
	maxAnswerBytes = 64 << 20
)

// Range is an inclusive range of sequence numbers.
type Range struct{ From, To uint64 }

func (r Range) String() string {
	return strconv.FormatUint(r.From, 10) + "-" + strconv.FormatUint(r.To, 10)
}

// TreeAnswer is the answer to GET /purgelog/tree.
type TreeAnswer struct {
	Level    int            `json:"level"`
	Children [][Fanout]Hash `json:"children"`
}

// RecordsAnswer is the answer to GET /purgelog/records.
type RecordsAnswer struct {
	Records []edge.Purge `json:"records"`
	Next    uint64       `json:"next,omitempty"`
}

// BearerAuth returns an auth function that accepts "Authorization: Bearer
// token" (constant-time compare). An empty token accepts nothing.
func BearerAuth(token string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
	}
}

// Handler serves l's log endpoints (GET /purgelog/summary, /tree, /records).
// auth checks the cluster token. ready, when not nil, is asked first: an
// error answers 503, so a node that has not caught up is never copied from.
func Handler(l *Log, auth func(*http.Request) bool, ready func() error) http.Handler {
	mux := http.NewServeMux()
	guard := func(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if auth == nil || !auth(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="verge"`)
				jsonError(w, http.StatusUnauthorized, "missing or bad cluster token")
				return
			}
			if ready != nil {
				if err := ready(); err != nil {
					w.Header().Set("Retry-After", "1")
					jsonError(w, http.StatusServiceUnavailable, "purge log not caught up: "+err.Error())
					return
				}
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /purgelog/summary", guard(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, l.Summary())
	}))
	mux.HandleFunc("GET /purgelog/tree", guard(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		level, err := ParseLevel(q.Get("level"))
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		nodes, err := ParseNodes(q.Get("nodes"), level)
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		ans := TreeAnswer{Level: level, Children: make([][Fanout]Hash, len(nodes))}
		for i, n := range nodes {
			ans.Children[i] = l.Children(level, n)
		}
		writeJSON(w, ans)
	}))
	mux.HandleFunc("GET /purgelog/records", guard(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ranges, err := ParseRanges(q.Get("ranges"))
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		limit := MaxRecords
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxRecords {
				jsonError(w, http.StatusBadRequest, fmt.Sprintf("bad limit %q: want 1..%d", trunc(s), MaxRecords))
				return
			}
			limit = n
		}
		ans := RecordsAnswer{Records: []edge.Purge{}}
		for _, rg := range ranges {
			recs := l.Records(rg.From, rg.To, limit-len(ans.Records)+1)
			if len(ans.Records)+len(recs) > limit {
				take := limit - len(ans.Records)
				ans.Records = append(ans.Records, recs[:take]...)
				ans.Next = recs[take].Seq
				break
			}
			ans.Records = append(ans.Records, recs...)
		}
		writeJSON(w, ans)
	}))
	return mux
}

// ParseLevel reads a tree request's level (1..MaxLevel).
func ParseLevel(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLevel {
		return 0, fmt.Errorf("bad level %q: want 1..%d", trunc(s), MaxLevel)
	}
	return n, nil
}

// ParseNodes reads a tree request's node list: comma-separated indexes of
// nodes at level, at most MaxTreeNodes.
func ParseNodes(s string, level int) ([]uint64, error) {
	if s == "" {
		return nil, errors.New(`"nodes" is required: comma-separated node indexes`)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxTreeNodes {
		return nil, fmt.Errorf("%d nodes: at most %d per request", len(parts), MaxTreeNodes)
	}
	out := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad node index %q", trunc(p))
		}
		if _, _, ok := span(level, n); !ok {
			return nil, fmt.Errorf("node index %d is past the end of level %d", n, level)
		}
		out[i] = n
	}
	return out, nil
}

// ParseRanges reads a records request's ranges: "a-b,c-d", each a <= b, at
// most MaxRanges.
func ParseRanges(s string) ([]Range, error) {
	if s == "" {
		return nil, errors.New(`"ranges" is required: comma-separated from-to ranges of sequence numbers`)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxRanges {
		return nil, fmt.Errorf("%d ranges: at most %d per request", len(parts), MaxRanges)
	}
	out := make([]Range, len(parts))
	for i, p := range parts {
		a, b, ok := strings.Cut(p, "-")
		from, err1 := strconv.ParseUint(a, 10, 64)
		to, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || from > to {
			return nil, fmt.Errorf("bad range %q: want from-to with from <= to", trunc(p))
		}
		out[i] = Range{from, to}
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Client talks to a peer's log endpoints.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the peer whose admin listener is at
// baseURL ("http://host:port"). hc nil uses http.DefaultClient's transport
// without proxies.
func NewClient(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("purgelog: peer %q is not an http(s) base URL", baseURL)
	}
	if hc == nil {
		hc = defaultClient()
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, hc: hc}, nil
}

// URL is the peer's base URL.
func (c *Client) URL() string { return c.base }

// Stats counts what a fetch cost and found.
type Stats struct {
	Requests int   `json:"requests"` // HTTP requests sent
	Bytes    int64 `json:"bytes"`    // answer bytes read (bodies)
	Compared int   `json:"compared"` // tree hashes compared
	Ranges   int   `json:"ranges"`   // ranges of sequence numbers asked for
	Fetched  int   `json:"fetched"`  // records received
	Applied  int   `json:"applied"`  // records this node lacked (or held differently) and applied
}

func (s *Stats) add(o Stats) {
	s.Requests += o.Requests
	s.Bytes += o.Bytes
	s.Compared += o.Compared
	s.Ranges += o.Ranges
	s.Fetched += o.Fetched
	s.Applied += o.Applied
}

// get fetches path and decodes the JSON answer into v.
func (c *Client) get(ctx context.Context, path string, st *Stats, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("purgelog: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if st == nil {
		st = &Stats{} // the caller does not count
	}
	st.Requests++
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("purgelog: peer %s: %w", c.base, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	st.Bytes += int64(len(body))
	if err != nil {
		return fmt.Errorf("purgelog: peer %s: reading %s: %w", c.base, path, err)
	}
	if len(body) > maxAnswerBytes {
		return fmt.Errorf("purgelog: peer %s: answer to %s larger than %d bytes", c.base, path, maxAnswerBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("purgelog: peer %s: %s: %s", c.base, resp.Status, e.Error)
		}
		return fmt.Errorf("purgelog: peer %s: %s for %s", c.base, resp.Status, path)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("purgelog: peer %s: bad answer to %s: %w", c.base, path, err)
	}
	return nil
}

func unwrapURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// Summary fetches the peer's summary.
func (c *Client) Summary(ctx context.Context, st *Stats) (Summary, error) {
	var s Summary
	if err := c.get(ctx, "/purgelog/summary", st, &s); err != nil {
		return s, err
	}
	want := 0
	if s.Count > 0 {
		if s.Level < 0 || s.Level > MaxLevel || s.Level != topLevel(s.Last) {
			return s, fmt.Errorf("purgelog: peer %s: summary level %d does not fit last %d", c.base, s.Level, s.Last)
		}
		want = int(s.Last>>shift(s.Level)) + 1
	}
	if len(s.Hashes) != want {
		return s, fmt.Errorf("purgelog: peer %s: summary has %d hashes, want %d", c.base, len(s.Hashes), want)
	}
	return s, nil
}

// Children fetches the children of the given nodes of level (batched).
func (c *Client) Children(ctx context.Context, level int, nodes []uint64, st *Stats) ([][Fanout]Hash, error) {
	var out [][Fanout]Hash
	for len(nodes) > 0 {
		batch := nodes[:min(len(nodes), MaxTreeNodes)]
		nodes = nodes[len(batch):]
		idx := make([]string, len(batch))
		for i, n := range batch {
			idx[i] = strconv.FormatUint(n, 10)
		}
		var ans TreeAnswer
		if err := c.get(ctx, fmt.Sprintf("/purgelog/tree?level=%d&nodes=%s", level, strings.Join(idx, ",")), st, &ans); err != nil {
			return nil, err
		}
		if ans.Level != level || len(ans.Children) != len(batch) {
			return nil, fmt.Errorf("purgelog: peer %s: tree answer for level %d has %d nodes, want %d", c.base, ans.Level, len(ans.Children), len(batch))
		}
		out = append(out, ans.Children...)
	}
	return out, nil
}

// Records fetches every record in ranges (in several requests when the peer
// pages), calling fn for each in order. Records are checked as a purge
// request is.
func (c *Client) Records(ctx context.Context, ranges []Range, st *Stats, fn func(edge.Purge) error) error {
	for len(ranges) > 0 {
		batch := ranges[:min(len(ranges), MaxRanges)]
		parts := make([]string, len(batch))
		for i, r := range batch {
			parts[i] = r.String()
		}
		var ans RecordsAnswer
		if err := c.get(ctx, "/purgelog/records?ranges="+strings.Join(parts, ","), st, &ans); err != nil {
			return err
		}
		st.Fetched += len(ans.Records)
		for _, p := range ans.Records {
			if !inRanges(batch, p.Seq) {
				return fmt.Errorf("purgelog: peer %s: record %d is outside the ranges asked for", c.base, p.Seq)
			}
			if err := p.Validate(); err != nil {
				return fmt.Errorf("purgelog: peer %s: record %d: %w", c.base, p.Seq, err)
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		if ans.Next == 0 {
			ranges = ranges[len(batch):]
			continue
		}
		// Paged: continue from Next within the same ranges.
		if len(ans.Records) == 0 || ans.Next <= ans.Records[len(ans.Records)-1].Seq {
			return fmt.Errorf("purgelog: peer %s: records answer does not move forward (next %d)", c.base, ans.Next)
		}
		for len(ranges) > 0 && ranges[0].To < ans.Next {
			ranges = ranges[1:]
		}
		if len(ranges) > 0 && ranges[0].From < ans.Next {
			ranges = append([]Range{{ans.Next, ranges[0].To}}, ranges[1:]...)
		}
	}
	return nil
}

func inRanges(rs []Range, seq uint64) bool {
	for _, r := range rs {
		if r.From <= seq && seq <= r.To {
			return true
		}
	}
	return false
}

// Diff compares local's tree with the peer's from the top down and returns
// the ranges of sequence numbers whose leaves differ, coalesced, within
// [1, peer's last].
func (c *Client) Diff(ctx context.Context, local *Log, st *Stats) ([]Range, error) {
	sum, err := c.Summary(ctx, st)
	if err != nil || sum.Count == 0 {
		return nil, err
	}
	level := sum.Level
	var diff []uint64
	for i, h := range sum.Hashes {
		st.Compared++
		if local.Hash(level, uint64(i)) != h {
			diff = append(diff, uint64(i))
		}
	}
	for ; level > 0 && len(diff) > 0; level-- {
		kids, err := c.Children(ctx, level, diff, st)
		if err != nil {
			return nil, err
		}
		var next []uint64
		for i, parent := range diff {
			for k, h := range kids[i] {
				idx := parent<<fanBits | uint64(k)
				st.Compared++
				if local.Hash(level-1, idx) != h {
					next = append(next, idx)
				}
			}
		}
		diff = next
	}
	var out []Range
	for _, leaf := range diff {
		lo, hi, _ := span(0, leaf)
		lo, hi = max(lo, 1), min(hi, sum.Last)
		if lo > hi {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To+1 == lo {
			out[n-1].To = hi
			continue
		}
		out = append(out, Range{lo, hi})
	}
	st.Ranges += len(out)
	return out, nil
}

// Fetch brings local up to date with the peer: it finds the differing ranges
// (Diff), fetches their records, and calls apply with the records local does
// not hold exactly, in order, a batch at a time (apply is expected to apply
// them and Put them in local; a batch lets a cache apply many purges in one
// pass). Records that arrived are applied even when a later page fails.
func (c *Client) Fetch(ctx context.Context, local *Log, apply func([]edge.Purge) error) (Stats, error) {
	var st Stats
	ranges, err := c.Diff(ctx, local, &st)
	if err != nil || len(ranges) == 0 {
		return st, err
	}
	var batch []edge.Purge
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := apply(batch)
		if err == nil {
			st.Applied += len(batch)
		}
		batch = batch[:0]
		return err
	}
	err = c.Records(ctx, ranges, &st, func(p edge.Purge) error {
		if local.Has(p) {
			return nil
		}
		batch = append(batch, p)
		if len(batch) >= fetchBatch {
			return flush()
		}
		return nil
	})
	if ferr := flush(); err == nil {
		err = ferr
	}
	return st, err
}

// fetchBatch is how many missed purges a catch-up applies in one pass.
const fetchBatch = 1024

// FetchAll fetches the peer's whole log, calling fn for every record: the
// naive catch-up Fetch improves on, and how a new management replica could
// copy a log.
func (c *Client) FetchAll(ctx context.Context, fn func(edge.Purge) error) (Stats, error) {
	var st Stats
	sum, err := c.Summary(ctx, &st)
	if err != nil || sum.Count == 0 {
		return st, err
	}
	st.Ranges = 1
	err = c.Records(ctx, []Range{{1, sum.Last}}, &st, fn)
	return st, err
}
