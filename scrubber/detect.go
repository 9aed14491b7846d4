package scrubber

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AttackState is what the scrubber reports when it enters or leaves
// under-attack mode (the JSON body HTTPReporter posts).
type AttackState struct {
	Node         string    `json:"node"`
	UnderAttack  bool      `json:"under_attack"`
	At           time.Time `json:"at"`    // when this transition happened
	Since        time.Time `json:"since"` // when the attack (this one, or the one that ended) began
	Reason       string    `json:"reason"`
	RequestRate  float64   `json:"request_rate"`  // requests per second over the last window
	LimitedShare float64   `json:"limited_share"` // share of them refused by the limits
	Window       float64   `json:"window_seconds"`
	Sources      int       `json:"tracked_sources"` // per-IP table size
	Policy       string    `json:"policy"`          // limits now in force: normal or attack
}

// AttackReporter receives attack transitions (management's intake, wired
// by the node's command). ReportAttack is called outside every lock, from
// one goroutine, and retried on error.
type AttackReporter interface {
	ReportAttack(ctx context.Context, st AttackState) error
}

// detector decides under-attack mode from per-window counts.
type detector struct {
	cfg      Attack
	requests atomic.Int64 // requests since the window began (hot path)
	limited  atomic.Int64 // refusals since the window began (hot path)

	mu          sync.Mutex // guards the fields below
	windowStart int64      // clock nanos
	under       bool
	since       int64 // when the current (or last) attack began
	calmSince   int64 // start of the run of calm windows; -1 while hot
	last        AttackState

	reports chan AttackState
	backoff time.Duration // between report attempts
	node    string
}

func (d *detector) init(cfg Attack) {
	d.cfg = cfg
	d.calmSince = -1
	d.reports = make(chan AttackState, 16)
	d.backoff = time.Second
	d.node = cfg.Report.Node
	if d.node == "" {
		d.node, _ = os.Hostname()
	}
}

// evaluate closes the current window when it is over and moves in or out of
// under-attack mode. Run calls it every tick; tests call it with their clock.
func (s *Scrubber) evaluate(now int64) {
	d := &s.det
	if !d.cfg.Enabled {
		return
	}
	window := int64(d.cfg.Window.D())
	d.mu.Lock()
	elapsed := now - d.windowStart
	if elapsed < window {
		d.mu.Unlock()
		return
	}
	n, l := d.requests.Swap(0), d.limited.Swap(0)
	d.windowStart = now
	secs := float64(elapsed) / 1e9
	rps := float64(n) / secs
	share := 0.0
	if n > 0 {
		share = float64(l) / float64(n)
	}
	var why string
	switch {
	case d.cfg.RequestRate > 0 && rps >= d.cfg.RequestRate:
		why = fmt.Sprintf("request rate %.0f/s >= %.0f/s over %s", rps, d.cfg.RequestRate, time.Duration(elapsed))
	case d.cfg.LimitedShare > 0 && n >= int64(d.cfg.MinRequests) && share >= d.cfg.LimitedShare:
		why = fmt.Sprintf("%.0f%% of %d requests refused (>= %.0f%%) over %s", share*100, n, d.cfg.LimitedShare*100, time.Duration(elapsed))
	}
	hot := why != ""
	var change *AttackState
	switch {
	case !d.under && hot:
		d.under, d.since, d.calmSince = true, now, -1
		change = &AttackState{UnderAttack: true, Reason: why}
	case d.under && hot:
		d.calmSince = -1
	case d.under:
		if d.calmSince < 0 {
			d.calmSince = now - elapsed
		}
		if calm := time.Duration(now - d.calmSince); calm >= d.cfg.Cooldown.D() {
			d.under = false
			change = &AttackState{Reason: fmt.Sprintf("below every threshold for %s (cooldown %s)", calm, d.cfg.Cooldown.D())}
		}
	}
	if change != nil {
		change.Node = d.node
		change.At = s.epoch.Add(time.Duration(now))
		change.Since = s.epoch.Add(time.Duration(d.since))
		change.RequestRate, change.LimitedShare, change.Window = rps, share, secs
		change.Policy = "normal"
		if change.UnderAttack {
			change.Policy = "attack"
		}
		d.last = *change
	}
	d.mu.Unlock()

	s.m.windowRate.Set(rps)
	s.m.windowShare.Set(share)
	if change == nil {
		return
	}
	if s.perIP != nil {
		change.Sources = s.perIP.Len()
	}
	if change.UnderAttack {
		s.setPolicy(s.attack)
		s.m.underAttack.Set(1)
		s.m.transitions.WithLabelValues("attack").Inc()
		s.log.Warn("scrubber: entering under-attack mode", "reason", change.Reason,
			"request_rate", rps, "limited_share", share, "mode", s.cfg.Attack.Limits.Mode,
			"challenge", s.chal != nil)
	} else {
		s.setPolicy(s.normal)
		s.m.underAttack.Set(0)
		s.m.transitions.WithLabelValues("normal").Inc()
		s.log.Info("scrubber: leaving under-attack mode", "reason", change.Reason,
			"attack_began", change.Since, "request_rate", rps)
	}
	if s.reporter != nil {
		select {
		case d.reports <- *change:
		default:
			s.m.reports.WithLabelValues("dropped").Inc()
			s.log.Warn("scrubber: attack report queue full; report dropped", "under_attack", change.UnderAttack)
		}
	}
}

// AttackState returns the last transition (zero before the first).
func (s *Scrubber) AttackState() AttackState {
	s.det.mu.Lock()
	defer s.det.mu.Unlock()
	return s.det.last
}

// runReports sends queued transitions to the reporter, in order, each with
// up to three attempts.
func (s *Scrubber) runReports(ctx context.Context) {
	d := &s.det
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-d.reports:
			s.sendReport(ctx, st)
		}
	}
}

func (s *Scrubber) sendReport(ctx context.Context, st AttackState) {
	d := &s.det
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(d.backoff << (attempt - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		actx, cancel := context.WithTimeout(ctx, d.cfg.Report.Timeout.D())
		err = s.reporter.ReportAttack(actx, st)
		cancel()
		if err == nil {
			s.m.reports.WithLabelValues("ok").Inc()
			s.log.Info("scrubber: attack state reported", "under_attack", st.UnderAttack)
			return
		}
	}
	s.m.reports.WithLabelValues("error").Inc()
	s.log.Warn("scrubber: attack report failed", "under_attack", st.UnderAttack, "err", err)
}

// HTTPReporter posts each AttackState as JSON to URL with a bearer token.
type HTTPReporter struct {
	URL    string
	Token  string
	Client *http.Client // default: no proxy from the environment
}

var defaultReportClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}

// ReportAttack implements AttackReporter. Any status but 2xx is an error.
func (r *HTTPReporter) ReportAttack(ctx context.Context, st AttackState) error {
	body, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("scrubber: report: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("scrubber: report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.Token)
	c := r.Client
	if c == nil {
		c = defaultReportClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("scrubber: report to %s: %w", r.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("scrubber: report to %s: %s: %s", r.URL, resp.Status, strings.TrimSpace(string(msg)))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}
