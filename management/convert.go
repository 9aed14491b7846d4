package management

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/edge"
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
		case "verge_edge_cache_objects":
			set = func(t *Tier, v float64) { t.Objects = uint64(v) }
		case "verge_edge_cache_bytes":
			set = func(t *Tier, v float64) { t.Bytes = uint64(v) }
		case "verge_edge_cache_evictions_total":
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
