package management

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/edge"
)

// PreloadStatus is a preload and every node's ack (GET /api/v1/preload/{id}).
type PreloadStatus struct {
	ID       uint64        `json:"id"`
	URLs     []string      `json:"urls"`
	Roles    []string      `json:"roles"`
	State    string        `json:"state"` // running, done or failed
	Created  time.Time     `json:"created"`
	Finished time.Time     `json:"finished,omitzero"`
	Timeout  time.Duration `json:"timeout_ns"`
	Progress Progress      `json:"progress"`
	Nodes    []NodeAck     `json:"nodes"`
}

func (p PreloadStatus) clone() PreloadStatus {
	p.Nodes = slices.Clone(p.Nodes)
	return p
}

// maxPreloadRequest bounds the body of POST /api/v1/preload.
const maxPreloadRequest = 8 << 20

// PreloadRequest is the body of POST /api/v1/preload.
type PreloadRequest struct {
	URLs []string `json:"urls"`
	// Roles are the node roles to preload on. Default: preload.roles of
	// the config (edges).
	Roles []string `json:"roles,omitempty"`
}

// ParsePreloadRequest decodes and checks a preload request; the URLs are
// checked as the nodes check them.
func ParsePreloadRequest(body []byte) (PreloadRequest, error) {
	if len(body) > maxPreloadRequest {
		return PreloadRequest{}, fmt.Errorf("preload request larger than %d bytes", maxPreloadRequest)
	}
	var r PreloadRequest
	if err := decodeStrict(body, &r); err != nil {
		return r, fmt.Errorf("bad preload request: %v", err)
	}
	urls, _ := json.Marshal(edge.PreloadRequest{URLs: r.URLs})
	if _, err := edge.ParsePreload(urls); err != nil {
		return r, err
	}
	for _, role := range r.Roles {
		if role != RoleEdge && role != RoleHub {
			return r, fmt.Errorf("bad preload request: unknown role %q (want edge or hub)", role)
		}
	}
	return r, nil
}

// StartPreload sends the URLs to every node of the request's roles, each
// of which fetches them through its cache. It returns at once.
func (s *Server) StartPreload(r PreloadRequest) PreloadStatus {
	roles := r.Roles
	if len(roles) == 0 {
		roles = s.cfg.Preload.Roles
	}
	targets := s.fleet.targets(roles...)
	id := s.preloads.nextID()
	st := PreloadStatus{ID: id, URLs: r.URLs, Roles: roles, State: StateRunning, Created: s.now().UTC(),
		Timeout: s.cfg.Preload.Timeout.D(), Nodes: pendingAcks(targets)}
	st.Progress = progressOf(st.Nodes)
	j := s.preloads.add(id, st)
	body, _ := json.Marshal(edge.PreloadRequest{URLs: r.URLs})
	s.log.Info("preload", "id", id, "urls", len(r.URLs), "nodes", len(targets))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runPreload(j, targets, body)
	}()
	return j.get()
}

func (s *Server) runPreload(j *job[PreloadStatus], targets []target, body []byte) {
	defer close(j.done)
	send := func(ctx context.Context, nodes []fanout.Node, progress func(fanout.Ack)) {
		s.fan.Post(ctx, nodes, "/preload", body, progress)
	}
	runFanout(s, j, targets, "preload", s.cfg.Preload.Timeout.D(), (*PreloadStatus).fields, send, decodePreload)
}

func (p *PreloadStatus) fields() fanoutFields {
	return fanoutFields{&p.State, &p.Finished, &p.Progress, p.Nodes}
}

// decodePreload counts a node's preloaded URLs, bytes and failures.
func decodePreload(n *NodeAck, a fanout.Ack) {
	var res edge.PreloadResponse
	if json.Unmarshal(a.Body, &res) != nil {
		return
	}
	n.URLs = len(res.Results)
	var first string
	for _, r := range res.Results {
		n.Bytes += r.Bytes
		if r.Error != "" || r.Status >= 400 || r.Status == 0 {
			n.FailedURLs++
			if first == "" {
				first = r.URL + ": " + r.Error
				if r.Error == "" {
					first = fmt.Sprintf("%s: status %d", r.URL, r.Status)
				}
			}
		}
	}
	if n.FailedURLs > 0 {
		n.State = AckFailed
		n.Error = fmt.Sprintf("%d of %d URLs failed (first: %s)", n.FailedURLs, n.URLs, first)
	}
}

// Preload returns a preload's status (recent preloads are kept in memory).
func (s *Server) Preload(id uint64) (PreloadStatus, bool) {
	j, ok := s.preloads.get(id)
	if !ok {
		return PreloadStatus{}, false
	}
	return j.get(), true
}

// WaitPreload blocks until preload id has finished or ctx ends.
func (s *Server) WaitPreload(ctx context.Context, id uint64) (PreloadStatus, bool) {
	j, ok := s.preloads.get(id)
	if !ok {
		return PreloadStatus{}, false
	}
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.get(), true
}
