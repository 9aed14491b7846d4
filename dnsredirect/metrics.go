package dnsredirect

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Query labels. The hot path counts into per-goroutine shards of atomic
// counters; a collector sums the shards when Prometheus scrapes, and Stats
// does the same for the management reporter.
var (
	qtypeNames = [...]string{"A", "AAAA", "CNAME", "NS", "SOA", "ANY", "other"}
	rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS"}
)

const (
	nQtype = len(qtypeNames)
	nRcode = len(rcodeNames)
)

func qtypeIndex(t uint16) int {
	switch t {
	case typeA:
		return 0
	case typeAAAA:
		return 1
	case typeCNAME:
		return 2
	case typeNS:
		return 3
	case typeSOA:
		return 4
	case typeANY:
		return 5
	}
	return 6
}

func rcodeIndex(rc int) int {
	if rc == rcodeBadVers {
		return 6
	}
	if rc >= 0 && rc < 6 {
		return rc
	}
	return 2
}

// latencyBuckets are the upper bounds (seconds) of the answer-latency
// histogram: from receiving a query to handing the reply to the kernel.
var latencyBuckets = [...]float64{2e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 1e-3, 10e-3, 100e-3}

// counters is one shard: written by one serving goroutine (UDP socket) or
// by all TCP connections, read by the collector.
type counters struct {
	queries    []atomic.Uint64 // [qtype][rcode][site+1]; site 0 is "none"
	nSite      int
	truncated  atomic.Uint64
	dropped    atomic.Uint64
	sendErrors atomic.Uint64
	geoHit     atomic.Uint64
	geoMiss    atomic.Uint64
	geoErr     atomic.Uint64
	buckets    [len(latencyBuckets) + 1]atomic.Uint64
	sumNanos   atomic.Uint64
	_          [64]byte // keep shards on separate cache lines
}

func newCounters(sites int) *counters {
	return &counters{queries: make([]atomic.Uint64, nQtype*nRcode*(sites+1)), nSite: sites + 1}
}

func (c *counters) count(qtype uint16, rcode, site int) {
	c.queries[(qtypeIndex(qtype)*nRcode+rcodeIndex(rcode))*c.nSite+site+1].Add(1)
}

func (c *counters) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	c.buckets[i].Add(1)
	c.sumNanos.Add(uint64(max(d, 0)))
}

// metrics are the server's Prometheus collectors.
type metrics struct {
	shards     func() []*counters
	siteNames  []string
	queries    *prometheus.Desc
	latency    *prometheus.Desc
	truncated  *prometheus.Desc
	dropped    *prometheus.Desc
	sendErrors *prometheus.Desc
	geo        *prometheus.Desc

	failOpen   prometheus.Gauge
	siteUp     *prometheus.GaugeVec
	edgeUp     *prometheus.GaugeVec
	edgeLoad   *prometheus.GaugeVec
	edgeAttack *prometheus.GaugeVec
}

func newMetrics(siteNames []string, shards func() []*counters) *metrics {
	return &metrics{
		shards:    shards,
		siteNames: siteNames,
		queries: prometheus.NewDesc("verge_dns_queries_total",
			"DNS queries answered, by question type, response code and the site the answer came from (\"none\" when no edge was chosen).",
			[]string{"qtype", "rcode", "site"}, nil),
		latency: prometheus.NewDesc("verge_dns_answer_duration_seconds",
			"Time from receiving a query to handing its reply to the kernel.", nil, nil),
		truncated: prometheus.NewDesc("verge_dns_truncated_total",
			"UDP replies sent truncated (TC) because the answer did not fit the client's buffer.", nil, nil),
		dropped: prometheus.NewDesc("verge_dns_dropped_total",
			"Packets that got no reply: shorter than a DNS header, or a response rather than a query.", nil, nil),
		sendErrors: prometheus.NewDesc("verge_dns_send_errors_total",
			"Replies the kernel refused to send.", nil, nil),
		geo: prometheus.NewDesc("verge_dns_geo_lookups_total",
			"Client locations by source: the per-network cache, the mmdb, or a failed mmdb lookup.",
			[]string{"result"}, nil),
		failOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "verge_dns_fail_open",
			Help: "1 while every edge is down and answers ignore health (fail open)."}),
		siteUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "verge_dns_site_up",
			Help: "1 when the site has a healthy edge."}, []string{"site"}),
		edgeUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "verge_dns_edge_up",
			Help: "1 when the edge passes its health checks."}, []string{"site", "edge"}),
		edgeLoad: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "verge_dns_edge_load",
			Help: "The edge's load as used for selection (pushed by management, else from its probe)."}, []string{"site", "edge"}),
		edgeAttack: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "verge_dns_edge_under_attack",
			Help: "1 while the edge is marked under attack and answered with its site's scrubber."}, []string{"site", "edge"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m, m.failOpen, m.siteUp, m.edgeUp, m.edgeLoad, m.edgeAttack} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Describe implements prometheus.Collector for the sharded counters.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.queries, m.latency, m.truncated, m.dropped, m.sendErrors, m.geo} {
		ch <- d
	}
}

