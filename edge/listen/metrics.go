package listen

import "github.com/prometheus/client_golang/prometheus"

// H2Metrics counts the HTTP/2 connections the guard ended.
type H2Metrics struct {
	closed *prometheus.CounterVec
}

// NewH2Metrics creates the guard's metrics and registers them into reg.
func NewH2Metrics(reg prometheus.Registerer) (*H2Metrics, error) {
	m := &H2Metrics{closed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "verge_edge_h2_guard_closed_connections_total",
		Help: "HTTP/2 connections the guard ended, by reason: rapid_reset, header_block (too large), header_timeout.",
	}, []string{"reason"})}
	for _, r := range []string{reasonRapidReset, reasonHeaderBlock, reasonHeaderTimeout} {
		m.closed.WithLabelValues(r)
	}
	if err := reg.Register(m.closed); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *H2Metrics) inc(reason string) {
	if m != nil {
		m.closed.WithLabelValues(reason).Inc()
	}
}
