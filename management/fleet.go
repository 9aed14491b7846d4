package management

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vergecdn/verge/management/store"
)

// Health of a node as management sees it.
const (
	HealthUp       = "up"        // reporting, ready
	HealthNotReady = "not_ready" // reporting, but not ready to serve (catching up on purges)
	HealthDown     = "down"      // silent for longer than node_timeout
	HealthUnknown  = "unknown"   // configured, never reported
)

// rateWindow is the window of a node's hit ratio and error rate, ending at
// its last report.
const rateWindow = 5 * time.Minute

// cursor is the last report accepted from one node instance.
type cursor struct {
	Seq   uint64                      `json:"seq"`
	At    time.Time                   `json:"at"`
	Props map[string]PropertyCounters `json:"props"`
}

// node is management's view of one node. The fleet's mu guards it.
type node struct {
	name, role, region, version, adminURL string
	static                                bool // listed in the config
	instance                              string
	started                               time.Time
	seq                                   uint64
	at                                    time.Time // node clock, last report
	seen                                  time.Time // management clock, last report (zero: never)
	ready                                 bool
	tiers                                 []Tier
	attack                                *Attack
	attackAt                              time.Time
	counters                              map[string]uint64
	gauges                                map[string]float64

	instances map[string]*cursor
	series    series
	rps, bps  float64 // over the interval between the last two reports
}

// propTotals are a property's counters summed over the fleet since
// management started (for /metrics).
type propTotals struct {
	PropertyCounters
	latencyOK bool
}

// fleet holds every node's state and the fleet-wide series.
type fleet struct {
	now     func() time.Time
	st      *store.Store
	timeout time.Duration // node_timeout

	ingestMu sync.Mutex // serializes intake: compute, write to the store, apply

	mu         sync.RWMutex // guards everything below
	nodes      map[string]*node
	roleSeries map[string]*series // by role
	propSeries map[string]*series // "role\x00property"
	totals     map[string]*propTotals
	bounds     []float64 // latency bounds of the totals (the first reported)
	gen        uint64    // bumps on every change a reader can see
	reports    map[string]uint64
}

func newFleet(st *store.Store, now func() time.Time, timeout time.Duration, static []NodeConfig) *fleet {
	f := &fleet{now: now, st: st, timeout: timeout, nodes: map[string]*node{},
		roleSeries: map[string]*series{}, propSeries: map[string]*series{}, totals: map[string]*propTotals{},
		reports: map[string]uint64{}}
	for _, n := range static {
		f.nodes[n.Name] = &node{name: n.Name, role: n.Role, region: n.Region, adminURL: n.AdminURL, static: true,
			instances: map[string]*cursor{}}
	}
	return f
}

