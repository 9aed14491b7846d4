package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Register adds the engine's metrics to reg, and its cache tiers' when the
// engine opened them (verge_storage_...). The engine's are read from the
// same atomic counters that reports use, so the request path counts once.
func (e *Engine) Register(reg prometheus.Registerer) error {
	if err := reg.Register(&collector{e: e}); err != nil {
		return err
	}
	if e.tiered != nil {
		return e.tiered.Register(reg)
	}
	return nil
}

var (
	descRequests = prometheus.NewDesc("verge_edge_requests_total",
		"Requests answered, by property and cache result (hit, stale, miss, pass, error).", []string{"property", "cache"}, nil)
	descResponses = prometheus.NewDesc("verge_edge_responses_total",
		"Responses sent, by property and status class.", []string{"property", "class"}, nil)
	descSent = prometheus.NewDesc("verge_edge_sent_bytes_total",
		"Body bytes sent to clients.", []string{"property"}, nil)
	descUpReq = prometheus.NewDesc("verge_edge_upstream_requests_total",
		"Requests sent to the next tier.", []string{"property"}, nil)
	descUpResp = prometheus.NewDesc("verge_edge_upstream_responses_total",
		"Responses from the next tier, by status class.", []string{"property", "class"}, nil)
	descUpBytes = prometheus.NewDesc("verge_edge_upstream_received_bytes_total",
		"Body bytes received from the next tier for storage.", []string{"property"}, nil)
	descLatency = prometheus.NewDesc("verge_edge_request_duration_seconds",
		"Time from request head to the end of the response.", []string{"property"}, nil)
	descRefused = prometheus.NewDesc("verge_edge_refused_requests_total",
		"Requests refused: unknown host, not a proxy target, too many header fields.", nil, nil)
	descCollapsed = prometheus.NewDesc("verge_edge_collapsed_requests_total",
		"Requests that waited for another request's upstream fetch instead of making their own.", nil, nil)
	descUpErr = prometheus.NewDesc("verge_edge_upstream_errors_total",
		"Upstream exchanges that failed (unreachable or timed out).", nil, nil)
	descFills = prometheus.NewDesc("verge_edge_fills_in_flight",
		"Upstream fetches in progress.", nil, nil)
)

type collector struct{ e *Engine }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descResponses, descSent, descUpReq, descUpResp, descUpBytes,
		descLatency, descRefused, descCollapsed, descUpErr, descFills} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.e.stats.Snapshot()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, p := range snap.Properties {
		for res, v := range p.Requests {
			counter(descRequests, v, p.Property, res)
		}
		for class, v := range p.Status {
			counter(descResponses, v, p.Property, class)
		}
		counter(descSent, p.Bytes, p.Property)
		counter(descUpReq, p.UpstreamRequests, p.Property)
		counter(descUpBytes, p.UpstreamBytes, p.Property)
		for class, v := range p.UpstreamStatus {
			counter(descUpResp, v, p.Property, class)
		}
		buckets := map[float64]uint64{}
		var cum, count uint64
		for i, b := range LatencyBuckets {
			cum += p.LatencyBuckets[i]
			buckets[b] = cum
		}
		count = cum + p.LatencyBuckets[len(LatencyBuckets)]
		ch <- prometheus.MustNewConstHistogram(descLatency, count, p.LatencySum.Seconds(), buckets, p.Property)
	}
	counter(descRefused, snap.Refused)
	counter(descCollapsed, snap.Collapsed)
	counter(descUpErr, snap.UpstreamErrors)
	ch <- prometheus.MustNewConstMetric(descFills, prometheus.GaugeValue, float64(c.e.fills.inFlight()))
}
