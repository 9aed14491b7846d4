package management

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReporterConfig says where and how often a node reports.
type ReporterConfig struct {
	// URL is management's base URL (http://host:port); reports go to
	// URL + "/api/v1/reports". Required.
	URL string
	// Token is the cluster token management's intake checks. Required.
	Token string

	// Identity of the node, copied into every report. Node and Role are
	// required.
	Node, Role, Region, Version, AdminURL string

	// Interval between snapshots. Default 5s.
	Interval time.Duration
	// Timeout bounds one POST. Default 5s.
	Timeout time.Duration
	// MaxBacklog is how many undelivered snapshots are kept while
	// management is unreachable; snapshots taken in the same minute
	// replace each other, so the default 1440 keeps 24 hours at minute
	// resolution. Older snapshots are dropped: their counts stay in the
	// newer ones (counters are cumulative) and are attributed later.
	MaxBacklog int

	Client *http.Client     // default: no proxy from the environment
	Now    func() time.Time // default time.Now
	Log    *slog.Logger
}

// maxBatchBytes bounds the body of one POST (below MaxReportBody).
const maxBatchBytes = 4 << 20

// Reporter is the node side of the intake: it snapshots the node's counters
// every Interval and delivers them, oldest first. When management cannot be
// reached the snapshots wait in a bounded backlog; since every counter is
// cumulative, whatever is delivered later carries everything counted
// meanwhile, and management's totals still equal the node's own.
type Reporter struct {
	cfg      ReporterConfig
	endpoint string
	snapshot func() Report
	instance string
	started  time.Time
	m        reporterMetrics

	mu      sync.Mutex // guards backlog and seq
	backlog []Report   // oldest first, strictly increasing Seq
	seq     uint64

	sendMu sync.Mutex // one delivery at a time
}

