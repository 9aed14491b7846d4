package management

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"time"
	"unicode/utf8"
)

// Node roles a Report may carry.
const (
	RoleEdge     = "edge"
	RoleHub      = "hub"
	RoleScrubber = "scrubber"
	RoleDNS      = "dns"
)

// Report is one snapshot of a node, as it posts it to management's intake
// (POST /api/v1/reports, a JSON object or an array of them, oldest first).
//
// Every counter is cumulative since the node's process started (Instance).
// Management stores, per node and instance, the last counters it accepted
// and adds the difference to usage, so a report that is retried, lost or
// delivered late changes nothing but when the counts are attributed: the
// totals equal the node's own counters exactly.
type Report struct {
	Node     string `json:"node"`
	Role     string `json:"role"` // edge, hub, scrubber or dns
	Region   string `json:"region,omitempty"`
	Version  string `json:"version,omitempty"`
	AdminURL string `json:"admin_url,omitempty"` // where management reaches the node's admin API (purge, preload)
	// Instance identifies the node's process: a new value means the node
	// restarted and its counters began again from zero.
	Instance string    `json:"instance"`
	Started  time.Time `json:"started"`
	// Seq numbers the snapshots of one instance, strictly increasing (gaps
	// are fine). Management ignores a report whose Seq it has already passed.
	Seq uint64 `json:"seq"`
	// At is when the snapshot was taken, by the node's clock; usage is
	// attributed to At's minute.
	At    time.Time `json:"at"`
	Ready bool      `json:"ready"` // the node is ready to serve (not catching up)

	Properties []PropertyCounters `json:"properties,omitempty"`
	// LatencyBounds are the upper bounds, in seconds, of the properties'
	// latency buckets; each Latency slice has one more element (+Inf).
	LatencyBounds []float64 `json:"latency_bounds,omitempty"`
	Tiers         []Tier    `json:"tiers,omitempty"` // cache fill per storage tier
	Attack        *Attack   `json:"attack,omitempty"`
	// Counters are other cumulative counters (dns queries, scrubber
	// refusals, ...), by name; Gauges are values at At.
	Counters map[string]uint64  `json:"counters,omitempty"`
	Gauges   map[string]float64 `json:"gauges,omitempty"`
}

// Results counts requests by how the cache answered them.
type Results struct {
	Hit   uint64 `json:"hit"`   // fresh from cache
	Stale uint64 `json:"stale"` // stale from cache
	Miss  uint64 `json:"miss"`  // fetched from the next tier
	Pass  uint64 `json:"pass"`  // not cacheable: forwarded
	Error uint64 `json:"error"` // the next tier failed
}

// Total is the number of requests.
func (r Results) Total() uint64 { return r.Hit + r.Stale + r.Miss + r.Pass + r.Error }

// Classes counts responses by status class.
type Classes struct {
	C1xx uint64 `json:"1xx"`
	C2xx uint64 `json:"2xx"`
	C3xx uint64 `json:"3xx"`
	C4xx uint64 `json:"4xx"`
	C5xx uint64 `json:"5xx"`
}

// PropertyCounters are one property's cumulative counters on one node.
type PropertyCounters struct {
	Property         string   `json:"property"`
	Requests         Results  `json:"requests"`
	Status           Classes  `json:"status"`
	Bytes            uint64   `json:"bytes"` // body bytes sent to clients
	UpstreamRequests uint64   `json:"upstream_requests"`
	UpstreamBytes    uint64   `json:"upstream_bytes"`
	UpstreamStatus   Classes  `json:"upstream_status"`
	Latency          []uint64 `json:"latency,omitempty"` // per Report.LatencyBounds, then +Inf (not cumulative)
	LatencySumNanos  uint64   `json:"latency_sum_ns"`
}

// Tier is the fill of one storage tier at the report's time.
type Tier struct {
	Name      string `json:"name"` // ram, disk, ...
	Objects   uint64 `json:"objects"`
	Bytes     uint64 `json:"bytes"`
	Evictions uint64 `json:"evictions"` // cumulative
}

