package management

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/scrubber"
)

// FromEdgeSnapshot converts an edge or hub engine's counters
// (edge.Engine.Stats().Snapshot()) into report form: the properties, the
// latency bounds, and the node-wide counters (edge_refused,
// edge_collapsed, edge_upstream_errors).
func FromEdgeSnapshot(s edge.Snapshot) (props []PropertyCounters, bounds []float64, counters map[string]uint64) {
	props = make([]PropertyCounters, 0, len(s.Properties))
	for _, p := range s.Properties {
		pc := PropertyCounters{
			Property: p.Property,
			Requests: Results{
				Hit: p.Requests["hit"], Stale: p.Requests["stale"], Miss: p.Requests["miss"],
				Pass: p.Requests["pass"], Error: p.Requests["error"],
			},
			Status:           classesOf(p.Status),
			Bytes:            p.Bytes,
			UpstreamRequests: p.UpstreamRequests,
			UpstreamBytes:    p.UpstreamBytes,
			UpstreamStatus:   classesOf(p.UpstreamStatus),
			Latency:          append([]uint64(nil), p.LatencyBuckets...),
			LatencySumNanos:  uint64(max(p.LatencySum, 0)),
		}
		props = append(props, pc)
	}
	bounds = append([]float64(nil), edge.LatencyBuckets...)
	counters = map[string]uint64{
		"edge_refused":         s.Refused,
		"edge_collapsed":       s.Collapsed,
		"edge_upstream_errors": s.UpstreamErrors,
	}
	return props, bounds, counters
}

func classesOf(m map[string]uint64) Classes {
	return Classes{C1xx: m["1xx"], C2xx: m["2xx"], C3xx: m["3xx"], C4xx: m["4xx"], C5xx: m["5xx"]}
}

// EdgeReport is a Report of an engine's counters and its storage tiers
// (read from the node's registry, where the engine's collector exports
// them); the Reporter fills in the identity.
func EdgeReport(e *edge.Engine, g prometheus.Gatherer) Report {
	var r Report
	r.Properties, r.LatencyBounds, r.Counters = FromEdgeSnapshot(e.Stats().Snapshot())
	r.Ready = e.Healthy() == nil
	if g != nil {
		if tiers, err := CacheTiers(g); err == nil {
			r.Tiers = tiers
		}
	}
	return r
}

// CacheTiers reads the cache fill per tier from an edge engine's metrics
// (verge_edge_cache_objects, verge_edge_cache_bytes,
// verge_edge_cache_evictions_total by tier) in g.
func CacheTiers(g prometheus.Gatherer) ([]Tier, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("management: reading cache tiers: %w", err)
	}
	byName := map[string]*Tier{}
	var order []string
	tier := func(name string) *Tier {
		t, ok := byName[name]
		if !ok {
			t = &Tier{Name: name}
			byName[name] = t
			order = append(order, name)
		}
		return t
	}
	for _, mf := range mfs {
		var set func(t *Tier, v float64)
		switch mf.GetName() {
		case "verge_storage_objects":
			set = func(t *Tier, v float64) { t.Objects = uint64(v) }
		case "verge_storage_bytes":
			set = func(t *Tier, v float64) { t.Bytes = uint64(v) }
		case "verge_storage_evictions_total":
			set = func(t *Tier, v float64) { t.Evictions = uint64(v) }
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			name := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "tier" {
					name = l.GetValue()
				}
			}
			if name == "" || checkName("tier", name) != nil {
				continue
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			if v < 0 {
				v = 0
			}
			set(tier(name), v)
		}
	}
	out := make([]Tier, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	if len(out) > maxTiers {
		out = out[:maxTiers]
	}
	return out, nil
}

// FromDNSStats is a Report of a GeoDNS server's counters
// (dnsredirect.Server.Stats()): queries in total and by type, rcode and
// answering site, the geo lookups, and, as gauges, the mean answer time,
// fail-open mode and the edges it sees healthy. The Reporter fills in the
// identity.
func FromDNSStats(st dnsredirect.Stats) Report {
	c := map[string]uint64{
		"dns_truncated": st.Truncated, "dns_dropped": st.Dropped, "dns_send_errors": st.SendErrors,
		"dns_geo_cache_hits": st.GeoCacheHits, "dns_geo_lookups": st.GeoLookups, "dns_geo_errors": st.GeoErrors,
		"dns_answers": st.AnswerCount,
	}
	var total uint64
	for _, q := range st.Queries {
		total += q.Count
		for _, k := range []string{"dns_type_" + metricPart(q.Type), "dns_rcode_" + metricPart(q.Rcode), "dns_site_" + metricPart(q.Site)} {
			c[k] += q.Count
		}
	}
	c["dns_queries"] = total
	healthy := 0
	for _, e := range st.Edges {
		if e.Healthy {
			healthy++
		}
	}
	failOpen := 0.0
	if st.FailOpen {
		failOpen = 1
	}
	return Report{Ready: true, Counters: c, Gauges: map[string]float64{
		"dns_answer_time_mean_seconds": st.AnswerTimeMean.Seconds(), "dns_fail_open": failOpen,
		"dns_edges": float64(len(st.Edges)), "dns_edges_healthy": float64(healthy),
	}}
}

// FromAttackState converts a scrubber's attack state (scrubber.Scrubber's
// AttackState) for Report.Attack.
func FromAttackState(a scrubber.AttackState) *Attack {
	return &Attack{UnderAttack: a.UnderAttack, Since: a.Since, Reason: a.Reason, RequestRate: max(a.RequestRate, 0),
		LimitedShare: min(max(a.LimitedShare, 0), 1)}
}

// GatherCounters flattens the counters in g whose names start with prefix
// into Report.Counters form: the name, then each label value, joined by
// ".", with characters a counter name may not hold replaced by "_" (so
// verge_scrubber_refused_total{reason="rate"} is
// "verge_scrubber_refused_total.rate"). A scrubber or GeoDNS node reports
// its Prometheus counters this way.
func GatherCounters(g prometheus.Gatherer, prefix string) (map[string]uint64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("management: gathering counters: %w", err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "." + metricPart(l.GetValue())
			}
			if len(name) > 128 || len(out) >= maxNamedValues {
				continue
			}
			if v := m.GetCounter().GetValue(); v > 0 {
				out[name] = uint64(min(v, MaxCounterValue))
			} else {
				out[name] = 0
			}
		}
	}
	return out, nil
}

// metricPart makes s usable inside a counter name.
func metricPart(s string) string {
	if s == "" {
		return "none"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':') {
			b[i] = '_'
		}
	}
	return string(b)
}
