package scrubber

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vergecdn/verge/scrubber/buckets"
)

// metrics are the scrubber's Prometheus series. The hot path only
// increments pre-resolved counters (no label lookups per request).
type metrics struct {
	requests       *prometheus.CounterVec // by verdict
	verdict        [nReasons]prometheus.Counter
	unkeyed        prometheus.Counter
	challenged     prometheus.Counter
	challengeOK    prometheus.Counter
	connRejected   *prometheus.CounterVec // by reason
	connDeny       prometheus.Counter
	connLimit      prometheus.Counter
	connBoxed      prometheus.Counter
	connOpen       prometheus.Gauge
	slowClosed     *prometheus.CounterVec // by reason: header_timeout, header_too_large, body_timeout, bad_request
	underAttack    prometheus.Gauge
	transitions    *prometheus.CounterVec // by to: attack, normal
	reports        *prometheus.CounterVec // by result: ok, error, dropped
	windowRate     prometheus.Gauge
	windowShare    prometheus.Gauge
	listReloads    *prometheus.CounterVec // by result: ok, error
	listRules      prometheus.Gauge
	upstreamErrors *prometheus.CounterVec // by status: 502, 504
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_requests_total",
			Help: "Requests by the stage that decided them: pass (went on), allowlist (skipped the limits), deny, per_ip, per_prefix, penalty_box, global, unkeyed (no source address: passed unlimited), challenge (served the cookie challenge).",
		}, []string{"verdict"}),
		connRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_connections_rejected_total",
			Help: "Connections closed at accept: deny (deny list), conn_limit (per-client connection cap), penalty_box (source in the penalty box).",
		}, []string{"reason"}),
		connOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "verge_scrubber_connections_open",
			Help: "Client connections open through the scrubber's listener.",
		}),
		slowClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_connections_closed_total",
			Help: "Connections the fast front end closed for misbehaving: header_timeout, header_too_large, body_timeout, bad_request.",
		}, []string{"reason"}),
		underAttack: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "verge_scrubber_under_attack",
			Help: "1 while the node is in under-attack mode.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_attack_transitions_total",
			Help: "Entries into (to=attack) and exits from (to=normal) under-attack mode.",
		}, []string{"to"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_attack_reports_total",
			Help: "Attack reports sent to the reporter: ok, error (after retries), dropped (queue full).",
		}, []string{"result"}),
		windowRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "verge_scrubber_window_requests_per_second",
			Help: "Requests per second in the last attack-detection window.",
		}),
		windowShare: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "verge_scrubber_window_limited_ratio",
			Help: "Share of the last window's requests refused by the limits.",
		}),
		listReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_list_reloads_total",
			Help: "Allow/deny list file reloads: ok, error (the previous lists stay in force).",
		}, []string{"result"}),
		listRules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "verge_scrubber_list_rules",
			Help: "Prefixes in the allow/deny lists in force.",
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_scrubber_upstream_errors_total",
			Help: "Proxied requests answered with an error because the upstream failed: 502 (connect or protocol), 504 (timeout).",
		}, []string{"status"}),
	}
	for r := reason(0); r < nReasons; r++ {
		m.verdict[r] = m.requests.WithLabelValues(r.label())
	}
	m.unkeyed = m.requests.WithLabelValues("unkeyed")
	m.challenged = m.requests.WithLabelValues("challenge")
	m.challengeOK = m.requests.WithLabelValues("challenge_passed")
	m.connDeny = m.connRejected.WithLabelValues("deny")
	m.connLimit = m.connRejected.WithLabelValues("conn_limit")
	m.connBoxed = m.connRejected.WithLabelValues("penalty_box")
	for _, r := range []string{"header_timeout", "header_too_large", "body_timeout", "bad_request"} {
		m.slowClosed.WithLabelValues(r)
	}
	for _, to := range []string{"attack", "normal"} {
		m.transitions.WithLabelValues(to)
	}
	for _, r := range []string{"ok", "error", "dropped"} {
		m.reports.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.listReloads.WithLabelValues(r)
	}
	for _, s := range []string{"502", "504"} {
		m.upstreamErrors.WithLabelValues(s)
	}
	reg.MustRegister(m.requests, m.connRejected, m.connOpen, m.slowClosed, m.underAttack, m.transitions,
		m.reports, m.windowRate, m.windowShare, m.listReloads, m.listRules, m.upstreamErrors)
	return m
}

// registerTables exports the limiter tables' size and evictions.
func (s *Scrubber) registerTables(reg prometheus.Registerer) {
	for _, t := range []struct {
		name string
		tab  *buckets.Table
	}{{"per_ip", s.perIP}, {"per_prefix", s.perPrefix}} {
		if t.tab == nil {
			continue
		}
		tab := t.tab
		labels := prometheus.Labels{"table": t.name}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "verge_scrubber_tracked_sources", Help: "Sources in a limiter table.", ConstLabels: labels,
			}, func() float64 { return float64(tab.Len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "verge_scrubber_tracked_sources_capacity", Help: "Most sources a limiter table holds.", ConstLabels: labels,
			}, func() float64 { return float64(tab.Capacity()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "verge_scrubber_source_evictions_total", Help: "Sources forgotten to make room in a full limiter table.", ConstLabels: labels,
			}, func() float64 { return float64(tab.Evictions()) }),
		)
	}
}
