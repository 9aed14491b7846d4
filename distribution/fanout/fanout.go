// Package fanout sends one admin request to many nodes at once and collects
// their acknowledgements.
//
// A purge, a preload or a status query goes from management to every edge
// and hub in one parallel round of small requests, each with the cluster
// bearer token. Post returns one Ack per node, in the order of the nodes,
// once every node answered or the context ended; a node that did not answer
// in time still gets an Ack that says so, so the caller always learns the
// fate of every node. PostTiers does the same tier by tier (hubs before
// edges), which is what a purge needs so that an edge never refills an old
// copy from a hub that has not purged yet.
package fanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Node is one node an admin request goes to.
type Node struct {
	Name     string `json:"name"`
	Region   string `json:"region,omitempty"`
	Role     string `json:"role,omitempty"` // "hub", "edge", ...: PostTiers and Tiers order by it
	AdminURL string `json:"admin_url"`      // base URL of the node's admin listener, "http://host:port"
}

// Ack is one node's answer.
type Ack struct {
	Node   string        `json:"node"`
	OK     bool          `json:"ok"` // the node answered 2xx
	Status int           `json:"status,omitempty"`
	Error  string        `json:"error,omitempty"`
	Took   time.Duration `json:"took_ns"` // from the call to this node's answer
	// Body is the node's answer when it is JSON (at most MaxBody bytes).
	Body json.RawMessage `json:"body,omitempty"`
}

// MaxBody bounds the answer read from one node.
const MaxBody = 4 << 20

// DefaultTimeout bounds one node's call when the context has no earlier
// deadline.
const DefaultTimeout = 60 * time.Second

// Client sends admin requests to nodes. It is safe for concurrent use.
type Client struct {
	token string
	hc    *http.Client
	// Timeout bounds each node's call (the context's deadline applies too).
	// New sets DefaultTimeout; 0 means the context alone decides.
	Timeout time.Duration
	// Now is the clock for Took. New sets time.Now.
	Now func() time.Time
}

// New returns a client that sends token as a bearer token. With a nil
// client it uses one that ignores proxy settings, follows no redirects,
// bounds connecting to 2s and keeps connections to every node alive, so a
// fan-out after the first costs one round trip per node.
func New(token string, client *http.Client) *Client {
	if client == nil {
		client = DefaultHTTPClient()
	}
	return &Client{token: token, hc: client, Timeout: DefaultTimeout, Now: time.Now}
}

// DefaultHTTPClient is the client New uses when given none.
func DefaultHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil, // nodes are reached directly, whatever the environment says
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		// A redirect from an admin endpoint is a misconfiguration; never
		// follow it (and never resend the token somewhere else).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Post sends body (JSON) to path on every node in parallel with the bearer
// token, calls progress (if not nil) for each ack as it arrives, and returns
// every ack, in nodes order, once all answered or ctx ended; a node that did
// not answer by then gets an Ack whose Error says so. progress is called from
// the calling goroutine, one ack at a time, exactly once per node, and never
// after Post returns.
func (c *Client) Post(ctx context.Context, nodes []Node, path string, body []byte, progress func(Ack)) []Ack {
	return c.Do(ctx, http.MethodPost, nodes, path, body, progress)
}

// Do is Post with any method; a nil body sends none.
func (c *Client) Do(ctx context.Context, method string, nodes []Node, path string, body []byte, progress func(Ack)) []Ack {
	start := c.now()
	acks := make([]Ack, len(nodes))
	done := make([]bool, len(nodes))
	type result struct {
		i   int
		ack Ack
	}
	results := make(chan result, len(nodes)) // buffered: a late sender never blocks
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the calls still running when ctx ended
	for i, n := range nodes {
		go func() { results <- result{i, c.call(ctx, method, n, path, body, start)} }()
	}
	deliver := func(i int, a Ack) {
		acks[i], done[i] = a, true
		if progress != nil {
			progress(a)
		}
	}
	for pending := len(nodes); pending > 0; pending-- {
		select {
		case r := <-results:
			deliver(r.i, r.ack)
		case <-ctx.Done():
			// Take what already arrived, then give up on the rest.
			for drained := false; !drained; {
				select {
				case r := <-results:
					deliver(r.i, r.ack)
				default:
					drained = true
				}
			}
			took := c.now().Sub(start)
			for i, n := range nodes {
				if !done[i] {
					deliver(i, Ack{Node: n.Name, Error: "no answer: " + context.Cause(ctx).Error(), Took: took})
				}
			}
			return acks
		}
	}
	return acks
}

// PostTiers posts to each tier in turn, each tier in parallel, and returns
// the acks of all tiers in order (tier 0's first). A tier starts when the
// previous one has answered, failures included: purging a node is always
// safe, and a failed node shows in its Ack. Nodes of tiers not reached
// before ctx ended get an Ack saying so. progress is as for Post.
func (c *Client) PostTiers(ctx context.Context, tiers [][]Node, path string, body []byte, progress func(Ack)) []Ack {
	var all []Ack
	for _, tier := range tiers {
		all = append(all, c.Post(ctx, tier, path, body, progress)...)
	}
	return all
}

// Tiers splits nodes for PostTiers: the nodes whose Role is "hub" first,
// then every other node, each group in its original order. Empty groups are
// left out.
func Tiers(nodes []Node) [][]Node {
	var hubs, rest []Node
	for _, n := range nodes {
		if n.Role == "hub" {
			hubs = append(hubs, n)
		} else {
			rest = append(rest, n)
		}
	}
	var out [][]Node
	for _, t := range [][]Node{hubs, rest} {
		if len(t) > 0 {
			out = append(out, t)
		}
	}
	return out
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// call sends one request and turns whatever happens into an Ack.
func (c *Client) call(ctx context.Context, method string, n Node, path string, body []byte, start time.Time) Ack {
	ack := c.send(ctx, method, n, path, body)
	ack.Took = c.now().Sub(start)
	return ack
}

func (c *Client) send(ctx context.Context, method string, n Node, path string, body []byte) Ack {
	ack := Ack{Node: n.Name}
	target, err := join(n.AdminURL, path)
	if err != nil {
		ack.Error = err.Error()
		return ack
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		ack.Error = "fanout: " + err.Error()
		return ack
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		ack.Error = describe(ctx, err)
		return ack
	}
	defer resp.Body.Close()
	ack.Status = resp.StatusCode
	ack.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	switch {
	case err != nil:
		ack.OK = false
		ack.Error = "reading the answer: " + describe(ctx, err)
		return ack
	case len(b) > MaxBody:
		ack.OK = false
		ack.Error = fmt.Sprintf("answer larger than %d bytes", MaxBody)
		return ack
	}
	if json.Valid(b) {
		ack.Body = json.RawMessage(b)
	}
	if !ack.OK {
		ack.Error = errorText(resp, b)
	}
	return ack
}

// describe names a transport error without the Go-specific request prefix.
func describe(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "no answer: " + context.Cause(ctx).Error()
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err // drop the `Post "http://...":` prefix; the Ack names the node
	}
	return err.Error()
}

// errorText is a non-2xx answer's error: its JSON "error" field, else its
// first line of text, else the status.
func errorText(resp *http.Response, b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	if s == "" || !isText(s) {
		return resp.Status
	}
	return resp.Status + ": " + s
}

func isText(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// join appends path to an admin base URL.
func join(base, path string) (string, error) {
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return "", fmt.Errorf("fanout: admin URL %q is not http(s)", base)
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("fanout: path %q does not start with /", path)
	}
	return strings.TrimSuffix(base, "/") + path, nil
}
