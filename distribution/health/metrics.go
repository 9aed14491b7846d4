package health

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one Checker's collectors. They are created with the Checker
// and updated whether or not they are registered.
type metrics struct {
	up       *prometheus.GaugeVec     // 1 healthy, 0 down, per target
	changes  *prometheus.CounterVec   // state changes per target and new state
	failures *prometheus.CounterVec   // failed checks per target and source (probe, passive)
	probe    *prometheus.HistogramVec // probe round-trip time per target
}

func newMetrics() *metrics {
	return &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "verge_distribution_health_up",
			Help: "Whether a health-checked target is considered healthy (1) or down (0).",
		}, []string{"target"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_health_state_changes_total",
			Help: "Health state changes per target, by the state entered (up, down).",
		}, []string{"target", "state"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_health_failures_total",
			Help: "Failed health observations per target, by source (probe, passive).",
		}, []string{"target", "source"}),
		probe: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "verge_distribution_health_probe_duration_seconds",
			Help:    "Time an active health probe took, successful or not.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"target"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.changes, m.failures, m.probe}
}

// forget drops a removed target's series.
func (m *metrics) forget(name string) {
	m.up.DeleteLabelValues(name)
	m.changes.DeletePartialMatch(prometheus.Labels{"target": name})
	m.failures.DeletePartialMatch(prometheus.Labels{"target": name})
	m.probe.DeleteLabelValues(name)
}

// Register adds the checker's metrics to reg: verge_distribution_health_up,
// _state_changes_total, _failures_total and _probe_duration_seconds, each
// labelled by target. To register several checkers in one registry, give
// every one of them a distinguishing label:
// prometheus.WrapRegistererWith(prometheus.Labels{"pool": name}, reg).
func (c *Checker) Register(reg prometheus.Registerer) error {
	for _, col := range c.m.collectors() {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("health: register metrics: %w", err)
		}
	}
	return nil
}
