package dnsredirect

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestNXDomainFloodLegitimateAnswered floods a real server on loopback with
// random-subdomain queries (each a fresh NXDOMAIN, as in a water-torture
// attack on a zone) from dnsperf, 8 seconds at 40,000/s and 8 at 100,000/s,
// while a resolver-like client sends 300 legitimate queries a second from
// another loopback address and counts how many are answered, on the first
// try (1s timeout) and with up to two retries. It prints the figures; the
// runs are bounded in time and rate and send only to 127.0.0.1.
//
// It needs dnsperf (Debian package dnsperf) and VERGE_HARDENING=1.
func TestNXDomainFloodLegitimateAnswered(t *testing.T) {
	if os.Getenv("VERGE_HARDENING") == "" {
		t.Skip("a hardening measurement: ./test.sh runs it with VERGE_HARDENING=1")
	}
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		t.Skip("dnsperf is not installed (apt-get install -y dnsperf)")
	}
	cfg := testConfig(t)
	s, addr := startServer(t, cfg, Options{})

	// The flood's input: 200,000 distinct random names under the zone.
	data := filepath.Join(t.TempDir(), "nx.txt")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	var rnd [8]byte
	for range 200000 {
		rand.Read(rnd[:])
		fmt.Fprintf(w, "%s.cdn.example.test A\n", hex.EncodeToString(rnd[:]))
	}
	w.Flush()
	f.Close()
	// 40,000/s, which the server keeps up with here, then 100,000/s, more
	// than this machine's two cores carry for dnsperf and the server both.
	for _, qps := range []int{40000, 100000} {
		floodPhase(t, s, addr, dnsperf, data, qps, 8*time.Second, 300)
	}
}

func floodPhase(t *testing.T, s *Server, addr, dnsperf, data string, floodQPS int, duration time.Duration, legitQPS int) {
	host, port, _ := net.SplitHostPort(addr)
	before := s.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), duration+30*time.Second)
	defer cancel()
	perf := exec.CommandContext(ctx, dnsperf, "-s", host, "-p", port, "-d", data, "-l", strconv.Itoa(int(duration/time.Second)),
		"-Q", strconv.Itoa(floodQPS), "-c", "8", "-q", "2000", "-t", "2")
	var out lockedOutput
	perf.Stdout, perf.Stderr = &out, &out
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the flood at full rate first

	// The legitimate client: its own socket, from 127.0.0.2.
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}
	c := &dns.Client{Net: "udp", Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: local}}
	var sent, first, withRetry, wrong atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(legitQPS))
	deadline := time.Now().Add(duration - 2*time.Second)
	for time.Now().Before(deadline) {
		<-tick.C
		wg.Add(1)
		sent.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion("www.cdn.example.test.", dns.TypeA)
			m.SetEdns0(1232, false)
			for try := 0; try < 3; try++ {
				r, _, err := c.Exchange(m, addr)
				if err != nil {
					continue
				}
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
					wrong.Add(1)
					return
				}
				if try == 0 {
					first.Add(1)
				}
				withRetry.Add(1)
				return
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	if err := perf.Wait(); err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out.String())
	}
	report := out.String()
	field := func(name string) string {
		if m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `:\s+(.+)$`).FindStringSubmatch(report); m != nil {
			return m[1]
		}
		return "?"
	}
	n := sent.Load()
	t.Logf("FIGURE dns NXDOMAIN flood at %d/s: dnsperf sent %s, completed %s, lost %s, at %s queries/s for %v",
		floodQPS, field("Queries sent"), field("Queries completed"), field("Queries lost"), field("Queries per second"), duration)
	t.Logf("FIGURE dns NXDOMAIN flood at %d/s: legitimate queries (%d/s) answered %d/%d = %.3f%% on the first try (1s timeout), %d/%d = %.3f%% within 3 tries; %d wrong answers; server dropped %d malformed",
		floodQPS, legitQPS, first.Load(), n, 100*float64(first.Load())/float64(n), withRetry.Load(), n, 100*float64(withRetry.Load())/float64(n),
		wrong.Load(), s.Stats().Dropped-before.Dropped)
	if !regexp.MustCompile(`NXDOMAIN \d+`).MatchString(report) || n == 0 {
		t.Fatalf("the flood did not run as intended:\n%s", report)
	}
	if wrong.Load() > 0 {
		t.Errorf("%d legitimate queries got a wrong answer", wrong.Load())
	}
}

// lockedOutput collects a command's output.
type lockedOutput struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (l *lockedOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
