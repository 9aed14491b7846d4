package management

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// benchReport is an edge's report with n properties.
func benchReport(node string, n int, seq uint64, at time.Time) Report {
	r := Report{Node: node, Role: RoleEdge, Region: "eu", Version: "v1", AdminURL: "http://127.0.0.1:9080",
		Instance: "bench-" + node, Started: at.Add(-time.Hour), Seq: seq, At: at, Ready: true,
		LatencyBounds: []float64{0.001, 0.01, 0.1, 1}}
	for i := 0; i < n; i++ {
		v := seq * uint64(i+1)
		r.Properties = append(r.Properties, PropertyCounters{Property: fmt.Sprintf("property-%03d", i),
			Requests: Results{Hit: 9 * v, Miss: v}, Status: Classes{C2xx: 10 * v}, Bytes: 1000 * v,
			UpstreamRequests: v, UpstreamBytes: 100 * v, Latency: []uint64{v, v, v, v, 6 * v}})
	}
	return r
}

// BenchmarkDecodeReports decodes and checks one report of 100 properties.
func BenchmarkDecodeReports(b *testing.B) {
	body, _ := json.Marshal(benchReport("e1", 100, 1, time.Unix(1e9, 0)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeReports(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest stores one report of 100 properties: the deltas against
// the node's cursor, the usage upserts and the cursor, in one SQLite
// transaction (the intake's cost per node per interval).
func BenchmarkIngest(b *testing.B) {
	for _, props := range []int{10, 100} {
		b.Run(fmt.Sprintf("properties=%d", props), func(b *testing.B) {
			cfg := DefaultConfig()
			dir := b.TempDir()
			cfg.Database, cfg.PurgeLogDir = dir+"/m.db", dir+"/plog"
			cfg.OperatorToken, cfg.ClusterToken = opToken, clusterToken
			clk := newClock()
			s, err := New(cfg, Options{Now: clk.Now})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				clk.Add(5 * time.Second)
				if _, err := s.fleet.ingest(ctx, []Report{benchReport("e1", props, seq, clk.Now())}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
