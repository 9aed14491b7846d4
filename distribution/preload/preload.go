// Package preload pushes a list of URLs down the cache tree before anyone
// asks for them.
//
// Push sends the list, in chunks, to each edge's admin POST /preload through
// fanout. An edge fetches each URL through its own cache as a client GET
// would, so the miss goes to the URL's home hub on the region's ring, where
// concurrent misses collapse into one fill: the origin sees each URL once per
// region, not once per edge, and the hub keeps a copy too. Hubs are left out
// by default, because a hub's upstream is the origin: preloading every hub
// would cost the origin one fetch per hub instead of one per region.
//
// Progress is reported per node and per URL as each chunk is answered.
package preload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/edge"
)

// DefaultChunk is how many URLs go to a node in one request.
const DefaultChunk = 100

// MaxURLs bounds one push.
const MaxURLs = 100000

// Options tune a push.
type Options struct {
	// Chunk is the number of URLs per request to one node (1..10000).
	// Default DefaultChunk. Smaller chunks report progress more often.
	Chunk int
	// IncludeHubs sends the list to nodes with Role "hub" too. Default
	// false (unless every node is a hub).
	IncludeHubs bool
	// Progress, when not nil, is called for each URL on each node as its
	// chunk is answered, one call at a time.
	Progress func(Progress)
}

// Progress is one URL done on one node.
type Progress struct {
	Node   string             `json:"node"`
	Result edge.PreloadResult `json:"result"`
	Done   int                `json:"done"`  // URLs this node has finished
	Total  int                `json:"total"` // URLs this node was sent
}

// NodeReport is one node's outcome.
type NodeReport struct {
	Node    string               `json:"node"`
	OK      int                  `json:"ok"`     // URLs stored or served with a 2xx
	Failed  int                  `json:"failed"` // URLs with an error or another status
	Results []edge.PreloadResult `json:"results"`
	Took    time.Duration        `json:"took_ns"`
}

// Report is a push's outcome: a NodeReport per target node, in nodes order.
type Report struct {
	Nodes []NodeReport  `json:"nodes"`
	Took  time.Duration `json:"took_ns"`
}

// OK counts the URLs preloaded on every node.
func (r Report) OK() (ok, failed int) {
	for _, n := range r.Nodes {
		ok += n.OK
		failed += n.Failed
	}
	return ok, failed
}

// Targets returns the nodes a push goes to: every node that is not a hub,
// or every node when includeHubs is set or all of them are hubs.
func Targets(nodes []fanout.Node, includeHubs bool) []fanout.Node {
	if includeHubs {
		return nodes
	}
	var out []fanout.Node
	for _, n := range nodes {
		if n.Role != "hub" {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nodes
	}
	return out
}

// Push preloads urls on the target nodes (see Targets): nodes in parallel,
// each node's chunks one after another. It returns an error, sending
// nothing, when the list is empty, too long, or holds a URL a node would
// refuse; failures on nodes are in the Report.
func Push(ctx context.Context, c *fanout.Client, nodes []fanout.Node, urls []string, o Options) (Report, error) {
	if o.Chunk == 0 {
		o.Chunk = DefaultChunk
	}
	if o.Chunk < 1 || o.Chunk > 10000 {
		return Report{}, fmt.Errorf("preload: chunk %d: want 1..10000", o.Chunk)
	}
	if len(urls) > MaxURLs {
		return Report{}, fmt.Errorf("preload: %d URLs: at most %d per push", len(urls), MaxURLs)
	}
	var bodies [][]byte
	var chunks [][]string
	for i := 0; i < len(urls); i += o.Chunk {
		chunk := urls[i:min(i+o.Chunk, len(urls))]
		b, err := json.Marshal(edge.PreloadRequest{URLs: chunk})
		if err != nil {
			return Report{}, fmt.Errorf("preload: %w", err)
		}
		if _, err := edge.ParsePreload(b); err != nil { // what the node will check
			return Report{}, fmt.Errorf("preload: %w", err)
		}
		bodies, chunks = append(bodies, b), append(chunks, chunk)
	}
	if len(urls) == 0 {
		return Report{}, errors.New(`preload: no URLs`)
	}
	targets := Targets(nodes, o.IncludeHubs)
	start := now(c)
	rep := Report{Nodes: make([]NodeReport, len(targets))}
	var progressMu sync.Mutex // serializes o.Progress
	var wg sync.WaitGroup
	for i, n := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nr := &rep.Nodes[i]
			nr.Node = n.Name
			for ci, body := range bodies {
				ack := c.Post(ctx, []fanout.Node{n}, "/preload", body, nil)[0]
				results := decode(ack, chunks[ci])
				for _, r := range results {
					if r.Error == "" && r.Status >= 200 && r.Status < 300 {
						nr.OK++
					} else {
						nr.Failed++
					}
				}
				nr.Results = append(nr.Results, results...)
				if o.Progress != nil {
					progressMu.Lock()
					done := len(nr.Results) - len(results)
					for _, r := range results {
						done++
						o.Progress(Progress{Node: n.Name, Result: r, Done: done, Total: len(urls)})
					}
					progressMu.Unlock()
				}
			}
			nr.Took = now(c).Sub(start)
		}()
	}
	wg.Wait()
	rep.Took = now(c).Sub(start)
	return rep, nil
}

// decode turns a node's answer to one chunk into a result per URL; a chunk
// that failed as a whole fails each of its URLs with the node's error.
func decode(ack fanout.Ack, urls []string) []edge.PreloadResult {
	fail := func(msg string) []edge.PreloadResult {
		out := make([]edge.PreloadResult, len(urls))
		for i, u := range urls {
			out[i] = edge.PreloadResult{URL: u, Error: msg}
		}
		return out
	}
	if !ack.OK {
		return fail(ack.Error)
	}
	var resp edge.PreloadResponse
	if err := json.Unmarshal(ack.Body, &resp); err != nil {
		return fail("bad answer from the node: " + err.Error())
	}
	if len(resp.Results) != len(urls) {
		return fail(fmt.Sprintf("bad answer from the node: %d results for %d URLs", len(resp.Results), len(urls)))
	}
	for i, r := range resp.Results {
		if r.URL != urls[i] {
			return fail(fmt.Sprintf("bad answer from the node: result %d is for %q, not %q", i, r.URL, urls[i]))
		}
	}
	return resp.Results
}

func now(c *fanout.Client) time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