// Attack is a node's attack state (a scrubber, or an edge's scrubber stage).
type Attack struct {
	UnderAttack  bool      `json:"under_attack"`
	Since        time.Time `json:"since,omitzero"`
	Reason       string    `json:"reason,omitempty"`
	RequestRate  float64   `json:"request_rate"`
	LimitedShare float64   `json:"limited_share"`
}

// Limits of the intake decoder.
const (
	MaxReportBody   = 8 << 20 // bytes of one POST
	MaxBatch        = 1000    // reports in one POST
	maxProperties   = 10000   // per report
	maxNameLen      = 256     // node, property, tier, counter names
	maxLatency      = 64      // latency buckets
	maxNamedValues  = 1000    // counters, gauges
	maxTiers        = 16
	MaxCounterValue = 1 << 53 // JSON's exact-integer limit; larger counters are rejected
	maxInstanceLen  = 64
	maxVersionLen   = 128
	maxAdminURLLen  = 1024
	maxAttackReason = 1024
)

// DecodeReports decodes an intake body: one Report object or an array of
// them. Each report is checked with Validate; the error names the report's
// index and the field.
func DecodeReports(body []byte) ([]Report, error) {
	if len(body) > MaxReportBody {
		return nil, fmt.Errorf("report body larger than %d bytes", MaxReportBody)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("empty report body")
	}
	var out []Report
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if trimmed[0] == '[' {
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("bad report JSON: %v", err)
		}
	} else {
		var r Report
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("bad report JSON: %v", err)
		}
		out = []Report{r}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("bad report JSON: trailing data after the value")
	}
	if len(out) == 0 {
		return nil, errors.New("empty report batch")
	}
	if len(out) > MaxBatch {
		return nil, fmt.Errorf("batch of %d reports; at most %d", len(out), MaxBatch)
	}
	for i := range out {
		if err := out[i].Validate(); err != nil {
			if len(out) == 1 {
				return nil, err
			}
			return nil, fmt.Errorf("report %d: %w", i, err)
		}
	}
	return out, nil
}

// checkName accepts 1..maxNameLen bytes of printable UTF-8.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", what)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%s longer than %d bytes", what, maxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q has a control character", what, s)
		}
	}
	return nil
}

func checkCounter(what string, v uint64) error {
	if v > MaxCounterValue {
		return fmt.Errorf("%s %d exceeds 2^53", what, v)
	}
	return nil
}

