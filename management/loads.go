package management

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/vergecdn/verge/dnsredirect"
)

// EdgeLoad is one edge's load and attack state as GeoDNS takes it
// (GET /api/v1/loads, cluster token).
type EdgeLoad struct {
	Node   string `json:"node"`
	Region string `json:"region"`
	Health string `json:"health"`
	// Load is the edge's requests per second; Known is false when the edge
	// is down or never reported (then Load means nothing).
	Load        float64 `json:"load"`
	Known       bool    `json:"known"`
	UnderAttack bool    `json:"under_attack"`
}

// Loads is the answer to GET /api/v1/loads.
type Loads struct {
	At    time.Time  `json:"at"`
	Edges []EdgeLoad `json:"edges"`
}

// LoadSink takes edges' loads and attack states; dnsredirect's *Server
// satisfies it.
type LoadSink interface {
	SetLoad(edge string, load float64) error
	SetUnderAttack(edge string, on bool) error
}

var _ LoadSink = (*dnsredirect.Server)(nil)

// LoadPuller fetches loads from management for a LoadSink (the GeoDNS
// node's side of GET /api/v1/loads).
type LoadPuller struct {
	URL      string        // management's base URL
	Token    string        // cluster token
	Interval time.Duration // default 5s
	Client   *http.Client  // default: no proxy from the environment
	Log      *slog.Logger
}

// Pull fetches the loads once and hands them to sink: each edge's load
// when known, and its attack state. Edges the sink refuses (ones its
// config does not list) are skipped and logged at debug level; the error is
// about fetching only.
func (p *LoadPuller) Pull(ctx context.Context, sink LoadSink) (Loads, error) {
	c := p.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.URL, "/")+"/api/v1/loads", nil)
	if err != nil {
		return Loads{}, fmt.Errorf("management: loads: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	resp, err := c.Do(req)
	if err != nil {
		return Loads{}, fmt.Errorf("management: loads: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return Loads{}, fmt.Errorf("management: loads: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Loads{}, fmt.Errorf("management: loads: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var l Loads
	if err := json.Unmarshal(body, &l); err != nil {
		return Loads{}, fmt.Errorf("management: loads: %w", err)
	}
	var errs []error
	for _, e := range l.Edges {
		if e.Known {
			if err := sink.SetLoad(e.Node, e.Load); err != nil {
				errs = append(errs, err)
			}
		}
		if err := sink.SetUnderAttack(e.Node, e.UnderAttack); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 && p.Log != nil {
		p.Log.Debug("some edges from management are unknown here", "err", errors.Join(errs...))
	}
	return l, nil
}

// Run pulls every Interval until ctx is done.
func (p *LoadPuller) Run(ctx context.Context, sink LoadSink) {
	every := p.Interval
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := p.Pull(ctx, sink); err != nil && p.Log != nil && ctx.Err() == nil {
			p.Log.Warn("pulling loads from management", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
