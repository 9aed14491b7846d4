// Package alerts evaluates management's alert rules against the fleet and
// delivers each firing and resolution to a webhook.
//
// A rule applies to every node of its roles separately; an alert is one
// (rule, node) pair. Evaluate compares each rule with the fleet as a Source
// reports it and returns the transitions: an alert fires when its
// condition starts to hold and resolves when it stops (or when its node
// leaves the fleet). The clock is injected, so tests step through time.
package alerts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vergecdn/verge/configs"
)

// Kind is what a rule watches.
type Kind string

const (
	// NodeSilent fires when a node has not reported for For.
	NodeSilent Kind = "node_silent"
	// HitRatioBelow fires when hits / (hits + misses) over Window is below
	// Threshold (with at least MinRequests lookups in the window).
	HitRatioBelow Kind = "hit_ratio_below"
	// ErrorRateAbove fires when 5xx responses / requests over Window is
	// above Threshold (with at least MinRequests requests).
	ErrorRateAbove Kind = "error_rate_above"
	// Attack fires while a node reports that it is under attack.
	Attack Kind = "attack"
)

// MaxWindow is the longest window a rule may use (management keeps the
// last hour in memory).
const MaxWindow = time.Hour

// Rule is one alert rule (YAML under alerts.rules).
type Rule struct {
	// Name identifies the rule in alerts and metrics. Required, unique.
	Name string `yaml:"name"`
	// Kind: node_silent, hit_ratio_below, error_rate_above or attack.
	Kind Kind `yaml:"kind"`
	// For is how long a node must be silent (node_silent). Default 30s.
	For configs.Duration `yaml:"for"`
	// Threshold is the ratio, 0..1 (hit_ratio_below, error_rate_above).
	Threshold float64 `yaml:"threshold"`
	// Window is the span the ratio is computed over. Default 5m, at most 1h.
	Window configs.Duration `yaml:"window"`
	// MinRequests is the least traffic in the window for a ratio to count.
	// Default 100.
	MinRequests uint64 `yaml:"min_requests"`
	// Roles limits the rule to nodes of these roles. Default: every role
	// for node_silent and attack, edge and hub for the ratios.
	Roles []string `yaml:"roles"`
	// Severity is copied into the alert. Default "warning".
	Severity string `yaml:"severity"`
}

// SetDefaults fills in the defaults (the config loader calls it for each
// rule in a file).
func (r *Rule) SetDefaults() {
	r.For = configs.Duration(30 * time.Second)
	r.Window = configs.Duration(5 * time.Minute)
	r.MinRequests = 100
	r.Severity = "warning"
}

// DefaultRule returns a rule with the defaults filled in.
func DefaultRule() Rule {
	var r Rule
	r.SetDefaults()
	return r
}

var knownRoles = []string{"edge", "hub", "scrubber", "dns"}

// Validate checks the rules; key is their config path ("alerts.rules").
func Validate(key string, rules []Rule) error {
	var errs []error
	names := map[string]bool{}
	for i, r := range rules {
		k := configs.Index(key, i)
		if r.Name == "" {
			errs = append(errs, configs.Errorf(configs.Key(k, "name"), "required"))
		} else if names[r.Name] {
			errs = append(errs, configs.Errorf(configs.Key(k, "name"), "duplicate rule %q", r.Name))
		}
		names[r.Name] = true
		switch r.Kind {
		case NodeSilent:
			if r.For.D() <= 0 {
				errs = append(errs, configs.Errorf(configs.Key(k, "for"), "must be positive"))
			}
		case HitRatioBelow, ErrorRateAbove:
			if r.Threshold <= 0 || r.Threshold > 1 {
				errs = append(errs, configs.Errorf(configs.Key(k, "threshold"), "must be a ratio in (0, 1], got %v", r.Threshold))
			}
			if r.Window.D() < 10*time.Second || r.Window.D() > MaxWindow {
				errs = append(errs, configs.Errorf(configs.Key(k, "window"), "must be 10s..1h, got %s", r.Window))
			}
		case Attack:
		case "":
			errs = append(errs, configs.Errorf(configs.Key(k, "kind"), "required: node_silent, hit_ratio_below, error_rate_above or attack"))
		default:
			errs = append(errs, configs.Errorf(configs.Key(k, "kind"), "unknown kind %q (want node_silent, hit_ratio_below, error_rate_above or attack)", r.Kind))
		}
		for j, role := range r.Roles {
			if !slices.Contains(knownRoles, role) {
				errs = append(errs, configs.Errorf(configs.Index(configs.Key(k, "roles"), j), "unknown role %q (want edge, hub, scrubber or dns)", role))
			}
		}
		if r.Severity == "" {
			errs = append(errs, configs.Errorf(configs.Key(k, "severity"), "must not be empty"))
		}
	}
	return errors.Join(errs...)
}