// Validate checks a report's fields and bounds.
func (r *Report) Validate() error {
	if err := checkName("node", r.Node); err != nil {
		return err
	}
	switch r.Role {
	case RoleEdge, RoleHub, RoleScrubber, RoleDNS:
	case "":
		return errors.New("role is required (edge, hub, scrubber or dns)")
	default:
		return fmt.Errorf("unknown role %q (want edge, hub, scrubber or dns)", r.Role)
	}
	if r.Region != "" {
		if err := checkName("region", r.Region); err != nil {
			return err
		}
	}
	if len(r.Version) > maxVersionLen || !utf8.ValidString(r.Version) {
		return fmt.Errorf("version must be UTF-8 of at most %d bytes", maxVersionLen)
	}
	if r.AdminURL != "" {
		u, err := url.Parse(r.AdminURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(r.AdminURL) > maxAdminURLLen {
			return fmt.Errorf("admin_url must be an absolute http(s) URL, got %q", truncate(r.AdminURL, 80))
		}
	}
	if r.Instance == "" || len(r.Instance) > maxInstanceLen {
		return fmt.Errorf("instance is required, at most %d bytes", maxInstanceLen)
	}
	if err := checkName("instance", r.Instance); err != nil {
		return err
	}
	if r.Seq == 0 {
		return errors.New("seq must be at least 1")
	}
	if r.At.IsZero() {
		return errors.New("at is required")
	}
	if r.Started.IsZero() {
		return errors.New("started is required")
	}
	if r.At.Before(r.Started) {
		return errors.New("at is before started")
	}
	if r.At.Year() > 9999 || r.Started.Year() < 1970 {
		return errors.New("at or started out of range")
	}
	if len(r.Properties) > maxProperties {
		return fmt.Errorf("%d properties; at most %d", len(r.Properties), maxProperties)
	}
	if len(r.LatencyBounds) > maxLatency {
		return fmt.Errorf("%d latency bounds; at most %d", len(r.LatencyBounds), maxLatency)
	}
	for i, b := range r.LatencyBounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || b <= 0 || (i > 0 && b <= r.LatencyBounds[i-1]) {
			return errors.New("latency_bounds must be positive and strictly increasing")
		}
	}
	seen := make(map[string]bool, len(r.Properties))
	for i := range r.Properties {
		p := &r.Properties[i]
		if err := checkName("property", p.Property); err != nil {
			return fmt.Errorf("properties[%d]: %w", i, err)
		}
		if seen[p.Property] {
			return fmt.Errorf("properties[%d]: duplicate property %q", i, p.Property)
		}
		seen[p.Property] = true
		if err := p.validate(len(r.LatencyBounds)); err != nil {
			return fmt.Errorf("properties[%d] (%s): %w", i, p.Property, err)
		}
	}
	if len(r.Tiers) > maxTiers {
		return fmt.Errorf("%d tiers; at most %d", len(r.Tiers), maxTiers)
	}
	for i, t := range r.Tiers {
		if err := checkName("tier name", t.Name); err != nil {
			return fmt.Errorf("tiers[%d]: %w", i, err)
		}
	}
	if a := r.Attack; a != nil {
		if len(a.Reason) > maxAttackReason {
			return fmt.Errorf("attack.reason longer than %d bytes", maxAttackReason)
		}
		if a.RequestRate < 0 || a.LimitedShare < 0 || a.LimitedShare > 1 {
			return errors.New("attack.request_rate must be >= 0 and attack.limited_share in 0..1")
		}
	}
	if len(r.Counters) > maxNamedValues || len(r.Gauges) > maxNamedValues {
		return fmt.Errorf("at most %d counters and %d gauges", maxNamedValues, maxNamedValues)
	}
	for k, v := range r.Counters {
		if err := checkMetricName(k); err != nil {
			return fmt.Errorf("counters: %w", err)
		}
		if err := checkCounter("counter "+k, v); err != nil {
			return err
		}
	}
	for k := range r.Gauges {
		if err := checkMetricName(k); err != nil {
			return fmt.Errorf("gauges: %w", err)
		}
	}
	return nil
}

func (p *PropertyCounters) validate(bounds int) error {
	for _, c := range []struct {
		n string
		v uint64
	}{
		{"requests.hit", p.Requests.Hit}, {"requests.stale", p.Requests.Stale}, {"requests.miss", p.Requests.Miss},
		{"requests.pass", p.Requests.Pass}, {"requests.error", p.Requests.Error},
		{"requests (sum)", p.Requests.Total()},
		{"status.1xx", p.Status.C1xx}, {"status.2xx", p.Status.C2xx}, {"status.3xx", p.Status.C3xx},
		{"status.4xx", p.Status.C4xx}, {"status.5xx", p.Status.C5xx},
		{"bytes", p.Bytes}, {"upstream_requests", p.UpstreamRequests}, {"upstream_bytes", p.UpstreamBytes},
		{"upstream_status.1xx", p.UpstreamStatus.C1xx}, {"upstream_status.2xx", p.UpstreamStatus.C2xx},
		{"upstream_status.3xx", p.UpstreamStatus.C3xx}, {"upstream_status.4xx", p.UpstreamStatus.C4xx},
		{"upstream_status.5xx", p.UpstreamStatus.C5xx}, {"latency_sum_ns", p.LatencySumNanos},
	} {
		if err := checkCounter(c.n, c.v); err != nil {
			return err
		}
	}
	if len(p.Latency) > 0 && len(p.Latency) != bounds+1 {
		return fmt.Errorf("latency has %d buckets, want len(latency_bounds)+1 = %d", len(p.Latency), bounds+1)
	}
	for _, v := range p.Latency {
		if err := checkCounter("latency bucket", v); err != nil {
			return err
		}
	}
	return nil
}

// checkMetricName accepts names usable as a Prometheus label value and in
// logs: 1..128 of [A-Za-z0-9_.:-].
func checkMetricName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("name %q must be 1..128 bytes", truncate(s, 40))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return fmt.Errorf("name %q: only letters, digits and _ . : - are allowed", truncate(s, 40))
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
