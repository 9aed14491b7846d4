package distribution_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vergecdn/verge/distribution/fanout"
	"github.com/vergecdn/verge/edge"
)

// BenchmarkPurgePropagation measures a purge from the API call (numbering
// it in management's log, fsynced) to the last of 20 acks: 4 hubs and 16
// edges, each a real engine with 200 cached objects behind real HTTP
// servers on loopback, each recording the purge in its own log.
//
// parallel: one round to all 20 nodes. tiered: the 4 hubs, then the 16
// edges (what management does, so an edge never refills from a hub that has
// not purged yet).
func BenchmarkPurgePropagation(b *testing.B) {
	for _, mode := range []string{"parallel", "tiered"} {
		b.Run(mode, func(b *testing.B) {
			tr := newTree(b, treeOptions{hubs: 4, edges: 16})
			for _, n := range tr.nodes() {
				for i := range 200 {
					get(b, n, fmt.Sprintf("/bench/%d", i))
				}
			}
			nodes := tr.fanoutNodes()
			tiers := fanout.Tiers(nodes)
			ctx := context.Background()
			var took []time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				p, err := tr.mgmt.Append(edge.Purge{Kind: edge.PurgeURL, Value: fmt.Sprintf("http://%s/bench/%d", siteHost, i%200)})
				if err != nil {
					b.Fatal(err)
				}
				body, _ := json.Marshal(p)
				var acks []fanout.Ack
				if mode == "parallel" {
					acks = tr.fan.Post(ctx, nodes, "/purge", body, nil)
				} else {
					acks = tr.fan.PostTiers(ctx, tiers, "/purge", body, nil)
				}
				took = append(took, time.Since(start))
				for _, a := range acks {
					if !a.OK {
						b.Fatalf("%s: %s", a.Node, a.Error)
					}
				}
				i++
			}
			slices.Sort(took)
			q := func(f float64) float64 { return float64(took[int(f*float64(len(took)-1))]) / 1e6 }
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(float64(len(nodes)), "nodes")
		})
	}
}

// BenchmarkAppend is management's part of a purge: numbering it in the
// authoritative log, durably.
func BenchmarkAppend(b *testing.B) {
	tr := newTree(b, treeOptions{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.mgmt.Append(edge.Purge{Kind: edge.PurgeTag, Value: "t"}); err != nil {
			b.Fatal(err)
		}
	}
}