func (r *Rule) applies(role string) bool {
	if len(r.Roles) > 0 {
		return slices.Contains(r.Roles, role)
	}
	switch r.Kind {
	case HitRatioBelow, ErrorRateAbove:
		return role == "edge" || role == "hub"
	}
	return true
}

// Node is a node as the rules see it.
type Node struct {
	Name, Role, Region string
	Seen               time.Time // last report, management's clock; zero: never
	UnderAttack        bool
	AttackReason       string
}

// Counts are a node's traffic in a window.
type Counts struct {
	Requests, Hits, Misses, Errors uint64
}

// Source is the fleet the rules read.
type Source interface {
	Nodes() []Node
	// Window sums a node's traffic counted in [from, to).
	Window(node string, from, to time.Time) Counts
}

// States of an alert.
const (
	Firing   = "firing"
	Resolved = "resolved"
)

// Alert is one rule's alert for one node.
type Alert struct {
	ID        string    `json:"id"` // rule/node
	Rule      string    `json:"rule"`
	Kind      Kind      `json:"kind"`
	Severity  string    `json:"severity"`
	Node      string    `json:"node"`
	Role      string    `json:"role"`
	Region    string    `json:"region"`
	State     string    `json:"state"`
	Summary   string    `json:"summary"`
	Value     float64   `json:"value"`     // the measured ratio, or seconds of silence
	Threshold float64   `json:"threshold"` // the rule's threshold (seconds for node_silent)
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at,omitzero"`
}

// Engine holds the rules and the alerts' state.
type Engine struct {
	rules   []Rule
	now     func() time.Time
	started time.Time

	mu      sync.Mutex // guards active and history
	active  map[string]*Alert
	history []Alert // resolved, newest first
}

// historySize bounds the resolved alerts kept for the API.
const historySize = 200

// New returns an engine for validated rules; now is the clock (default
// time.Now). Nodes that never reported count as silent since New.
func New(rules []Rule, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{rules: rules, now: now, started: now(), active: map[string]*Alert{}}
}

// Rules returns the rules.
func (e *Engine) Rules() []Rule { return e.rules }

