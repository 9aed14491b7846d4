package management

import (
	"errors"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are management's own counters; the fleet's are read at scrape
// time by fleetCollector.
type metrics struct {
	reports     *prometheus.CounterVec // by result
	purges      *prometheus.CounterVec // by final state
	acks        *prometheus.CounterVec // by op, result
	transitions *prometheus.CounterVec // alert firings and resolutions
	webhook     *prometheus.CounterVec // notification results
	api         *prometheus.CounterVec // operator API answers by code
	s           *Server
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_reports_total",
			Help: "Node reports received, by result: accepted, duplicate (already counted), rejected (malformed), unauthorized."}, []string{"result"}),
		purges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_purges_total",
			Help: "Purges finished, by state: done (every node acked), failed (some did not), error (not logged)."}, []string{"state"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_node_acks_total",
			Help: "Node answers to purges and preloads, by operation and result."}, []string{"op", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_alert_transitions_total",
			Help: "Alerts that fired or resolved."}, []string{"state"}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_alert_notifications_total",
			Help: "Webhook notifications, by result: delivered, retry (an attempt failed), failed (gave up), dropped (queue full)."}, []string{"result"}),
		api: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_api_responses_total",
			Help: "Operator and intake API answers, by status code."}, []string{"code"}),
		s: s,
	}
	for _, r := range []string{"accepted", "duplicate", "rejected", "unauthorized"} {
		m.reports.WithLabelValues(r)
	}
	for _, st := range []string{StateDone, StateFailed, "error"} {
		m.purges.WithLabelValues(st)
	}
	for _, op := range []string{"purge", "preload"} {
		m.acks.WithLabelValues(op, "ok")
		m.acks.WithLabelValues(op, "failed")
	}
	for _, st := range []string{"firing", "resolved"} {
		m.transitions.WithLabelValues(st)
	}
	for _, r := range []string{"delivered", "retry", "failed", "dropped"} {
		m.webhook.WithLabelValues(r)
	}
	return m
}

// Register adds management's metrics and the fleet's to reg.
func (s *Server) Register(reg prometheus.Registerer) error {
	m := s.m
	return errors.Join(reg.Register(m.reports), reg.Register(m.purges), reg.Register(m.acks), reg.Register(m.transitions),
		reg.Register(m.webhook), reg.Register(m.api), reg.Register(&fleetCollector{s: s}))
}

var (
	nodeLabels  = []string{"node", "role", "region"}
	descNodeUp  = prometheus.NewDesc("verge_management_node_up", "1 when the node reports and is ready, else 0.", nodeLabels, nil)
	descNodeAge = prometheus.NewDesc("verge_management_node_last_report_age_seconds",
		"Seconds since the node's last report.", nodeLabels, nil)
	descNodeReq = prometheus.NewDesc("verge_management_node_requests_total",
		"Requests the node answered (its current process), by cache result.", append(nodeLabels, "cache"), nil)
	descNodeResp = prometheus.NewDesc("verge_management_node_responses_total",
		"Responses the node sent (its current process), by status class.", append(nodeLabels, "class"), nil)
	descNodeBytes = prometheus.NewDesc("verge_management_node_sent_bytes_total",
		"Body bytes the node sent to clients (its current process).", nodeLabels, nil)
	descNodeRPS = prometheus.NewDesc("verge_management_node_requests_per_second",
		"Requests per second between the node's last two reports.", nodeLabels, nil)
	descNodeHit = prometheus.NewDesc("verge_management_node_hit_ratio",
		"Hits / (hits + misses) over the 5 minutes before the node's last report.", nodeLabels, nil)
	descNodeCacheBytes = prometheus.NewDesc("verge_management_node_cache_bytes",
		"Bytes cached, by storage tier.", append(nodeLabels, "tier"), nil)
	descNodeCacheObjects = prometheus.NewDesc("verge_management_node_cache_objects",
		"Objects cached, by storage tier.", append(nodeLabels, "tier"), nil)
	descNodeAttack = prometheus.NewDesc("verge_management_node_under_attack",
		"1 while the node reports an attack.", nodeLabels, nil)
	descNodeCounter = prometheus.NewDesc("verge_management_node_counter_total",
		"The node's other reported counters (dns, scrubber, edge), by name.", append(nodeLabels, "name"), nil)

	propLabels  = []string{"property", "role"}
	descPropReq = prometheus.NewDesc("verge_management_property_requests_total",
		"Requests answered for the property by the fleet since management started, by cache result.", append(propLabels, "cache"), nil)
	descPropResp = prometheus.NewDesc("verge_management_property_responses_total",
		"Responses sent for the property by the fleet since management started, by status class.", append(propLabels, "class"), nil)
	descPropBytes = prometheus.NewDesc("verge_management_property_sent_bytes_total",
		"Body bytes sent for the property by the fleet since management started.", propLabels, nil)
	descPropUpBytes = prometheus.NewDesc("verge_management_property_upstream_bytes_total",
		"Body bytes the fleet fetched from the next tier for the property since management started.", propLabels, nil)
	descPropLatency = prometheus.NewDesc("verge_management_property_request_duration_seconds",
		"Request latency for the property over the fleet since management started.", propLabels, nil)

	descFleet = prometheus.NewDesc("verge_management_fleet_nodes",
		"Nodes known, by role and health.", []string{"role", "health"}, nil)
	descFiring = prometheus.NewDesc("verge_management_alerts_firing",
		"Alerts firing, by rule.", []string{"rule", "severity"}, nil)
)

