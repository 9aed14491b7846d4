package distribution

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vergecdn/verge/distribution/health"
)

// metrics are one Parents' or Pool's collectors. Register adds a "pool"
// label (the Options.Name) so several share one registry.
type metrics struct {
	requests  *prometheus.CounterVec   // upstream requests by upstream and result
	duration  *prometheus.HistogramVec // time to response headers by upstream
	picks     *prometheus.CounterVec   // first choices by upstream
	failovers *prometheus.CounterVec   // moves past an upstream to the next
	exhausted prometheus.Counter       // requests no upstream answered
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_upstream_requests_total",
			Help: "Requests sent to an upstream (hub, origin, backend), by result: the status class or error.",
		}, []string{"upstream", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "verge_distribution_upstream_duration_seconds",
			Help:    "Time from sending a request to an upstream to its response headers (or failure).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"upstream"}),
		picks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_picks_total",
			Help: "Requests whose first choice was this upstream (ring owner or policy pick).",
		}, []string{"upstream"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_failovers_total",
			Help: "Times a request moved on from this upstream to the next after a failure.",
		}, []string{"from"}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_distribution_exhausted_total",
			Help: "Requests that no upstream answered.",
		}),
	}
}

// results are the values of the result label; index 0 is a transport error,
// 1 to 5 the status class.
var results = [6]string{"error", "1xx", "2xx", "3xx", "4xx", "5xx"}

// upstreamMetrics are one upstream's series, resolved once so the request
// path only increments.
type upstreamMetrics struct {
	requests [6]prometheus.Counter
	duration prometheus.Observer
	picks    prometheus.Counter
	failover prometheus.Counter
}

func (m *metrics) forUpstream(name string) upstreamMetrics {
	var um upstreamMetrics
	for i, r := range results {
		um.requests[i] = m.requests.WithLabelValues(name, r)
	}
	um.duration = m.duration.WithLabelValues(name)
	um.picks = m.picks.WithLabelValues(name)
	um.failover = m.failovers.WithLabelValues(name)
	return um
}

// register adds m and the checker's metrics to reg under pool=name.
func (m *metrics) register(reg prometheus.Registerer, name string, c *health.Checker) error {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"pool": name}, reg)
	for _, col := range []prometheus.Collector{m.requests, m.duration, m.picks, m.failovers, m.exhausted} {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("distribution: %s: register metrics: %w", name, err)
		}
	}
	if err := c.Register(reg); err != nil {
		return fmt.Errorf("distribution: %s: %w", name, err)
	}
	return nil
}
