package management

import (
	"time"

	"github.com/vergecdn/verge/management/store"
)

// Series resolution: counts are kept in 10-second buckets for the last
// hour (what the charts and the alert windows read).
const (
	seriesStep  = 10 * time.Second
	seriesSlots = 360
	// SeriesSpan is how far back the in-memory series reach.
	SeriesSpan = seriesStep * seriesSlots
)

// series is a ring of 10-second buckets. Not safe for concurrent use (the
// fleet's lock guards it).
type series struct {
	slots [seriesSlots]slot
}

type slot struct {
	id int64 // bucket number (unix seconds / 10); 0 = unused
	c  store.Counts
}

func bucketOf(t time.Time) int64 { return floorDiv(t.Unix(), int64(seriesStep/time.Second)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// add counts c in the bucket holding at; too old for the ring, it is
// dropped (usage keeps it; the series only feed the charts and alerts).
func (s *series) add(at time.Time, c store.Counts, now time.Time) {
	b := bucketOf(at)
	if b <= bucketOf(now)-seriesSlots {
		return
	}
	sl := &s.slots[mod(b, seriesSlots)]
	if sl.id != b {
		*sl = slot{id: b}
	}
	sl.c.Add(c)
}

// sum adds the buckets whose start lies in [from, to).
func (s *series) sum(from, to time.Time) store.Counts {
	var out store.Counts
	lo, hi := ceilBucket(from), ceilBucket(to)
	if hi-lo > seriesSlots {
		lo = hi - seriesSlots
	}
	for b := lo; b < hi; b++ {
		if sl := &s.slots[mod(b, seriesSlots)]; sl.id == b {
			out.Add(sl.c)
		}
	}
	return out
}

// ceilBucket is the first bucket starting at or after t.
func ceilBucket(t time.Time) int64 {
	step := int64(seriesStep / time.Second)
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return floorDiv(u+step-1, step)
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Point is one step of a chart.
type Point struct {
	Start time.Time `json:"t"`
	store.Counts
	RequestsPerSecond float64  `json:"rps"`
	BytesPerSecond    float64  `json:"bytes_per_second"`
	HitRatio          *float64 `json:"hit_ratio"` // hits / (hits + misses); null without cacheable requests
	ErrorRate         *float64 `json:"error_rate"`
	// Partial marks the newest step, which has not ended yet: its counts
	// are still coming in (charts usually leave it out).
	Partial bool `json:"partial,omitempty"`
}

func pointOf(start time.Time, step time.Duration, c store.Counts) Point {
	sec := step.Seconds()
	return Point{Start: start.UTC(), Counts: c, RequestsPerSecond: float64(c.Requests) / sec,
		BytesPerSecond: float64(c.Bytes) / sec, HitRatio: hitRatio(c), ErrorRate: errorRate(c)}
}

// hitRatio is hits over cacheable lookups (hits + misses); passes and
// errors are not lookups. nil when there were none.
func hitRatio(c store.Counts) *float64 {
	if c.Hits+c.Misses == 0 {
		return nil
	}
	r := float64(c.Hits) / float64(c.Hits+c.Misses)
	return &r
}

// errorRate is 5xx responses over requests; nil without requests.
func errorRate(c store.Counts) *float64 {
	if c.Requests == 0 {
		return nil
	}
	r := float64(c.Errors) / float64(c.Requests)
	return &r
}
