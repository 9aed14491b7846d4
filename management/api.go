package management

import (
	"crypto/subtle"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vergecdn/verge/management/dashboard"
	"github.com/vergecdn/verge/management/store"
)

// The API's version prefix.
const apiPrefix = "/api/v1"

type authKind int

const (
	authOperator authKind = iota // operator token
	authCluster                  // cluster token (nodes)
)

// route is one API path: a handler per method and who may call it.
type route struct {
	methods map[string]http.HandlerFunc
	auth    authKind
}

// Handler serves the operator API, the node intake and the dashboard. It
// belongs on management's own listener, never on a public edge listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api := map[string]route{
		"/reports":      {map[string]http.HandlerFunc{"POST": s.handleReports}, authCluster},
		"/attacks":      {map[string]http.HandlerFunc{"POST": s.handleAttack}, authCluster},
		"/loads":        {map[string]http.HandlerFunc{"GET": s.handleLoads}, authCluster},
		"/nodes":        {map[string]http.HandlerFunc{"GET": s.handleNodes}, authOperator},
		"/nodes/{name}": {map[string]http.HandlerFunc{"GET": s.handleNode}, authOperator},
		"/series":       {map[string]http.HandlerFunc{"GET": s.handleSeries}, authOperator},
		"/properties":   {map[string]http.HandlerFunc{"GET": s.handleProperties}, authOperator},
		"/usage":        {map[string]http.HandlerFunc{"GET": s.handleUsage}, authOperator},
		"/alerts":       {map[string]http.HandlerFunc{"GET": s.handleAlerts}, authOperator},
		"/purge":        {map[string]http.HandlerFunc{"POST": s.handlePurge, "GET": s.handlePurgeList}, authOperator},
		"/purge/{id}":   {map[string]http.HandlerFunc{"GET": s.handlePurgeStatus}, authOperator},
		"/preload":      {map[string]http.HandlerFunc{"POST": s.handlePreload, "GET": s.handlePreloadList}, authOperator},
		"/preload/{id}": {map[string]http.HandlerFunc{"GET": s.handlePreloadStatus}, authOperator},
	}
	for path, rt := range api {
		mux.Handle(apiPrefix+path, s.endpoint(rt))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.URL.Path+" (see management/README.md)")
	})
	if s.purgeLogH != nil {
		mux.Handle("/purgelog/", s.purgeLogH)
	}
	mux.Handle("/", dashboard.Handler())
	return s.countCodes(mux)
}

