package purgelog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vergecdn/verge/edge"
)

// Purger applies a purge to a node's cache; *edge.Engine is one.
type Purger interface {
	Purge(edge.Purge) (edge.PurgeResult, error)
}

// BatchPurger applies many purges in one pass over the cache; a catch-up
// uses it when the cache has it.
type BatchPurger interface {
	PurgeBatch([]edge.Purge) ([]edge.PurgeResult, error)
}

var (
	_ Purger      = (*edge.Engine)(nil)
	_ BatchPurger = (*edge.Engine)(nil)
)

// ReplicaOptions are a Replica's collaborators and timings.
type ReplicaOptions struct {
	// Name is the node's name in answers to duplicate purges (the engine
	// names itself in the others).
	Name string
	// Peers are where missed purges come from, in order of preference: the
	// node's parent hubs or management. None: the node only records.
	Peers []*Client
	// Auth checks the cluster token on every endpoint; nil refuses all.
	Auth func(*http.Request) bool
	// SetReady is told when the node may serve: false at Run's start, true
	// once it caught up. The engine's SetReady.
	SetReady func(bool)
	// Interval between anti-entropy rounds after the start; 0: none (only
	// at start and on gaps).
	Interval time.Duration
	// Retry is the wait between failed catch-up attempts at start. Default 1s.
	Retry time.Duration
	// StartWait bounds how long the node stays not ready at start when no
	// peer answers; 0 waits until one does.
	StartWait time.Duration
	// GapTimeout bounds the catch-up a purge with a gap waits for before it
	// is applied anyway. Default 5s.
	GapTimeout time.Duration
	// Now and After are the clock. Default time.Now and time.After.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	Log   *slog.Logger
}

// Replica is a node's side of the purge log: it applies purges to the cache
// and records them, catches up on the ones it missed, and serves its log to
// the nodes below it.
type Replica struct {
	log   *Log
	cache Purger
	o     ReplicaOptions
	m     *metrics

	syncing  chan struct{} // a one-slot semaphore: one catch-up at a time, waited for with a context
	applyMu  sync.Mutex    // serializes apply + record, so each number is applied once
	caughtUp atomic.Bool   // a catch-up with a peer has succeeded (or there are no peers)
}

// NewReplica returns the node side of the purge log for l and the node's
// cache. Call Run to catch up and become ready.
func NewReplica(l *Log, cache Purger, o ReplicaOptions) *Replica {
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.GapTimeout <= 0 {
		o.GapTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SetReady == nil {
		o.SetReady = func(bool) {}
	}
	r := &Replica{log: l, cache: cache, o: o, m: newMetrics(), syncing: make(chan struct{}, 1)}
	r.caughtUp.Store(len(o.Peers) == 0)
	return r
}

// Log is the replica's log.
func (r *Replica) Log() *Log { return r.log }

// CaughtUp reports whether a catch-up with a peer has succeeded since the
// node started (always true without peers).
func (r *Replica) CaughtUp() bool { return r.caughtUp.Load() }

// Ready is nil once the node caught up; the log endpoints answer 503 before.
func (r *Replica) Ready() error {
	if !r.caughtUp.Load() {
		return errors.New("catching up on missed purges")
	}
	return nil
}

// Answer is a node's answer to POST /purge: the engine's result, plus what
// the purge log did.
type Answer struct {
	edge.PurgeResult
	// Duplicate: the node had already applied this number; nothing was done.
	Duplicate bool `json:"duplicate,omitempty"`
	// CaughtUp is how many missed purges were applied first (a gap).
	CaughtUp int `json:"caught_up,omitempty"`
	// SyncError says why catching up on a gap failed; the purge itself was
	// applied, and the next round of anti-entropy tries again.
	SyncError string `json:"sync_error,omitempty"`
}

// Purge applies p. A purge without a number is applied and not recorded (a
// local purge). A number already applied is acknowledged as a duplicate. A
// number past Last()+1 (a gap) first catches up with the peers, for at most
// GapTimeout; the purge is applied whatever that gives, since purging more is
// always safe.
func (r *Replica) Purge(ctx context.Context, p edge.Purge) (Answer, error) {
	if err := p.Validate(); err != nil {
		return Answer{}, err
	}
	if p.Seq == 0 {
		res, err := r.cache.Purge(p)
		return Answer{PurgeResult: res}, err
	}
	var ans Answer
	if last := r.log.Last(); p.Seq > last+1 && len(r.o.Peers) > 0 {
		r.m.gaps.Inc()
		gctx, cancel := context.WithTimeout(ctx, r.o.GapTimeout)
		// The peer may already hold p; it is left for the push below to
		// apply, so the answer reports what p matched.
		st, err := r.sync(gctx, p)
		cancel()
		ans.CaughtUp = st.Applied
		if err != nil {
			ans.SyncError = err.Error()
			r.o.Log.Warn("purge log: catching up on a gap failed; applying the purge anyway", "seq", p.Seq, "last", last, "err", err)
		}
	}
	res, dup, err := r.apply(p, "push")
	ans.PurgeResult, ans.Duplicate = res, dup
	if dup {
		ans.Node, ans.Seq = r.o.Name, p.Seq
	}
	return ans, err
}

// apply purges the cache and records p, unless p was already applied.
func (r *Replica) apply(p edge.Purge, source string) (edge.PurgeResult, bool, error) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	if r.log.Has(p) {
		r.m.duplicates.Inc()
		return edge.PurgeResult{}, true, nil
	}
	res, err := r.cache.Purge(p)
	if err != nil {
		return res, false, err
	}
	// Recorded after it is applied: a crash in between applies it again,
	// which is harmless; the other order could lose it.
	if _, err := r.log.Put(p); err != nil {
		return res, false, err
	}
	r.m.applied.WithLabelValues(source).Inc()
	return res, false, nil
}