// Evaluate checks every rule against src and returns the transitions (alerts
// that fired or resolved), in a stable order.
func (e *Engine) Evaluate(src Source) []Alert {
	now := e.now()
	nodes := src.Nodes()
	type result struct {
		hold       bool
		value      float64
		threshold  float64
		summary    string
		rule       *Rule
		node       Node
		measurable bool // the condition could be computed (enough traffic)
	}
	results := map[string]result{}
	for i := range e.rules {
		r := &e.rules[i]
		for _, n := range nodes {
			if !r.applies(n.Role) {
				continue
			}
			id := r.Name + "/" + n.Name
			res := result{rule: r, node: n, measurable: true}
			switch r.Kind {
			case NodeSilent:
				since := n.Seen
				if since.IsZero() {
					since = e.started
				}
				silent := now.Sub(since)
				res.value, res.threshold = silent.Seconds(), r.For.D().Seconds()
				res.hold = silent > r.For.D()
				if n.Seen.IsZero() {
					res.summary = fmt.Sprintf("node %s has never reported (%s since management started)", n.Name, silent.Round(time.Second))
				} else {
					res.summary = fmt.Sprintf("node %s silent for %s (limit %s)", n.Name, silent.Round(time.Second), r.For)
				}
			case HitRatioBelow:
				c := src.Window(n.Name, now.Add(-r.Window.D()), now)
				res.threshold = r.Threshold
				if c.Hits+c.Misses < max(r.MinRequests, 1) {
					res.measurable = false
					break
				}
				res.value = float64(c.Hits) / float64(c.Hits+c.Misses)
				res.hold = res.value < r.Threshold
				res.summary = fmt.Sprintf("hit ratio of %s is %.1f%% over %s (below %.1f%%; %d lookups)", n.Name, 100*res.value, r.Window, 100*r.Threshold, c.Hits+c.Misses)
			case ErrorRateAbove:
				c := src.Window(n.Name, now.Add(-r.Window.D()), now)
				res.threshold = r.Threshold
				if c.Requests < max(r.MinRequests, 1) {
					res.measurable = false
					break
				}
				res.value = float64(c.Errors) / float64(c.Requests)
				res.hold = res.value > r.Threshold
				res.summary = fmt.Sprintf("5xx rate of %s is %.2f%% over %s (above %.2f%%; %d requests)", n.Name, 100*res.value, r.Window, 100*r.Threshold, c.Requests)
			case Attack:
				res.hold = n.UnderAttack
				if n.UnderAttack {
					res.value = 1
				}
				res.summary = fmt.Sprintf("node %s is under attack", n.Name)
				if n.AttackReason != "" {
					res.summary += ": " + n.AttackReason
				}
			}
			results[id] = res
		}
	}

	var changes []Alert
	e.mu.Lock()
	for id, res := range results {
		a, firing := e.active[id]
		switch {
		case res.hold && !firing:
			a = &Alert{ID: id, Rule: res.rule.Name, Kind: res.rule.Kind, Severity: res.rule.Severity, Node: res.node.Name,
				Role: res.node.Role, Region: res.node.Region, State: Firing, Summary: res.summary,
				Value: res.value, Threshold: res.threshold, StartsAt: now}
			e.active[id] = a
			changes = append(changes, *a)
		case res.hold && firing:
			a.Value, a.Summary = res.value, res.summary
		case !res.hold && firing && res.measurable:
			changes = append(changes, e.resolveLocked(a, now, ""))
		case !res.hold && firing:
			changes = append(changes, e.resolveLocked(a, now, "too little traffic left to measure"))
		}
	}
	for id, a := range e.active {
		if _, ok := results[id]; !ok { // the node left the fleet
			changes = append(changes, e.resolveLocked(a, now, "node no longer in the fleet"))
		}
	}
	e.mu.Unlock()
	sort.Slice(changes, func(i, j int) bool {
		if changes[i].State != changes[j].State {
			return changes[i].State == Firing
		}
		return changes[i].ID < changes[j].ID
	})
	return changes
}

func (e *Engine) resolveLocked(a *Alert, now time.Time, why string) Alert {
	delete(e.active, a.ID)
	a.State, a.EndsAt = Resolved, now
	if why != "" {
		a.Summary += " (" + why + ")"
	}
	e.history = append([]Alert{*a}, e.history...)
	if len(e.history) > historySize {
		e.history = e.history[:historySize]
	}
	return *a
}

// Active returns the firing alerts, oldest first.
func (e *Engine) Active() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Alert, 0, len(e.active))
	for _, a := range e.active {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartsAt.Equal(out[j].StartsAt) {
			return out[i].StartsAt.Before(out[j].StartsAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Resolved returns recently resolved alerts, newest first.
func (e *Engine) Resolved() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Alert(nil), e.history...)
}

// Run evaluates every interval until ctx is done, passing each transition
// to notify (outside every lock).
func (e *Engine) Run(ctx context.Context, src Source, every time.Duration, notify func(Alert)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, a := range e.Evaluate(src) {
			if notify != nil {
				notify(a)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
