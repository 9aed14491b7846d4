package management

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management/store"
)

// States of a purge or preload, and of each node's part in it.
const (
	StateRunning = "running" // acks outstanding
	StateDone    = "done"    // every node acknowledged
	StateFailed  = "failed"  // finished, some node did not acknowledge (or failed)
	AckPending   = "pending"
	AckOK        = "ok"
	AckFailed    = "failed"
)

// NodeAck is one node's part in a purge or preload.
type NodeAck struct {
	Node   string        `json:"node"`
	Region string        `json:"region"`
	Role   string        `json:"role"`
	State  string        `json:"state"` // pending, ok or failed
	Status int           `json:"status,omitempty"`
	Error  string        `json:"error,omitempty"`
	Took   time.Duration `json:"took_ns"`
	At     time.Time     `json:"at,omitzero"` // when the answer arrived
	// Matched is how many objects the purge deleted or marked stale.
	Matched *int `json:"matched,omitempty"`
	// URLs and FailedURLs count a preload's URLs on this node; Bytes is
	// what it fetched.
	URLs       int   `json:"urls,omitempty"`
	FailedURLs int   `json:"failed_urls,omitempty"`
	Bytes      int64 `json:"bytes,omitempty"`
}

// Progress counts a fan-out's acks.
type Progress struct {
	Nodes   int `json:"nodes"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
}

func progressOf(acks []NodeAck) Progress {
	p := Progress{Nodes: len(acks)}
	for _, a := range acks {
		switch a.State {
		case AckOK:
			p.OK++
		case AckFailed:
			p.Failed++
		default:
			p.Pending++
		}
	}
	return p
}

// PurgeStatus is a purge and every node's ack (GET /api/v1/purge/{id}).
type PurgeStatus struct {
	ID       uint64         `json:"id"` // its sequence number in the purge log
	Kind     edge.PurgeKind `json:"kind"`
	Value    string         `json:"value,omitempty"`
	Soft     bool           `json:"soft"`
	State    string         `json:"state"` // running, done or failed
	Created  time.Time      `json:"created"`
	Finished time.Time      `json:"finished,omitzero"`
	Timeout  time.Duration  `json:"timeout_ns"`
	Progress Progress       `json:"progress"`
	Nodes    []NodeAck      `json:"nodes"`
}

func (p PurgeStatus) clone() PurgeStatus {
	p.Nodes = slices.Clone(p.Nodes)
	return p
}

// maxPurgeRequest bounds the body of POST /api/v1/purge.
const maxPurgeRequest = 16 << 10

// purgeRequest is the body of POST /api/v1/purge.
type purgeRequest struct {
	Kind  edge.PurgeKind `json:"kind"`
	Value string         `json:"value,omitempty"`
	Soft  bool           `json:"soft,omitempty"`
}

// ParsePurgeRequest decodes and checks an operator's purge request:
// {"kind": "url"|"prefix"|"tag"|"host"|"all", "value": "...", "soft": bool}.
// The sequence number is management's to assign, so "seq" is refused.
func ParsePurgeRequest(body []byte) (edge.Purge, error) {
	if len(body) > maxPurgeRequest {
		return edge.Purge{}, fmt.Errorf("purge request larger than %d bytes", maxPurgeRequest)
	}
	var r purgeRequest
	if err := decodeStrict(body, &r); err != nil {
		return edge.Purge{}, fmt.Errorf("bad purge request: %v", err)
	}
	p := edge.Purge{Kind: r.Kind, Value: r.Value, Soft: r.Soft}
	if err := p.Validate(); err != nil {
		return edge.Purge{}, err
	}
	return p, nil
}

// decodeStrict decodes one JSON object, refusing unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// job is a purge or preload in progress or done.
type job[T interface{ clone() T }] struct {
	mu   sync.Mutex // guards v
	v    T
	done chan struct{}
}

func (j *job[T]) get() T {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.v.clone()
}

func (j *job[T]) update(f func(*T)) {
	j.mu.Lock()
	f(&j.v)
	j.mu.Unlock()
}

// maxJobs is how many purges and preloads are kept in memory.
const maxJobs = 1000

// jobs keeps the most recent jobs by id.
type jobs[T interface{ clone() T }] struct {
	mu    sync.Mutex // guards byID, order, next
	byID  map[uint64]*job[T]
	order []uint64
	max   int
	next  uint64
}

func newJobs[T interface{ clone() T }](max int) *jobs[T] {
	return &jobs[T]{byID: map[uint64]*job[T]{}, max: max}
}

func (js *jobs[T]) add(id uint64, v T) *job[T] {
	js.mu.Lock()
	defer js.mu.Unlock()
	j := &job[T]{v: v, done: make(chan struct{})}
	js.byID[id] = j
	js.order = append(js.order, id)
	if len(js.order) > js.max {
		delete(js.byID, js.order[0])
		js.order = js.order[1:]
	}
	return j
}

func (js *jobs[T]) nextID() uint64 {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.next++
	return js.next
}

func (js *jobs[T]) get(id uint64) (*job[T], bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	return j, ok
}

// recent returns the newest n jobs, newest first.
func (js *jobs[T]) recent(n int) []T {
	js.mu.Lock()
	ids := slices.Clone(js.order)
	js.mu.Unlock()
	var out []T
	for i := len(ids) - 1; i >= 0 && len(out) < n; i-- {
		if j, ok := js.get(ids[i]); ok {
			out = append(out, j.get())
		}
	}
	return out
}

func fanoutNodes(ts []target) []fanout.Node {
	out := make([]fanout.Node, len(ts))
	for i, t := range ts {
		out[i] = fanout.Node{Name: t.Name, Region: t.Region, Role: t.Role, AdminURL: t.AdminURL}
	}
	return out
}

func pendingAcks(ts []target) []NodeAck {
	out := make([]NodeAck, len(ts))
	for i, t := range ts {
		out[i] = NodeAck{Node: t.Name, Region: t.Region, Role: t.Role, State: AckPending}
	}
	return out
}

// ackFrom fills a NodeAck from a fanout ack.
func ackFrom(a *NodeAck, f fanout.Ack, at time.Time) {
	a.Status, a.Error, a.Took, a.At = f.Status, f.Error, f.Took, at
	if f.OK {
		a.State = AckOK
	} else {
		a.State = AckFailed
		if a.Error == "" {
			a.Error = fmt.Sprintf("answered %d", f.Status)
		}
	}
}

// StartPurge numbers p in the purge log and sends it to every hub and edge
// (hubs first, so an edge never refills from a hub that still holds the old
// copy). It returns at once; the status fills in as nodes answer.
func (s *Server) StartPurge(p edge.Purge) (PurgeStatus, error) {
	if err := p.Validate(); err != nil {
		return PurgeStatus{}, err
	}
	p.Seq = 0
	now := s.now()
	ctx := s.ctx
	numbered, err := s.purgeLog.Append(p)
	if err != nil {
		s.m.purges.WithLabelValues("error").Inc()
		return PurgeStatus{}, fmt.Errorf("management: purge log: %w", err)
	}
	p = numbered
	if err := s.st.RecordPurge(ctx, p.Seq, string(p.Kind), p.Value, p.Soft, now); err != nil {
		s.log.Error("recording purge", "seq", p.Seq, "err", err)
	}
	targets := s.fleet.targets(s.cfg.Purge.Roles...)
	st := PurgeStatus{ID: p.Seq, Kind: p.Kind, Value: p.Value, Soft: p.Soft, State: StateRunning, Created: now.UTC(),
		Timeout: s.cfg.Purge.Timeout.D(), Nodes: pendingAcks(targets)}
	st.Progress = progressOf(st.Nodes)
	j := s.purges.add(p.Seq, st)
	body, _ := json.Marshal(p)
	s.log.Info("purge", "seq", p.Seq, "kind", p.Kind, "value", p.Value, "soft", p.Soft, "nodes", len(targets))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runPurge(j, targets, body)
	}()
	return j.get(), nil
}

func (s *Server) runPurge(j *job[PurgeStatus], targets []target, body []byte) {
	defer close(j.done)
	send := func(ctx context.Context, nodes []fanout.Node, progress func(fanout.Ack)) {
		s.fan.PostTiers(ctx, fanout.Tiers(nodes), "/purge", body, progress)
	}
	decode := func(n *NodeAck, a fanout.Ack) {
		var res edge.PurgeResult
		if json.Unmarshal(a.Body, &res) == nil {
			m := res.Matched
			n.Matched = &m
		}
	}
	final := runFanout(s, j, targets, "purge", s.cfg.Purge.Timeout.D(), (*PurgeStatus).fields, send, decode)
	now := final.Finished
	s.m.purges.WithLabelValues(final.State).Inc()
	acks, _ := json.Marshal(final.Nodes)
	if err := s.st.FinishPurge(context.WithoutCancel(s.ctx), final.ID, now, acks); err != nil {
		s.log.Error("saving purge acks", "seq", final.ID, "err", err)
	}
	s.log.Info("purge finished", "seq", final.ID, "state", final.State, "ok", final.Progress.OK, "failed", final.Progress.Failed)
}

// fanoutFields are the parts of a purge's or preload's status that its
// fan-out updates.
type fanoutFields struct {
	state    *string
	finished *time.Time
	progress *Progress
	nodes    []NodeAck
}

func (p *PurgeStatus) fields() fanoutFields {
	return fanoutFields{&p.State, &p.Finished, &p.Progress, p.Nodes}
}

// runFanout sends a job's request to its target nodes with send, records
// each node's ack as it arrives (decode adds what an ok answer of this kind
// holds), and finishes the job: a node that did not answer in time failed.
// It returns the final status.
func runFanout[T interface{ clone() T }](s *Server, j *job[T], targets []target, kind string, timeout time.Duration,
	fields func(*T) fanoutFields, send func(context.Context, []fanout.Node, func(fanout.Ack)), decode func(*NodeAck, fanout.Ack)) T {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	index := map[string]int{}
	for i, t := range targets {
		index[t.Name] = i
	}
	progress := func(a fanout.Ack) {
		now := s.now()
		j.update(func(st *T) {
			f := fields(st)
			i, ok := index[a.Node]
			if !ok {
				return
			}
			n := &f.nodes[i]
			ackFrom(n, a, now.UTC())
			if a.OK {
				decode(n, a)
			}
			*f.progress = progressOf(f.nodes)
		})
		s.m.acks.WithLabelValues(kind, ackResult(a.OK)).Inc()
	}
	if nodes := fanoutNodes(targets); len(nodes) > 0 {
		send(ctx, nodes, progress)
	}
	now := s.now()
	var final T
	j.update(func(st *T) {
		f := fields(st)
		for i := range f.nodes {
			if f.nodes[i].State == AckPending {
				f.nodes[i].State, f.nodes[i].Error = AckFailed, "no answer before the "+kind+" timed out"
			}
		}
		*f.progress = progressOf(f.nodes)
		*f.finished = now.UTC()
		*f.state = StateDone
		if f.progress.Failed > 0 {
			*f.state = StateFailed
		}
		final = (*st).clone()
	})
	return final
}

func ackResult(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// Purge returns a purge's status: from memory while recent, else from the
// database.
func (s *Server) Purge(ctx context.Context, id uint64) (PurgeStatus, error) {
	if j, ok := s.purges.get(id); ok {
		return j.get(), nil
	}
	rec, err := s.st.Purge(ctx, id)
	if err != nil {
		return PurgeStatus{}, err
	}
	return purgeFromRecord(rec), nil
}

func purgeFromRecord(rec store.PurgeRecord) PurgeStatus {
	st := PurgeStatus{ID: rec.Seq, Kind: edge.PurgeKind(rec.Kind), Value: rec.Value, Soft: rec.Soft,
		Created: rec.Created.UTC(), Nodes: []NodeAck{}}
	if len(rec.Acks) > 0 {
		json.Unmarshal(rec.Acks, &st.Nodes)
	}
	st.Progress = progressOf(st.Nodes)
	switch {
	case rec.Finished.IsZero():
		// Management stopped before the acks came in.
		st.State = StateFailed
	case st.Progress.Failed > 0:
		st.State, st.Finished = StateFailed, rec.Finished.UTC()
	default:
		st.State, st.Finished = StateDone, rec.Finished.UTC()
	}
	return st
}

// WaitPurge blocks until purge id has finished or ctx ends (tests, and the
// API's ?wait=).
func (s *Server) WaitPurge(ctx context.Context, id uint64) (PurgeStatus, error) {
	j, ok := s.purges.get(id)
	if !ok {
		return s.Purge(ctx, id)
	}
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.get(), nil
}

// RecentPurges returns the newest purges, newest first.
func (s *Server) RecentPurges(ctx context.Context, n int) ([]PurgeStatus, error) {
	recs, err := s.st.LastPurges(ctx, n)
	if err != nil {
		return nil, err
	}
	out := make([]PurgeStatus, 0, len(recs))
	for _, r := range recs {
		if j, ok := s.purges.get(r.Seq); ok {
			out = append(out, j.get())
		} else {
			out = append(out, purgeFromRecord(r))
		}
	}
	return out, nil
}
