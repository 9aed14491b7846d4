package purgelog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Replica's collectors.
type metrics struct {
	applied      *prometheus.CounterVec // purges applied, by source (push, sync)
	duplicates   prometheus.Counter
	gaps         prometheus.Counter
	syncs        *prometheus.CounterVec // anti-entropy rounds by result
	syncDuration prometheus.Histogram
	fetched      prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_purges_applied_total",
			Help: "Numbered purges applied to this node's cache, by source: push (POST /purge) or sync (caught up from a peer).",
		}, []string{"source"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_distribution_purge_duplicates_total",
			Help: "Purges received again after they were applied (acknowledged, not reapplied).",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_distribution_purge_gaps_total",
			Help: "Purges whose number skipped past the last applied, so the node caught up first.",
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_distribution_purge_syncs_total",
			Help: "Anti-entropy rounds against the peers, by result.",
		}, []string{"result"}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "verge_distribution_purge_sync_duration_seconds",
			Help:    "Time of a successful anti-entropy round (compare, fetch, apply).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_distribution_purge_sync_records_total",
			Help: "Purge log records fetched from peers.",
		}),
	}
}

// Register adds the replica's metrics to reg.
func (r *Replica) Register(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	for _, c := range []prometheus.Collector{
		r.m.applied, r.m.duplicates, r.m.gaps, r.m.syncs, r.m.syncDuration, r.m.fetched,
		gauge("verge_distribution_purge_log_last_seq", "Highest purge sequence number this node applied.",
			func() float64 { return float64(r.log.Last()) }),
		gauge("verge_distribution_purge_log_records", "Records in this node's purge log.",
			func() float64 { return float64(r.log.Len()) }),
		gauge("verge_distribution_purge_log_bytes", "Size of this node's purge log file.",
			func() float64 { return float64(r.log.Size()) }),
		gauge("verge_distribution_purge_caught_up", "1 once the node caught up with a peer since it started.",
			func() float64 {
				if r.CaughtUp() {
					return 1
				}
				return 0
			}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("purgelog: register metrics: %w", err)
		}
	}
	return nil
}
