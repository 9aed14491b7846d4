package management

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/distribution/purgelog"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management/alerts"
	"github.com/vergecdn/verge/management/store"
)

// PurgeLog numbers purges: Append gives a purge the cluster's next sequence
// number and records it durably before it is fanned out.
// distribution/purgelog's *Log satisfies it.
type PurgeLog interface {
	Append(p edge.Purge) (edge.Purge, error)
}

// Options are management's collaborators; zero values get defaults.
type Options struct {
	Now func() time.Time // default time.Now
	Log *slog.Logger
	// PurgeLog numbers purges, and PurgeLogHandler (if set) serves it
	// under /purgelog/. Default: the purgelog.Log in Config.PurgeLogDir
	// (fsynced) and its handler with the cluster token.
	PurgeLog        PurgeLog
	PurgeLogHandler http.Handler
	// NodeClient calls the nodes' admin APIs. Default: fanout's client.
	NodeClient *http.Client
	// WebhookSleep replaces the wait between webhook attempts (tests).
	WebhookSleep func(ctx context.Context, d time.Duration) error
}

// Server is management: the intake, the fleet view, the usage store, the
// alert rules, the operator API and the dashboard.
type Server struct {
	cfg           Config
	log           *slog.Logger
	now           func() time.Time
	st            *store.Store
	fleet         *fleet
	alerts        *alerts.Engine
	hook          *alerts.Webhook
	fan           *fanout.Client
	purgeLog      PurgeLog
	purgeLogH     http.Handler
	ownLog        *purgelog.Log // opened by New, closed by Close
	operatorToken string
	clusterToken  string
	m             *metrics

	ctx    context.Context // ends on Close: purges and preloads in flight stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // background fan-outs

	purges   *jobs[PurgeStatus]
	preloads *jobs[PreloadStatus]
}

// New opens the database, restores the node cursors and returns a server
// ready to serve. cfg must have been validated.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("management: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	op, err := ReadToken(cfg.OperatorToken, cfg.OperatorTokenFile)
	if err != nil {
		return nil, err
	}
	cl, err := ReadToken(cfg.ClusterToken, cfg.ClusterTokenFile)
	if err != nil {
		return nil, err
	}
	if op == cl {
		return nil, errors.New("management: the operator token must differ from the cluster token")
	}
	var hookToken string
	if cfg.Alerts.Webhook.TokenFile != "" {
		if hookToken, err = ReadToken("", cfg.Alerts.Webhook.TokenFile); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("management: %w", err)
	}
	s := &Server{
		cfg: cfg, log: opts.Log, now: opts.Now, st: st,
		fleet:         newFleet(st, opts.Now, cfg.NodeTimeout.D(), cfg.Nodes),
		alerts:        alerts.New(cfg.Alerts.Rules, opts.Now),
		fan:           fanout.New(cl, opts.NodeClient),
		purgeLog:      opts.PurgeLog,
		purgeLogH:     opts.PurgeLogHandler,
		operatorToken: op,
		clusterToken:  cl,
		purges:        newJobs[PurgeStatus](maxJobs),
		preloads:      newJobs[PreloadStatus](maxJobs),
	}
	s.fan.Now = opts.Now
	s.fan.Timeout = 0 // each fan-out's context carries its deadline
	s.m = newMetrics(s)
	if err := s.fleet.load(context.Background()); err != nil {
		st.Close()
		return nil, err
	}
	if w := cfg.Alerts.Webhook; w.URL != "" {
		s.hook, err = alerts.NewWebhook(alerts.WebhookOptions{
			URL: w.URL, Token: hookToken, Timeout: w.Timeout.D(), MaxAttempts: w.MaxAttempts,
			Backoff: w.Backoff.D(), MaxBackoff: w.MaxBackoff.D(), Now: opts.Now, Sleep: opts.WebhookSleep,
			Log: opts.Log, Result: func(r string) { s.m.webhook.WithLabelValues(r).Inc() },
		})
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("management: %w", err)
		}
	}
	if s.purgeLog == nil {
		l, err := purgelog.Open(cfg.PurgeLogDir, purgelog.Options{Sync: true, Log: opts.Log})
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("management: %w", err)
		}
		s.ownLog, s.purgeLog = l, l
		s.purgeLogH = purgelog.Handler(l, purgelog.BearerAuth(cl), nil)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops fan-outs in flight and closes the database.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	var err error
	if s.ownLog != nil {
		err = s.ownLog.Close()
	}
	return errors.Join(err, s.st.Close())
}

// Healthy reports nil while the database answers.
func (s *Server) Healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.st.Ping(ctx)
}

// Store is the database (for tools and tests).
func (s *Server) Store() *store.Store { return s.st }

// Run runs the background work until ctx is done: alert evaluation and
// delivery, the usage rollup, and forgetting long-silent nodes.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if s.hook != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.hook.Run(ctx) }()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.alerts.Run(ctx, alertSource{s.fleet}, s.cfg.Alerts.EvaluateEvery.D(), s.notify)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.cfg.Usage.RollupEvery.D())
		defer t.Stop()
		for {
			s.Maintain(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	wg.Wait()
}

// EvaluateAlerts runs the rules once and queues the transitions (what Run
// does every alerts.evaluate_every); it returns the transitions.
func (s *Server) EvaluateAlerts() []alerts.Alert {
	ch := s.alerts.Evaluate(alertSource{s.fleet})
	for _, a := range ch {
		s.notify(a)
	}
	return ch
}

func (s *Server) notify(a alerts.Alert) {
	s.log.Warn("alert "+a.State, "alert", a.ID, "summary", a.Summary)
	s.m.transitions.WithLabelValues(a.State).Inc()
	if s.hook != nil {
		s.hook.Enqueue(a)
	}
}

// Maintain rolls up old usage and forgets nodes silent for longer than
// forget_after (what Run does every usage.rollup_every).
func (s *Server) Maintain(ctx context.Context) {
	now := s.now()
	if n, err := s.st.Rollup(ctx, now.Add(-s.cfg.Usage.RollupAfter.D())); err != nil {
		s.log.Error("usage rollup failed", "err", err)
	} else if n > 0 {
		s.log.Info("usage rolled up", "minute_rows", n)
	}
	for _, name := range s.fleet.forget(now.Add(-s.cfg.ForgetAfter.D())) {
		s.log.Info("node forgotten after a long silence", "node", name)
	}
	// A cursor matters only while its instance may still deliver a backlog.
	if _, err := s.st.PruneCursors(ctx, now.Add(-cursorRetention)); err != nil {
		s.log.Error("pruning cursors failed", "err", err)
	}
}

// cursorRetention is how long an instance's cursor outlives its last
// report: far longer than any node keeps undelivered reports.
const cursorRetention = 90 * 24 * time.Hour

// alertSource adapts the fleet to alerts.Source.
type alertSource struct{ f *fleet }

func (a alertSource) Nodes() []alerts.Node {
	ns := a.f.alertNodes()
	out := make([]alerts.Node, len(ns))
	for i, n := range ns {
		out[i] = alerts.Node{Name: n.Name, Role: n.Role, Region: n.Region, Seen: n.Seen}
		if n.Attack != nil && n.Attack.UnderAttack {
			out[i].UnderAttack, out[i].AttackReason = true, n.Attack.Reason
		}
	}
	return out
}

// Window includes the bucket that starts at to (the newest reports).
func (a alertSource) Window(node string, from, to time.Time) alerts.Counts {
	c := a.f.window(node, from, to.Add(time.Nanosecond))
	return alerts.Counts{Requests: c.Requests, Hits: c.Hits, Misses: c.Misses, Errors: c.Errors}
}