// Collect implements prometheus.Collector for the sharded counters.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	t := m.total()
	for _, q := range t.queries {
		ch <- prometheus.MustNewConstMetric(m.queries, prometheus.CounterValue, float64(q.Count), q.Type, q.Rcode, q.Site)
	}
	buckets := make(map[float64]uint64, len(latencyBuckets))
	var cum uint64
	for i, ub := range latencyBuckets {
		cum += t.buckets[i]
		buckets[ub] = cum
	}
	count := cum + t.buckets[len(latencyBuckets)]
	ch <- prometheus.MustNewConstHistogram(m.latency, count, float64(t.sumNanos)/1e9, buckets)
	ch <- prometheus.MustNewConstMetric(m.truncated, prometheus.CounterValue, float64(t.truncated))
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(t.dropped))
	ch <- prometheus.MustNewConstMetric(m.sendErrors, prometheus.CounterValue, float64(t.sendErrors))
	ch <- prometheus.MustNewConstMetric(m.geo, prometheus.CounterValue, float64(t.geoHit), "cache")
	ch <- prometheus.MustNewConstMetric(m.geo, prometheus.CounterValue, float64(t.geoMiss), "mmdb")
	ch <- prometheus.MustNewConstMetric(m.geo, prometheus.CounterValue, float64(t.geoErr), "error")
}

// totals is the sum of every shard.
type totals struct {
	queries                                                 []QueryCount
	truncated, dropped, sendErrors, geoHit, geoMiss, geoErr uint64
	buckets                                                 [len(latencyBuckets) + 1]uint64
	sumNanos                                                uint64
}

func (m *metrics) total() totals {
	var t totals
	shards := m.shards()
	if len(shards) == 0 {
		return t
	}
	nSite := shards[0].nSite
	for qt := range nQtype {
		for rc := range nRcode {
			for si := range nSite {
				var n uint64
				i := (qt*nRcode+rc)*nSite + si
				for _, c := range shards {
					n += c.queries[i].Load()
				}
				if n == 0 {
					continue
				}
				site := "none"
				if si > 0 {
					site = m.siteNames[si-1]
				}
				t.queries = append(t.queries, QueryCount{Type: qtypeNames[qt], Rcode: rcodeNames[rc], Site: site, Count: n})
			}
		}
	}
	for _, c := range shards {
		t.truncated += c.truncated.Load()
		t.dropped += c.dropped.Load()
		t.sendErrors += c.sendErrors.Load()
		t.geoHit += c.geoHit.Load()
		t.geoMiss += c.geoMiss.Load()
		t.geoErr += c.geoErr.Load()
		for i := range c.buckets {
			t.buckets[i] += c.buckets[i].Load()
		}
		t.sumNanos += c.sumNanos.Load()
	}
	return t
}

// QueryCount is how many queries of one kind were answered.
type QueryCount struct {
	Type  string // A, AAAA, CNAME, NS, SOA, ANY or other
	Rcode string // NOERROR, NXDOMAIN, REFUSED, FORMERR, NOTIMP, BADVERS, SERVFAIL
	Site  string // the site the answer came from; "none" when no edge was chosen
	Count uint64
}

// EdgeStatus is the state of one edge as selection sees it.
type EdgeStatus struct {
	Name, Site  string
	Healthy     bool
	Load        float64
	UnderAttack bool
}

// Stats is a snapshot of the server's counters and edge state, for a
// reporter to send to management. Counters only grow.
type Stats struct {
	Queries        []QueryCount
	Truncated      uint64
	Dropped        uint64
	SendErrors     uint64
	GeoCacheHits   uint64
	GeoLookups     uint64 // mmdb lookups (cache misses)
	GeoErrors      uint64
	AnswerCount    uint64        // answers timed
	AnswerTimeMean time.Duration // mean answer latency since start
	FailOpen       bool
	Edges          []EdgeStatus
}

func meanDuration(sumNanos, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	return time.Duration(math.Round(float64(sumNanos) / float64(n)))
}