// load restores the cursors saved by a previous run, so reports continue
// exactly where they left off.
func (f *fleet) load(ctx context.Context) error {
	cs, err := f.st.Cursors(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs { // newest first
		var cur cursor
		if err := json.Unmarshal(c.State, &cur); err != nil {
			return fmt.Errorf("management: cursor of %s/%s: %w", c.Node, c.Instance, err)
		}
		cur.Seq, cur.At = c.Seq, c.At
		n := f.nodes[c.Node]
		if n == nil {
			n = &node{name: c.Node, instances: map[string]*cursor{}}
			f.nodes[c.Node] = n
		}
		n.instances[c.Instance] = &cur
		if n.seen.IsZero() || c.Seen.After(n.seen) {
			n.role, n.region, n.version, n.adminURL = c.Role, c.Region, c.Version, c.AdminURL
			n.instance, n.started, n.seq, n.at, n.seen = c.Instance, c.Started, c.Seq, c.At, c.Seen
			n.ready = true // until its next report says otherwise
		}
	}
	f.gen++
	return nil
}

// countsOf is the usage counters of a property's counters.
func countsOf(p PropertyCounters) store.Counts {
	return store.Counts{Requests: p.Requests.Total(), Hits: p.Requests.Hit + p.Requests.Stale, Misses: p.Requests.Miss,
		Bytes: p.Bytes, UpstreamBytes: p.UpstreamBytes, Errors: p.Status.C5xx}
}

// sub is cur - prev; when any counter went down (the counters were reset
// without a new instance), cur counts from zero.
func sub(cur, prev PropertyCounters) PropertyCounters {
	d := PropertyCounters{Property: cur.Property}
	reset := false
	s := func(a, b uint64) uint64 {
		if a < b {
			reset = true
			return 0
		}
		return a - b
	}
	d.Requests = Results{s(cur.Requests.Hit, prev.Requests.Hit), s(cur.Requests.Stale, prev.Requests.Stale),
		s(cur.Requests.Miss, prev.Requests.Miss), s(cur.Requests.Pass, prev.Requests.Pass), s(cur.Requests.Error, prev.Requests.Error)}
	d.Status = subClasses(cur.Status, prev.Status, s)
	d.UpstreamStatus = subClasses(cur.UpstreamStatus, prev.UpstreamStatus, s)
	d.Bytes = s(cur.Bytes, prev.Bytes)
	d.UpstreamRequests = s(cur.UpstreamRequests, prev.UpstreamRequests)
	d.UpstreamBytes = s(cur.UpstreamBytes, prev.UpstreamBytes)
	d.LatencySumNanos = s(cur.LatencySumNanos, prev.LatencySumNanos)
	if len(cur.Latency) == len(prev.Latency) {
		d.Latency = make([]uint64, len(cur.Latency))
		for i := range cur.Latency {
			d.Latency[i] = s(cur.Latency[i], prev.Latency[i])
		}
	} else {
		d.Latency = append([]uint64(nil), cur.Latency...)
	}
	if reset {
		c := cur
		c.Latency = append([]uint64(nil), cur.Latency...)
		return c
	}
	return d
}

func subClasses(a, b Classes, s func(a, b uint64) uint64) Classes {
	return Classes{s(a.C1xx, b.C1xx), s(a.C2xx, b.C2xx), s(a.C3xx, b.C3xx), s(a.C4xx, b.C4xx), s(a.C5xx, b.C5xx)}
}

func addCounters(dst *PropertyCounters, d PropertyCounters) {
	dst.Requests.Hit += d.Requests.Hit
	dst.Requests.Stale += d.Requests.Stale
	dst.Requests.Miss += d.Requests.Miss
	dst.Requests.Pass += d.Requests.Pass
	dst.Requests.Error += d.Requests.Error
	addClasses(&dst.Status, d.Status)
	addClasses(&dst.UpstreamStatus, d.UpstreamStatus)
	dst.Bytes += d.Bytes
	dst.UpstreamRequests += d.UpstreamRequests
	dst.UpstreamBytes += d.UpstreamBytes
	dst.LatencySumNanos += d.LatencySumNanos
}

func addClasses(a *Classes, b Classes) {
	a.C1xx += b.C1xx
	a.C2xx += b.C2xx
	a.C3xx += b.C3xx
	a.C4xx += b.C4xx
	a.C5xx += b.C5xx
}

// IngestResult says what became of a batch.
type IngestResult struct {
	Accepted  int `json:"accepted"`
	Duplicate int `json:"duplicate"` // already counted (a retry): ignored
}

// applied is one accepted report with its deltas, staged until the store
// has committed them.
type applied struct {
	rep    Report
	prev   *cursor // nil: first report of the instance
	next   *cursor
	deltas []PropertyCounters
	minute time.Time
}

// ingest applies a batch of validated reports: deltas against each
// instance's cursor go to the store with the new cursors in one
// transaction, then to the in-memory view.
func (f *fleet) ingest(ctx context.Context, reps []Report) (IngestResult, error) {
	f.ingestMu.Lock()
	defer f.ingestMu.Unlock()
	now := f.now()
	var res IngestResult
	var staged []applied
	pending := map[string]*cursor{} // node\x00instance -> staged cursor
	f.mu.RLock()
	for _, rep := range reps {
		key := rep.Node + "\x00" + rep.Instance
		prev := pending[key]
		if prev == nil {
			if n := f.nodes[rep.Node]; n != nil {
				prev = n.instances[rep.Instance]
			}
		}
		if prev != nil && rep.Seq <= prev.Seq {
			res.Duplicate++
			continue
		}
		next := &cursor{Seq: rep.Seq, At: rep.At, Props: map[string]PropertyCounters{}}
		if prev != nil {
			for k, v := range prev.Props {
				next.Props[k] = v
			}
		}
		a := applied{rep: rep, prev: prev, next: next}
		at := rep.At
		if at.After(now) {
			at = now // a node clock running ahead: count it now
		}
		a.minute = at.UTC().Truncate(time.Minute)
		for _, p := range rep.Properties {
			d := sub(p, next.Props[p.Property])
			next.Props[p.Property] = p
			a.deltas = append(a.deltas, d)
		}
		pending[key] = next
		staged = append(staged, a)
		res.Accepted++
	}
	f.mu.RUnlock()
	if len(staged) == 0 {
		return res, nil
	}

	var deltas []store.Delta
	cursors := map[string]store.Cursor{}
	var order []string
	for _, a := range staged {
		for _, d := range a.deltas {
			deltas = append(deltas, store.Delta{Minute: a.minute, Property: d.Property, Role: a.rep.Role, Counts: countsOf(d)})
		}
		state, err := json.Marshal(a.next)
		if err != nil {
			return IngestResult{}, fmt.Errorf("management: encoding cursor: %w", err)
		}
		key := a.rep.Node + "\x00" + a.rep.Instance
		if _, ok := cursors[key]; !ok {
			order = append(order, key)
		}
		cursors[key] = store.Cursor{Node: a.rep.Node, Instance: a.rep.Instance, Role: a.rep.Role, Region: a.rep.Region,
			Version: a.rep.Version, AdminURL: a.rep.AdminURL, Started: a.rep.Started, Seq: a.rep.Seq, At: a.rep.At, Seen: now, State: state}
	}
	cs := make([]store.Cursor, 0, len(order))
	for _, k := range order {
		cs = append(cs, cursors[k])
	}
	if err := f.st.Apply(ctx, deltas, cs); err != nil {
		return IngestResult{}, err
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range staged {
		f.applyLocked(a, now)
	}
	f.gen++
	return res, nil
}

func (f *fleet) applyLocked(a applied, now time.Time) {
	rep := a.rep
	n := f.nodes[rep.Node]
	if n == nil {
		n = &node{name: rep.Node, instances: map[string]*cursor{}}
		f.nodes[rep.Node] = n
	}
	n.instances[rep.Instance] = a.next
	f.reports[rep.Role]++
	at := rep.At
	if at.After(now) {
		at = now
	}
	var total store.Counts
	for _, d := range a.deltas {
		c := countsOf(d)
		total.Add(c)
		key := rep.Role + "\x00" + d.Property
		ps := f.propSeries[key]
		if ps == nil {
			ps = &series{}
			f.propSeries[key] = ps
		}
		ps.add(at, c, now)
		t := f.totals[key]
		if t == nil {
			t = &propTotals{PropertyCounters: PropertyCounters{Property: d.Property}}
			f.totals[key] = t
			if f.bounds == nil && len(rep.LatencyBounds) > 0 {
				f.bounds = append([]float64(nil), rep.LatencyBounds...)
			}
			t.latencyOK = slices.Equal(f.bounds, rep.LatencyBounds)
			if t.latencyOK {
				t.Latency = make([]uint64, len(f.bounds)+1)
			}
		}
		addCounters(&t.PropertyCounters, d)
		if t.latencyOK && slices.Equal(f.bounds, rep.LatencyBounds) && len(d.Latency) == len(t.Latency) {
			for i, v := range d.Latency {
				t.Latency[i] += v
			}
		}
	}
	n.series.add(at, total, now)
	rs := f.roleSeries[rep.Role]
	if rs == nil {
		rs = &series{}
		f.roleSeries[rep.Role] = rs
	}
	rs.add(at, total, now)

	// The newest instance's report sets the node's state.
	if rep.Instance != n.instance && !n.started.IsZero() && rep.Started.Before(n.started) {
		return
	}
	if rep.Instance == n.instance && a.prev != nil && rep.At.After(a.prev.At) {
		dt := rep.At.Sub(a.prev.At).Seconds()
		n.rps, n.bps = float64(total.Requests)/dt, float64(total.Bytes)/dt
	} else if rep.Instance != n.instance {
		n.rps, n.bps = 0, 0
	}
	n.role, n.region, n.version, n.adminURL = rep.Role, rep.Region, rep.Version, rep.AdminURL
	n.instance, n.started, n.seq, n.at, n.seen = rep.Instance, rep.Started, rep.Seq, rep.At, now
	n.ready = rep.Ready
	n.tiers = rep.Tiers
	if rep.Attack != nil && !rep.At.Before(n.attackAt) {
		n.attack, n.attackAt = rep.Attack, rep.At
	}
	n.counters, n.gauges = rep.Counters, rep.Gauges
}

// setAttack records an attack transition reported outside the periodic
// reports (a scrubber's POST /api/v1/attacks).
func (f *fleet) setAttack(nodeName string, a Attack, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[nodeName]
	if n == nil {
		n = &node{name: nodeName, role: RoleScrubber, instances: map[string]*cursor{}, seen: f.now(), ready: true}
		f.nodes[nodeName] = n
	}
	if at.Before(n.attackAt) {
		return
	}
	n.attack, n.attackAt = &a, at
	f.gen++
}

// NodeView is a node as the API shows it.
type NodeView struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Region   string `json:"region"`
	Version  string `json:"version"`
	AdminURL string `json:"admin_url,omitempty"`
	Health   string `json:"health"`
	// LastReport is when management received the node's last report (zero:
	// never); LastReportAge is its age in seconds at the time of the answer.
	LastReport    time.Time `json:"last_report,omitzero"`
	LastReportAge *float64  `json:"last_report_age_seconds"`
	Instance      string    `json:"instance,omitempty"`
	Started       time.Time `json:"started,omitzero"`
	Seq           uint64    `json:"seq,omitempty"`
	// RequestsPerSecond and BytesPerSecond are over the interval between
	// the node's last two reports; Load is RequestsPerSecond (what GeoDNS
	// balances on).
	RequestsPerSecond float64 `json:"rps"`
	BytesPerSecond    float64 `json:"bytes_per_second"`
	Load              float64 `json:"load"`
	// HitRatio and ErrorRate are over the 5 minutes up to the last report.
	HitRatio  *float64           `json:"hit_ratio"`
	ErrorRate *float64           `json:"error_rate"`
	Window    store.Counts       `json:"window"` // the counts behind them
	Totals    store.Counts       `json:"totals"` // cumulative, this instance
	Tiers     []Tier             `json:"tiers,omitempty"`
	Attack    *Attack            `json:"attack,omitempty"`
	Counters  map[string]uint64  `json:"counters,omitempty"`
	Gauges    map[string]float64 `json:"gauges,omitempty"`
}

func (f *fleet) health(n *node, now time.Time) string {
	switch {
	case n.seen.IsZero():
		return HealthUnknown
	case now.Sub(n.seen) > f.timeout:
		return HealthDown
	case !n.ready:
		return HealthNotReady
	}
	return HealthUp
}

func (f *fleet) viewLocked(n *node, now time.Time) NodeView {
	v := NodeView{Name: n.name, Role: n.role, Region: n.region, Version: n.version, AdminURL: n.adminURL,
		Health: f.health(n, now), Instance: n.instance, Started: n.started, Seq: n.seq,
		Tiers: n.tiers, Attack: n.attack, Counters: n.counters, Gauges: n.gauges}
	if v.Region == "" {
		v.Region = "default"
	}
	if !n.seen.IsZero() {
		v.LastReport = n.seen.UTC()
		age := max(now.Sub(n.seen).Seconds(), 0)
		v.LastReportAge = &age
		v.RequestsPerSecond, v.BytesPerSecond, v.Load = n.rps, n.bps, n.rps
		end := n.at.Add(time.Nanosecond)
		v.Window = n.series.sum(end.Add(-rateWindow), end)
		v.HitRatio, v.ErrorRate = hitRatio(v.Window), errorRate(v.Window)
	}
	if cur := n.instances[n.instance]; cur != nil {
		for _, p := range cur.Props {
			v.Totals.Add(countsOf(p))
		}
	}
	return v
}

// Overview is the fleet as the dashboard shows it: every node, and totals
// per role.
type Overview struct {
	Generation uint64               `json:"generation"` // changes whenever the data does
	At         time.Time            `json:"at"`
	Nodes      []NodeView           `json:"nodes"`
	Totals     map[string]RoleTotal `json:"totals"` // by role
}

// RoleTotal sums the nodes of one role.
type RoleTotal struct {
	Nodes             int          `json:"nodes"`
	Up                int          `json:"up"`
	RequestsPerSecond float64      `json:"rps"`
	BytesPerSecond    float64      `json:"bytes_per_second"`
	HitRatio          *float64     `json:"hit_ratio"`
	ErrorRate         *float64     `json:"error_rate"`
	Window            store.Counts `json:"window"`
}

func (f *fleet) overview() Overview {
	now := f.now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	o := Overview{Generation: f.gen, At: now.UTC(), Nodes: make([]NodeView, 0, len(f.nodes)), Totals: map[string]RoleTotal{}}
	for _, n := range f.nodes {
		o.Nodes = append(o.Nodes, f.viewLocked(n, now))
	}
	sort.Slice(o.Nodes, func(i, j int) bool {
		a, b := o.Nodes[i], o.Nodes[j]
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		if a.Role != b.Role {
			return roleOrder(a.Role) < roleOrder(b.Role)
		}
		return a.Name < b.Name
	})
	for _, v := range o.Nodes {
		t := o.Totals[v.Role]
		t.Nodes++
		if v.Health == HealthUp {
			t.Up++
		}
		if v.Health != HealthDown && v.Health != HealthUnknown {
			t.RequestsPerSecond += v.RequestsPerSecond
			t.BytesPerSecond += v.BytesPerSecond
		}
		t.Window.Add(v.Window)
		o.Totals[v.Role] = t
	}
	for role, t := range o.Totals {
		t.HitRatio, t.ErrorRate = hitRatio(t.Window), errorRate(t.Window)
		o.Totals[role] = t
	}
	return o
}

func roleOrder(r string) int {
	switch r {
	case RoleEdge:
		return 0
	case RoleHub:
		return 1
	case RoleScrubber:
		return 2
	case RoleDNS:
		return 3
	}
	return 4
}

func (f *fleet) node(name string) (NodeView, bool) {
	now := f.now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.nodes[name]
	if !ok {
		return NodeView{}, false
	}
	return f.viewLocked(n, now), true
}

// targets are the nodes with an admin API of the given roles, sorted.
func (f *fleet) targets(roles ...string) []target {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []target
	for _, n := range f.nodes {
		if n.adminURL != "" && slices.Contains(roles, n.role) {
			out = append(out, target{Name: n.name, Region: n.region, Role: n.role, AdminURL: n.adminURL})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// target is a node a purge or preload goes to.
type target struct{ Name, Region, Role, AdminURL string }

// forget drops nodes silent since before t (not those listed in the
// config); their cursors stay in the store.
func (f *fleet) forget(t time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gone []string
	for name, n := range f.nodes {
		if !n.static && !n.seen.IsZero() && n.seen.Before(t) {
			delete(f.nodes, name)
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		f.gen++
	}
	return gone
}

// SeriesQuery selects a chart.
type SeriesQuery struct {
	Role     string // "" for edges
	Node     string // one node instead of a role
	Property string // one property (of Role)
	Window   time.Duration
	Step     time.Duration
}

func (f *fleet) series(q SeriesQuery) ([]Point, error) {
	now := f.now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	var s *series
	switch {
	case q.Node != "":
		n, ok := f.nodes[q.Node]
		if !ok {
			return nil, errNotFound
		}
		s = &n.series
	case q.Property != "":
		s = f.propSeries[q.Role+"\x00"+q.Property]
	default:
		s = f.roleSeries[q.Role]
	}
	if s == nil {
		s = &series{}
	}
	// Points end at the current step's end, so the newest is partial.
	end := time.Unix(floorDiv(now.Unix(), int64(q.Step/time.Second))*int64(q.Step/time.Second), 0).Add(q.Step)
	n := int(q.Window / q.Step)
	out := make([]Point, 0, n)
	for i := n; i > 0; i-- {
		start := end.Add(-time.Duration(i) * q.Step)
		p := pointOf(start, q.Step, s.sum(start, start.Add(q.Step)))
		p.Partial = start.Add(q.Step).After(now)
		out = append(out, p)
	}
	return out, nil
}

// alertNode is a node as the alert rules see it.
type alertNode struct {
	Name, Role, Region string
	Seen               time.Time // zero: never reported
	Attack             *Attack
}

func (f *fleet) alertNodes() []alertNode {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]alertNode, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, alertNode{Name: n.name, Role: n.role, Region: n.region, Seen: n.seen, Attack: n.attack})
	}
	return out
}

// window sums a node's counts whose time lies in [from, to).
func (f *fleet) window(nodeName string, from, to time.Time) store.Counts {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if n, ok := f.nodes[nodeName]; ok {
		return n.series.sum(from, to)
	}
	return store.Counts{}
}

func (f *fleet) generation() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.gen
}

// loads are the edges' loads and attack states for GeoDNS.
func (f *fleet) loads() []EdgeLoad {
	now := f.now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []EdgeLoad
	for _, n := range f.nodes {
		if n.role != RoleEdge {
			continue
		}
		h := f.health(n, now)
		l := EdgeLoad{Node: n.name, Region: n.region, Health: h, UnderAttack: n.attack != nil && n.attack.UnderAttack}
		if h == HealthUp || h == HealthNotReady {
			l.Load = n.rps
			l.Known = true
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Node, out[j].Node) < 0 })
	return out
}
