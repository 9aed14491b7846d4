package distribution

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/vergecdn/verge/distribution/balance"
	"github.com/vergecdn/verge/edge/cachekey"
)

// stubTransport answers every request at once, so a benchmark measures the
// selection and bookkeeping a request pays on top of the network.
type stubTransport struct{}

func (stubTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

func benchRequests(b *testing.B) []*http.Request {
	reqs := make([]*http.Request, 256)
	for i := range reqs {
		ctx := cachekey.NewContext(context.Background(), "www.example.com/static/"+strconv.Itoa(i)+".js")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/static/"+strconv.Itoa(i)+".js", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Host = "www.example.com"
		req.RemoteAddr = "198.51.100." + strconv.Itoa(i) + ":5000"
		reqs[i] = req
	}
	return reqs
}

// BenchmarkParentsRoundTrip is the cost Parents adds per request (ring
// lookup among healthy hubs, request copy, metrics), network excluded.
func BenchmarkParentsRoundTrip(b *testing.B) {
	cfg := DefaultParentsConfig()
	for _, n := range []string{"hub-1", "hub-2", "hub-3"} {
		cfg.Hubs = append(cfg.Hubs, Hub{Name: n, URL: "http://127.0.0.1:1"})
	}
	p, err := NewParents(cfg, Options{Transport: stubTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	reqs := benchRequests(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		resp, err := p.RoundTrip(reqs[i&255])
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

// BenchmarkPoolRoundTrip is the same for a pool under each policy.
func BenchmarkPoolRoundTrip(b *testing.B) {
	reqs := benchRequests(b)
	for _, policy := range balance.Names {
		b.Run(policy, func(b *testing.B) {
			cfg := DefaultPoolConfig()
			cfg.Policy = policy
			for i := 0; i < 3; i++ {
				cfg.Backends = append(cfg.Backends, Backend{Name: "b" + strconv.Itoa(i), URL: "http://127.0.0.1:1", Weight: i + 1})
			}
			p, err := NewPool(cfg, Options{Transport: stubTransport{}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				resp, err := p.RoundTrip(reqs[i&255])
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