// applyBatch applies the purges the log does not hold yet, in one pass over
// the cache when it can, then records them in order.
func (r *Replica) applyBatch(ps []edge.Purge, source string) error {
	bp, ok := r.cache.(BatchPurger)
	if !ok || len(ps) < 2 {
		for _, p := range ps {
			if _, _, err := r.apply(p, source); err != nil {
				return err
			}
		}
		return nil
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	todo := ps[:0:0]
	for _, p := range ps {
		if r.log.Has(p) {
			r.m.duplicates.Inc()
			continue
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return nil
	}
	if _, err := bp.PurgeBatch(todo); err != nil {
		return err
	}
	// Recorded after they are applied, as in apply.
	for _, p := range todo {
		if _, err := r.log.Put(p); err != nil {
			return err
		}
		r.m.applied.WithLabelValues(source).Inc()
	}
	return nil
}

// Sync runs one round of anti-entropy: against each peer in turn until one
// answers, it compares trees, fetches the differing ranges and applies what
// this node lacks. It waits (within ctx) for a round already running.
func (r *Replica) Sync(ctx context.Context) (Stats, error) { return r.sync(ctx, edge.Purge{}) }

// sync is Sync, leaving pending (a purge about to be applied) alone.
func (r *Replica) sync(ctx context.Context, pending edge.Purge) (Stats, error) {
	var total Stats
	if len(r.o.Peers) == 0 {
		return total, nil
	}
	select {
	case r.syncing <- struct{}{}:
	case <-ctx.Done():
		return total, fmt.Errorf("purgelog: waiting for the catch-up already running: %w", context.Cause(ctx))
	}
	defer func() { <-r.syncing }()
	start := r.o.Now()
	var errs []error
	for _, peer := range r.o.Peers {
		left := 0
		st, err := peer.Fetch(ctx, r.log, func(ps []edge.Purge) error {
			keep := ps[:0:0]
			for _, p := range ps {
				if p == pending {
					left++
					continue
				}
				keep = append(keep, p)
			}
			return r.applyBatch(keep, "sync")
		})
		st.Applied -= left
		total.add(st)
		if err == nil {
			r.caughtUp.Store(true)
			r.m.syncs.WithLabelValues("ok").Inc()
			r.m.syncDuration.Observe(r.o.Now().Sub(start).Seconds())
			r.m.fetched.Add(float64(st.Fetched))
			if st.Applied > 0 {
				r.o.Log.Info("purge log: caught up", "peer", peer.URL(), "applied", st.Applied,
					"requests", st.Requests, "bytes", st.Bytes, "last", r.log.Last())
			}
			return total, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	r.m.syncs.WithLabelValues("error").Inc()
	return total, errors.Join(errs...)
}

// Run keeps the node's purges up to date until ctx ends. With peers, the
// node is not ready until a catch-up succeeds (or StartWait passed, with an
// error logged); then a round of anti-entropy runs every Interval.
func (r *Replica) Run(ctx context.Context) {
	if len(r.o.Peers) == 0 {
		r.o.SetReady(true)
		return
	}
	r.o.SetReady(false)
	start := r.o.Now()
	for {
		st, err := r.Sync(ctx)
		if err == nil {
			r.o.Log.Info("purge log: ready", "applied", st.Applied, "last", r.log.Last(), "took", r.o.Now().Sub(start))
			break
		}
		if ctx.Err() != nil {
			return
		}
		if r.o.StartWait > 0 && r.o.Now().Sub(start) >= r.o.StartWait {
			r.o.Log.Error("purge log: no peer answered within start_wait; serving without having caught up", "err", err, "waited", r.o.Now().Sub(start))
			break
		}
		r.o.Log.Warn("purge log: catching up failed; not ready", "err", err, "retry", r.o.Retry)
		select {
		case <-ctx.Done():
			return
		case <-r.o.After(r.o.Retry):
		}
	}
	r.o.SetReady(true)
	if r.o.Interval <= 0 {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.o.After(r.o.Interval):
		}
		if _, err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			r.o.Log.Warn("purge log: anti-entropy round failed", "err", err)
		}
	}
}

// maxPurgeBody bounds a purge request body.
const maxPurgeBody = 16 << 10

// Handler serves POST /purge (this node's, replacing the engine's) and the
// log endpoints, which answer 503 until the node caught up.
func (r *Replica) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/purgelog/", Handler(r.log, r.o.Auth, r.Ready))
	mux.HandleFunc("POST /purge", func(w http.ResponseWriter, req *http.Request) {
		if r.o.Auth == nil || !r.o.Auth(req) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="verge"`)
			jsonError(w, http.StatusUnauthorized, "missing or bad cluster token")
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, maxPurgeBody+1))
		if err != nil {
			jsonError(w, http.StatusBadRequest, "reading body: "+err.Error())
			return
		}
		if len(body) > maxPurgeBody {
			jsonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("purge request larger than %d bytes", maxPurgeBody))
			return
		}
		p, err := edge.ParsePurge(body)
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		ans, err := r.Purge(req.Context(), p)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err.Error())
			return
		}
		r.o.Log.Info("purge", "seq", p.Seq, "kind", p.Kind, "value", p.Value, "soft", p.Soft,
			"matched", ans.Matched, "duplicate", ans.Duplicate, "caught_up", ans.CaughtUp)
		writeJSON(w, ans)
	})
	return mux
}

// DecodeAnswer reads a node's answer to POST /purge (an Ack's Body).
func DecodeAnswer(b []byte) (Answer, error) {
	var a Answer
	err := json.Unmarshal(b, &a)
	return a, err
}

func defaultClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:                 nil, // peers are reached directly, whatever the environment says
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