// endpoint checks the method, then the token, then calls the handler.
func (s *Server) endpoint(rt route) http.Handler {
	allow := make([]string, 0, len(rt.methods))
	for m := range rt.methods {
		allow = append(allow, m)
	}
	sort.Strings(allow)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := rt.methods[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed (use %s)", r.Method, strings.Join(allow, " or ")))
			return
		}
		want, who := s.operatorToken, "operator"
		if rt.auth == authCluster {
			want, who = s.clusterToken, "cluster"
		}
		if !bearerOK(r, want) {
			if rt.auth == authCluster && r.URL.Path == apiPrefix+"/reports" {
				s.m.reports.WithLabelValues("unauthorized").Inc()
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="verge-management"`)
			writeError(w, http.StatusUnauthorized, "missing or bad "+who+" token")
			return
		}
		h(w, r)
	})
}

func bearerOK(r *http.Request, want string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.ResponseWriter.Write(b)
}

func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (s *Server) countCodes(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			h.ServeHTTP(w, r)
			return
		}
		rec := &codeRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.m.api.WithLabelValues(strconv.Itoa(rec.code)).Inc()
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// APIError is the body of every error answer.
type APIError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, APIError{Error: msg})
}

// readBody reads at most limit bytes; a larger body answers 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
		} else {
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

func (s *Server) handleReports(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, MaxReportBody)
	if !ok {
		s.m.reports.WithLabelValues("rejected").Inc()
		return
	}
	reps, err := DecodeReports(body)
	if err != nil {
		s.m.reports.WithLabelValues("rejected").Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.fleet.ingest(r.Context(), reps)
	if err != nil {
		s.log.Error("storing reports", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storing reports failed; retry")
		return
	}
	s.m.reports.WithLabelValues("accepted").Add(float64(res.Accepted))
	s.m.reports.WithLabelValues("duplicate").Add(float64(res.Duplicate))
	writeJSON(w, http.StatusOK, res)
}

// AttackReport is the body of POST /api/v1/attacks: the JSON a scrubber
// posts on entering or leaving under-attack mode (scrubber.AttackState;
// its other fields are ignored).
type AttackReport struct {
	Node         string    `json:"node"`
	UnderAttack  bool      `json:"under_attack"`
	At           time.Time `json:"at"`
	Since        time.Time `json:"since"`
	Reason       string    `json:"reason"`
	RequestRate  float64   `json:"request_rate"`
	LimitedShare float64   `json:"limited_share"`
}

// ParseAttackReport decodes and checks an attack report.
func ParseAttackReport(body []byte) (AttackReport, error) {
	var a AttackReport
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("bad attack report: %v", err)
	}
	if err := checkName("node", a.Node); err != nil {
		return a, fmt.Errorf("bad attack report: %w", err)
	}
	if a.At.IsZero() {
		return a, errors.New("bad attack report: at is required")
	}
	if len(a.Reason) > maxAttackReason {
		return a, fmt.Errorf("bad attack report: reason longer than %d bytes", maxAttackReason)
	}
	if a.RequestRate < 0 || a.LimitedShare < 0 || a.LimitedShare > 1 {
		return a, errors.New("bad attack report: request_rate must be >= 0 and limited_share in 0..1")
	}
	return a, nil
}

func (s *Server) handleAttack(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, 64<<10)
	if !ok {
		return
	}
	a, err := ParseAttackReport(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.fleet.setAttack(a.Node, Attack{UnderAttack: a.UnderAttack, Since: a.Since, Reason: a.Reason,
		RequestRate: a.RequestRate, LimitedShare: a.LimitedShare}, a.At)
	s.log.Warn("attack state", "node", a.Node, "under_attack", a.UnderAttack, "reason", a.Reason)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) handleLoads(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Loads{At: s.now().UTC(), Edges: nonNil(s.fleet.loads())})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.fleet.overview())
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request) {
	v, ok := s.fleet.node(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no node %q", r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

var errNotFound = errors.New("not found")

// durationParam reads a duration query parameter ("1h", "90s").
func durationParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: want a positive duration like 1h or 30s, got %q", name, v)
	}
	return d, nil
}

// roleParam reads role= (edge, hub, scrubber, dns; def when absent).
func roleParam(r *http.Request, def string, all bool) (string, error) {
	v := r.URL.Query().Get("role")
	switch {
	case v == "":
		return def, nil
	case v == "all" && all:
		return "all", nil
	case v == RoleEdge || v == RoleHub || v == RoleScrubber || v == RoleDNS:
		return v, nil
	}
	want := "edge, hub, scrubber or dns"
	if all {
		want += " (or all)"
	}
	return "", fmt.Errorf("role: want %s, got %q", want, v)
}

// SeriesAnswer is the answer to GET /api/v1/series.
type SeriesAnswer struct {
	Role     string        `json:"role,omitempty"`
	Node     string        `json:"node,omitempty"`
	Property string        `json:"property,omitempty"`
	Step     time.Duration `json:"step_ns"`
	Points   []Point       `json:"points"`
}

func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	q := SeriesQuery{Node: r.URL.Query().Get("node"), Property: r.URL.Query().Get("property")}
	var err error
	if q.Window, err = durationParam(r, "window", time.Hour); err == nil {
		if q.Step, err = durationParam(r, "step", time.Minute); err == nil {
			q.Role, err = roleParam(r, RoleEdge, false)
		}
	}
	switch {
	case err != nil:
	case q.Window > SeriesSpan:
		err = fmt.Errorf("window: at most %s", SeriesSpan)
	case q.Step < seriesStep || q.Step%seriesStep != 0:
		err = fmt.Errorf("step: a multiple of %s", seriesStep)
	case q.Window%q.Step != 0:
		err = errors.New("window must be a multiple of step")
	case q.Node != "" && q.Property != "":
		err = errors.New("node and property are exclusive")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	pts, err := s.fleet.series(q)
	if errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no node %q", q.Node))
		return
	}
	a := SeriesAnswer{Role: q.Role, Node: q.Node, Property: q.Property, Step: q.Step, Points: pts}
	if q.Node != "" {
		a.Role = ""
	}
	writeJSON(w, http.StatusOK, a)
}

// PropertyView is a property's recent traffic (GET /api/v1/properties).
type PropertyView struct {
	Property string `json:"property"`
	Role     string `json:"role"`
	// Over the last 5 minutes (management's clock):
	Window            store.Counts `json:"window"`
	RequestsPerSecond float64      `json:"rps"`
	BytesPerSecond    float64      `json:"bytes_per_second"`
	HitRatio          *float64     `json:"hit_ratio"`
	ErrorRate         *float64     `json:"error_rate"`
	// Since management started:
	Requests uint64 `json:"requests"`
	Bytes    uint64 `json:"bytes"`
}

func (s *Server) handleProperties(w http.ResponseWriter, r *http.Request) {
	role, err := roleParam(r, RoleEdge, false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.now()
	f := s.fleet
	f.mu.RLock()
	out := []PropertyView{}
	for key, t := range f.totals {
		if !strings.HasPrefix(key, role+"\x00") {
			continue
		}
		v := PropertyView{Property: t.Property, Role: role, Requests: t.Requests.Total(), Bytes: t.Bytes}
		if ps := f.propSeries[key]; ps != nil {
			v.Window = ps.sum(now.Add(-rateWindow), now)
		}
		sec := rateWindow.Seconds()
		v.RequestsPerSecond, v.BytesPerSecond = float64(v.Window.Requests)/sec, float64(v.Window.Bytes)/sec
		v.HitRatio, v.ErrorRate = hitRatio(v.Window), errorRate(v.Window)
		out = append(out, v)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Property < out[j].Property })
	writeJSON(w, http.StatusOK, map[string]any{"at": now.UTC(), "properties": out})
}

// UsageRow is one bucket of usage.
type UsageRow struct {
	Start    time.Time `json:"start"`
	Seconds  int64     `json:"seconds"`
	Property string    `json:"property"`
	store.Counts
	HitRatio *float64 `json:"hit_ratio"`
}

// UsageAnswer is the answer to GET /api/v1/usage.
type UsageAnswer struct {
	Property string       `json:"property,omitempty"`
	Role     string       `json:"role"`
	From     time.Time    `json:"from"`
	To       time.Time    `json:"to"`
	Step     string       `json:"step"`
	Rows     []UsageRow   `json:"rows"`
	Totals   store.Counts `json:"totals"`
}

// parseTime reads RFC 3339 or unix seconds.
func parseTime(name, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < 1<<40 {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("%s: want RFC 3339 (2026-03-01T00:00:00Z) or unix seconds, got %q", name, v)
}

// ParseUsageQuery reads the usage query parameters: property, role
// (edge by default: client traffic; hub; all), from and to (RFC 3339 or unix
// seconds; default the 24 hours before now), step (minute, hour or day;
// default hour), format (json or csv).
func ParseUsageQuery(q map[string][]string, now time.Time) (store.Query, string, string, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	for k := range q {
		switch k {
		case "property", "role", "from", "to", "step", "format":
		default:
			return store.Query{}, "", "", fmt.Errorf("unknown parameter %q (want property, role, from, to, step, format)", k)
		}
	}
	var sq store.Query
	sq.Property = get("property")
	if sq.Property != "" {
		if err := checkName("property", sq.Property); err != nil {
			return sq, "", "", err
		}
	}
	role := get("role")
	switch role {
	case "", RoleEdge:
		role = RoleEdge
		sq.Roles = []string{RoleEdge}
	case RoleHub:
		sq.Roles = []string{RoleHub}
	case "all":
	default:
		return sq, "", "", fmt.Errorf("role: want edge, hub or all, got %q", role)
	}
	sq.To = now
	if v := get("to"); v != "" {
		t, err := parseTime("to", v)
		if err != nil {
			return sq, "", "", err
		}
		sq.To = t
	}
	sq.From = sq.To.Add(-24 * time.Hour)
	if v := get("from"); v != "" {
		t, err := parseTime("from", v)
		if err != nil {
			return sq, "", "", err
		}
		sq.From = t
	}
	if !sq.To.After(sq.From) {
		return sq, "", "", errors.New("to must be after from")
	}
	switch get("step") {
	case "minute":
		sq.Step = store.StepMinute
	case "", "hour":
		sq.Step = store.StepHour
	case "day":
		sq.Step = store.StepDay
	default:
		return sq, "", "", fmt.Errorf("step: want minute, hour or day, got %q", get("step"))
	}
	if n := sq.To.Sub(sq.From) / sq.Step; n > store.MaxRows {
		return sq, "", "", fmt.Errorf("%d buckets of a %s; at most %d (use a larger step)", n, get("step"), store.MaxRows)
	}
	format := get("format")
	switch format {
	case "", "json", "csv":
	default:
		return sq, "", "", fmt.Errorf("format: want json or csv, got %q", format)
	}
	return sq, role, format, nil
}

func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) {
	q, role, format, err := ParseUsageQuery(r.URL.Query(), s.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if format == "" && strings.Contains(r.Header.Get("Accept"), "text/csv") {
		format = "csv"
	}
	rows, err := s.st.Usage(r.Context(), q)
	if err != nil {
		s.log.Error("usage query", "err", err)
		writeError(w, http.StatusInternalServerError, "usage query failed")
		return
	}
	step := map[time.Duration]string{store.StepMinute: "minute", store.StepHour: "hour", store.StepDay: "day"}[q.Step]
	a := UsageAnswer{Property: q.Property, Role: role, From: q.From.UTC(), To: q.To.UTC(), Step: step, Rows: []UsageRow{}}
	for _, row := range rows {
		a.Rows = append(a.Rows, UsageRow{Start: row.Start, Seconds: row.Seconds, Property: row.Property, Counts: row.Counts, HitRatio: hitRatio(row.Counts)})
		a.Totals.Add(row.Counts)
	}
	if format != "csv" {
		writeJSON(w, http.StatusOK, a)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="verge-usage.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"start", "seconds", "property", "role", "requests", "hits", "misses", "bytes", "upstream_bytes", "errors_5xx"})
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, row := range a.Rows {
		cw.Write([]string{row.Start.Format(time.RFC3339), strconv.FormatInt(row.Seconds, 10), row.Property, role,
			u(row.Requests), u(row.Hits), u(row.Misses), u(row.Bytes), u(row.UpstreamBytes), u(row.Errors)})
	}
	cw.Flush()
}

// AlertsAnswer is the answer to GET /api/v1/alerts.
type AlertsAnswer struct {
	Active   any `json:"active"`
	Resolved any `json:"resolved"`
	Rules    any `json:"rules"`
}

func (s *Server) handleAlerts(w http.ResponseWriter, r *http.Request) {
	type ruleView struct {
		Name      string  `json:"name"`
		Kind      string  `json:"kind"`
		Severity  string  `json:"severity"`
		Threshold float64 `json:"threshold,omitempty"`
		Window    string  `json:"window,omitempty"`
		For       string  `json:"for,omitempty"`
	}
	rules := []ruleView{}
	for _, rl := range s.alerts.Rules() {
		v := ruleView{Name: rl.Name, Kind: string(rl.Kind), Severity: rl.Severity}
		switch rl.Kind {
		case "node_silent":
			v.For = rl.For.String()
		case "hit_ratio_below", "error_rate_above":
			v.Threshold, v.Window = rl.Threshold, rl.Window.String()
		}
		rules = append(rules, v)
	}
	writeJSON(w, http.StatusOK, AlertsAnswer{Active: nonNil(s.alerts.Active()), Resolved: nonNil(s.alerts.Resolved()), Rules: rules})
}

func (s *Server) handlePurge(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxPurgeRequest)
	if !ok {
		return
	}
	p, err := ParsePurgeRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := s.StartPurge(p)
	if err != nil {
		s.log.Error("purge", "err", err)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Location", fmt.Sprintf("%s/purge/%d", apiPrefix, st.ID))
	writeJSON(w, http.StatusAccepted, st)
}

// idParam reads the {id} path value.
func idParam(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id: want a positive integer, got %q", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 20, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxJobs {
		return 0, fmt.Errorf("limit: want 1..%d, got %q", maxJobs, v)
	}
	return n, nil
}

func (s *Server) handlePurgeStatus(w http.ResponseWriter, r *http.Request) {
	id, ok := idParam(w, r)
	if !ok {
		return
	}
	st, err := s.Purge(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no purge %d", id))
	case err != nil:
		writeError(w, http.StatusInternalServerError, "reading purge failed")
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *Server) handlePurgeList(w http.ResponseWriter, r *http.Request) {
	n, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	list, err := s.RecentPurges(r.Context(), n)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading purges failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"purges": nonNil(list)})
}

func (s *Server) handlePreload(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, maxPreloadRequest)
	if !ok {
		return
	}
	req, err := ParsePreloadRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st := s.StartPreload(req)
	w.Header().Set("Location", fmt.Sprintf("%s/preload/%d", apiPrefix, st.ID))
	writeJSON(w, http.StatusAccepted, st)
}

func (s *Server) handlePreloadStatus(w http.ResponseWriter, r *http.Request) {
	id, ok := idParam(w, r)
	if !ok {
		return
	}
	st, found := s.Preload(id)
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no preload %d (preloads are kept in memory, the last %d)", id, maxJobs))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handlePreloadList(w http.ResponseWriter, r *http.Request) {
	n, err := limitParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"preloads": nonNil(s.preloads.recent(n))})
}
