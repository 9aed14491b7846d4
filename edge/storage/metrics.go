package storage

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descObjects = prometheus.NewDesc("verge_storage_objects",
		"Objects held, by tier (ram, disk).", []string{"tier"}, nil)
	descBytes = prometheus.NewDesc("verge_storage_bytes",
		"Bytes held, by tier: RAM counts objects' estimated memory, disk their file sizes.", []string{"tier"}, nil)
	descCapacity = prometheus.NewDesc("verge_storage_capacity_bytes",
		"Byte budget, by tier.", []string{"tier"}, nil)
	descEvictions = prometheus.NewDesc("verge_storage_evictions_total",
		"Objects removed to make room, by tier (RAM: including objects the policy did not admit).", []string{"tier"}, nil)
	descRejected = prometheus.NewDesc("verge_storage_admission_rejections_total",
		"Objects the RAM policy did not admit (tinylfu: rated below the object they would evict).", nil, nil)
	descHits = prometheus.NewDesc("verge_storage_hits_total",
		"Lookups answered, by tier.", []string{"tier"}, nil)
	descMisses = prometheus.NewDesc("verge_storage_misses_total",
		"Lookups a tier could not answer, by tier (a RAM miss goes on to disk).", []string{"tier"}, nil)
	descSpills = prometheus.NewDesc("verge_storage_spills_total",
		"Objects written to disk after RAM let them go, or because they were too large for RAM.", nil, nil)
	descSpillDrops = prometheus.NewDesc("verge_storage_spills_dropped_total",
		"Objects that could not be written to disk (queue full, disk paused or failing, too large).", nil, nil)
	descPromotions = prometheus.NewDesc("verge_storage_promotions_total",
		"Disk objects copied back to RAM after promote_after hits.", nil, nil)
	descDiskErrors = prometheus.NewDesc("verge_storage_disk_errors_total",
		"Failed disk operations, by operation (write, read, rename, remove, sync, checkpoint, scan).", []string{"op"}, nil)
	descDiskUp = prometheus.NewDesc("verge_storage_disk_up",
		"1 when the disk tier runs and its last write succeeded, 0 when it is failing or absent.", nil, nil)
	descCorrupt = prometheus.NewDesc("verge_storage_disk_corrupt_total",
		"Disk files dropped because a length or checksum check failed.", nil, nil)
	descRecovery = prometheus.NewDesc("verge_storage_recovery_seconds",
		"Time the disk index took to rebuild from the checkpoint and the files at start.", nil, nil)
	descRecovered = prometheus.NewDesc("verge_storage_recovered_objects",
		"Disk objects found at start.", nil, nil)
	descCheckpoints = prometheus.NewDesc("verge_storage_checkpoints_total",
		"Disk index checkpoints written.", nil, nil)
	descLastCheckpoint = prometheus.NewDesc("verge_storage_last_checkpoint_timestamp_seconds",
		"Unix time of the last disk index checkpoint.", nil, nil)
)

// Register adds the storage metrics to reg (names verge_storage_...; see
// README.md). They are read from the tiers' counters when scraped.
func (t *Tiered) Register(reg prometheus.Registerer) error {
	if err := reg.Register(collector{t}); err != nil {
		return fmt.Errorf("storage: register metrics: %w", err)
	}
	return nil
}

type collector struct{ t *Tiered }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descObjects, descBytes, descCapacity, descEvictions, descRejected,
		descHits, descMisses, descSpills, descSpillDrops, descPromotions, descDiskErrors, descDiskUp,
		descCorrupt, descRecovery, descRecovered, descCheckpoints, descLastCheckpoint} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	t := c.t
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for tier, st := range t.TierStats() {
		gauge(descObjects, float64(st.Objects), tier)
		gauge(descBytes, float64(st.Bytes), tier)
		gauge(descCapacity, float64(st.Capacity), tier)
		counter(descEvictions, st.Evictions, tier)
		counter(descHits, st.Hits, tier)
		counter(descMisses, st.Misses, tier)
		if tier == "ram" {
			counter(descRejected, st.Rejected)
		}
	}
	counter(descSpills, t.spills.Load())
	counter(descSpillDrops, t.spillDrops.Load())
	counter(descPromotions, t.promotions.Load())
	d := t.disk
	up := 0.0
	if d != nil && !d.failing.Load() {
		up = 1
	}
	gauge(descDiskUp, up)
	if d == nil {
		return
	}
	for op := range numOps {
		counter(descDiskErrors, d.errs[op].Load(), opNames[op])
	}
	counter(descCorrupt, d.corrupt.Load())
	gauge(descRecovery, d.recoveryTime.Seconds())
	gauge(descRecovered, float64(d.recovered))
	counter(descCheckpoints, d.checkpoints.Load())
	gauge(descLastCheckpoint, float64(d.lastCheckpoint.Load()))
}