// fleetCollector exports the fleet at scrape time.
type fleetCollector struct{ s *Server }

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeUp, descNodeAge, descNodeReq, descNodeResp, descNodeBytes, descNodeRPS, descNodeHit,
		descNodeCacheBytes, descNodeCacheObjects, descNodeAttack, descNodeCounter, descPropReq, descPropResp, descPropBytes,
		descPropUpBytes, descPropLatency, descFleet, descFiring} {
		ch <- d
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.s.fleet
	now := f.now()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	f.mu.RLock()
	health := map[[2]string]int{}
	for _, n := range f.nodes {
		v := f.viewLocked(n, now)
		l := []string{v.Name, v.Role, v.Region}
		health[[2]string{v.Role, v.Health}]++
		up := 0.0
		if v.Health == HealthUp {
			up = 1
		}
		gauge(descNodeUp, up, l...)
		if v.LastReportAge != nil {
			gauge(descNodeAge, *v.LastReportAge, l...)
			gauge(descNodeRPS, v.RequestsPerSecond, l...)
		}
		if v.HitRatio != nil {
			gauge(descNodeHit, *v.HitRatio, l...)
		}
		if cur := n.instances[n.instance]; cur != nil && len(cur.Props) > 0 {
			var sum PropertyCounters
			for _, p := range cur.Props {
				addCounters(&sum, p)
			}
			for _, r := range resultsList(sum.Requests) {
				counter(descNodeReq, r.v, append(l, r.name)...)
			}
			for _, cl := range classList(sum.Status) {
				counter(descNodeResp, cl.v, append(l, cl.name)...)
			}
			counter(descNodeBytes, sum.Bytes, l...)
		}
		for _, t := range n.tiers {
			gauge(descNodeCacheBytes, float64(t.Bytes), append(l, t.Name)...)
			gauge(descNodeCacheObjects, float64(t.Objects), append(l, t.Name)...)
		}
		attack := 0.0
		if n.attack != nil && n.attack.UnderAttack {
			attack = 1
		}
		gauge(descNodeAttack, attack, l...)
		for name, v := range n.counters {
			counter(descNodeCounter, v, append(l, name)...)
		}
	}
	keys := make([]string, 0, len(f.totals))
	for k := range f.totals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := f.totals[k]
		role := k[:len(k)-len(t.Property)-1]
		l := []string{t.Property, role}
		for _, r := range resultsList(t.Requests) {
			counter(descPropReq, r.v, append(l, r.name)...)
		}
		for _, cl := range classList(t.Status) {
			counter(descPropResp, cl.v, append(l, cl.name)...)
		}
		counter(descPropBytes, t.Bytes, l...)
		counter(descPropUpBytes, t.UpstreamBytes, l...)
		if t.latencyOK && len(t.Latency) == len(f.bounds)+1 {
			buckets := map[float64]uint64{}
			var cum uint64
			for i, b := range f.bounds {
				cum += t.Latency[i]
				buckets[b] = cum
			}
			cum += t.Latency[len(f.bounds)]
			ch <- prometheus.MustNewConstHistogram(descPropLatency, cum, float64(t.LatencySumNanos)/1e9, buckets, l...)
		}
	}
	f.mu.RUnlock()
	for k, v := range health {
		gauge(descFleet, float64(v), k[0], k[1])
	}
	firing := map[[2]string]int{}
	for _, r := range c.s.alerts.Rules() {
		firing[[2]string{r.Name, r.Severity}] = 0
	}
	for _, a := range c.s.alerts.Active() {
		firing[[2]string{a.Rule, a.Severity}]++
	}
	for k, v := range firing {
		gauge(descFiring, float64(v), k[0], k[1])
	}
}

type named struct {
	name string
	v    uint64
}

func resultsList(r Results) []named {
	return []named{{"hit", r.Hit}, {"stale", r.Stale}, {"miss", r.Miss}, {"pass", r.Pass}, {"error", r.Error}}
}

func classList(c Classes) []named {
	return []named{{"1xx", c.C1xx}, {"2xx", c.C2xx}, {"3xx", c.C3xx}, {"4xx", c.C4xx}, {"5xx", c.C5xx}}
}

// reporterMetrics are a Reporter's.
type reporterMetrics struct {
	posts   *prometheus.CounterVec
	backlog prometheus.Gauge
	dropped prometheus.Counter
}

func newReporterMetrics() reporterMetrics {
	m := reporterMetrics{
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "verge_management_reporter_posts_total",
			Help: "Report deliveries to management, by result: ok, error (kept for later), rejected (dropped)."}, []string{"result"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "verge_management_reporter_backlog_reports",
			Help: "Snapshots waiting to be delivered to management."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "verge_management_reporter_dropped_reports_total",
			Help: "Waiting snapshots dropped for room (their counts travel in newer ones)."}),
	}
	for _, r := range []string{"ok", "error", "rejected"} {
		m.posts.WithLabelValues(r)
	}
	return m
}

func (m reporterMetrics) register(reg prometheus.Registerer) error {
	return errors.Join(reg.Register(m.posts), reg.Register(m.backlog), reg.Register(m.dropped))
}
