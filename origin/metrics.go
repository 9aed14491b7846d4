package origin

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// methods are the method labels; anything else is "other".
var methods = [...]string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, "other"}

func methodIndex(m string) int {
	for i, s := range methods[:len(methods)-1] {
		if s == m {
			return i
		}
	}
	return len(methods) - 1
}

// statusClientClosed labels requests whose client went away before an answer
// (nginx's convention).
const statusClientClosed = 499

// metrics are the origin's Prometheus series.
type metrics struct {
	requests      *prometheus.CounterVec
	responseBytes prometheus.Counter
	uploadBytes   prometheus.Counter
	hashes        prometheus.Counter
	hashBytes     prometheus.Counter
	duration      prometheus.Histogram

	// byCode caches requests' children so the hot path does no label lookup.
	byCode [len(methods)][600]atomic.Pointer[prometheus.Counter]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verge_origin_requests_total",
			Help: "Requests answered, by method and status code (499: the client left first).",
		}, []string{"method", "code"}),
		responseBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_origin_response_bytes_total",
			Help: "Response body bytes sent.",
		}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_origin_upload_bytes_total",
			Help: "Body bytes of successful uploads (PUT).",
		}),
		hashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_origin_etag_hashes_total",
			Help: "File versions hashed for an ETag (once per version while it stays in the ETag cache).",
		}),
		hashBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "verge_origin_etag_hash_bytes_total",
			Help: "Bytes read to compute ETags.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "verge_origin_request_duration_seconds",
			Help:    "Time from request to the end of the response, configured delays included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.responseBytes, m.uploadBytes, m.hashes, m.hashBytes, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// request counts one answered request.
func (m *metrics) request(method string, code int, bodyBytes int64, seconds float64) {
	if code < 100 || code > 599 {
		code = 500
	}
	mi := methodIndex(method)
	slot := &m.byCode[mi][code]
	c := slot.Load()
	if c == nil {
		cc := m.requests.WithLabelValues(methods[mi], strconv.Itoa(code))
		slot.Store(&cc)
		c = &cc
	}
	(*c).Inc()
	if bodyBytes > 0 {
		m.responseBytes.Add(float64(bodyBytes))
	}
	m.duration.Observe(seconds)
}

func (m *metrics) hashed(n int64) {
	m.hashes.Inc()
	m.hashBytes.Add(float64(n))
}