// NewReporter returns a reporter that calls snapshot for the node's current
// counters (Properties, Tiers, Attack, Counters, Gauges, Ready); the
// reporter fills in the identity, Seq and At.
func NewReporter(cfg ReporterConfig, snapshot func() Report) (*Reporter, error) {
	if cfg.URL == "" {
		return nil, errors.New("management: reporter: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("management: reporter: URL must be an absolute http(s) URL, got %q", cfg.URL)
	}
	if cfg.Token == "" {
		return nil, errors.New("management: reporter: a cluster token is required")
	}
	if snapshot == nil {
		return nil, errors.New("management: reporter: snapshot func is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 1440
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	rand.Read(b[:])
	r := &Reporter{
		cfg:      cfg,
		endpoint: strings.TrimSuffix(cfg.URL, "/") + "/api/v1/reports",
		snapshot: snapshot,
		instance: hex.EncodeToString(b[:]),
		started:  cfg.Now(),
		m:        newReporterMetrics(),
	}
	probe := r.stamp(Report{}, r.started)
	probe.Seq = 1
	if err := probe.Validate(); err != nil {
		return nil, fmt.Errorf("management: reporter: %w", err)
	}
	return r, nil
}

// Instance is this process's instance id.
func (r *Reporter) Instance() string { return r.instance }

// Register adds the reporter's metrics to reg.
func (r *Reporter) Register(reg prometheus.Registerer) error { return r.m.register(reg) }

func (r *Reporter) stamp(rep Report, at time.Time) Report {
	rep.Node, rep.Role, rep.Region, rep.Version, rep.AdminURL = r.cfg.Node, r.cfg.Role, r.cfg.Region, r.cfg.Version, r.cfg.AdminURL
	rep.Instance, rep.Started, rep.At = r.instance, r.started, at
	return rep
}

// Collect takes a snapshot into the backlog. A snapshot taken in the same
// minute as the newest waiting one replaces it; past MaxBacklog the oldest
// is dropped.
func (r *Reporter) Collect() {
	rep := r.snapshot()
	now := r.cfg.Now()
	if now.Before(r.started) {
		now = r.started
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	rep = r.stamp(rep, now)
	rep.Seq = r.seq
	if n := len(r.backlog); n > 0 && r.backlog[n-1].At.Truncate(time.Minute).Equal(now.Truncate(time.Minute)) {
		// Same minute: the newer snapshot carries the older one's counts
		// (an older one in flight is removed by Seq when it lands).
		r.backlog[n-1] = rep
	} else {
		r.backlog = append(r.backlog, rep)
	}
	if len(r.backlog) > r.cfg.MaxBacklog {
		drop := len(r.backlog) - r.cfg.MaxBacklog
		r.backlog = append(r.backlog[:0], r.backlog[drop:]...)
		r.m.dropped.Add(float64(drop))
	}
	r.m.backlog.Set(float64(len(r.backlog)))
}

// Backlog is the number of snapshots waiting for delivery.
func (r *Reporter) Backlog() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.backlog)
}

// errRejected is a batch management refused as malformed: it is dropped
// (the next snapshot carries its counts).
var errRejected = errors.New("rejected")

// Deliver posts the backlog, oldest first, in batches. It returns nil when
// the backlog is empty, or the first delivery error (the rest waits).
func (r *Reporter) Deliver(ctx context.Context) error {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	for {
		batch, last := r.nextBatch()
		if batch == nil {
			return nil
		}
		err := r.post(ctx, batch)
		if err != nil && !errors.Is(err, errRejected) {
			r.m.posts.WithLabelValues("error").Inc()
			return err
		}
		if err != nil {
			r.m.posts.WithLabelValues("rejected").Inc()
			r.cfg.Log.Error("management: report rejected; dropping it (the next one carries its counts)", "err", err)
		} else {
			r.m.posts.WithLabelValues("ok").Inc()
		}
		r.mu.Lock()
		i := 0
		for i < len(r.backlog) && r.backlog[i].Seq <= last {
			i++
		}
		r.backlog = append(r.backlog[:0], r.backlog[i:]...)
		r.m.backlog.Set(float64(len(r.backlog)))
		r.mu.Unlock()
	}
}

// nextBatch encodes the oldest waiting snapshots, up to maxBatchBytes and
// MaxBatch reports, and returns the body and the last Seq in it.
func (r *Reporter) nextBatch() ([]byte, uint64) {
	r.mu.Lock()
	pending := append([]Report(nil), r.backlog...)
	r.mu.Unlock()
	if len(pending) == 0 {
		return nil, 0
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	var last uint64
	for i, rep := range pending {
		b, err := json.Marshal(rep)
		if err != nil {
			// Unreachable for a validated report shape; drop it rather than block.
			r.cfg.Log.Error("management: encoding report", "err", err)
			last = rep.Seq
			continue
		}
		if i > 0 && (buf.Len()+len(b)+2 > maxBatchBytes || i >= MaxBatch) {
			break
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.Write(b)
		last = rep.Seq
	}
	buf.WriteByte(']')
	return buf.Bytes(), last
}

func (r *Reporter) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("management: report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("management: report to %s: %w", r.endpoint, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("management: report to %s: %s: %s: %w", r.endpoint, resp.Status, strings.TrimSpace(string(msg)), errRejected)
	default:
		return fmt.Errorf("management: report to %s: %s: %s", r.endpoint, resp.Status, strings.TrimSpace(string(msg)))
	}
}

// Run collects and delivers every Interval until ctx is done, then makes
// one last collection and delivery (bounded by Timeout) so a node that
// stops cleanly reports everything it counted.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		r.Collect()
		err := r.Deliver(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			r.cfg.Log.Warn("management unreachable; keeping reports for later", "err", err, "backlog", r.Backlog())
			failing = true
		case err == nil && failing:
			r.cfg.Log.Info("management reachable again; backlog delivered")
			failing = false
		}
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
			r.Collect()
			if err := r.Deliver(final); err != nil {
				r.cfg.Log.Warn("management: last report not delivered", "err", err, "backlog", r.Backlog())
			}
			cancel()
			return
		case <-t.C:
		}
	}
}
