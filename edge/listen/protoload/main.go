// Command protoload measures an edge's hits over HTTP/1.1, HTTP/2 and HTTP/3
// with the same client code, and the server CPU each request costs. It only
// sends to loopback and stops after -d or -n, whichever comes first.
//
//	go run ./edge/listen/protoload -url https://a.test:8443/obj -connect 127.0.0.1:8443 \
//	    -cacert data/ca.pem -pid $(pgrep -n verge) -proto h1,h2,h3 -c 32 -d 10s
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	target := flag.String("url", "", "URL to fetch (its host is the SNI and Host)")
	connect := flag.String("connect", "", "loopback host:port to connect to instead of resolving the URL")
	cacert := flag.String("cacert", "", "PEM CA certificate to trust")
	protos := flag.String("proto", "h1,h2,h3", "protocols to measure, in order")
	conc := flag.Int("c", 32, "concurrent requests")
	conns := flag.Int("conns", 0, "connections for h2/h3 (default 1 per 32 streams)")
	dur := flag.Duration("d", 10*time.Second, "duration per protocol (at most 2m)")
	maxN := flag.Int64("n", 5_000_000, "request cap per protocol")
	pid := flag.Int("pid", 0, "server process to charge CPU to (reads /proc/PID/stat)")
	flag.Parse()
	if err := run(*target, *connect, *cacert, *protos, *conc, *conns, *dur, *maxN, *pid); err != nil {
		fmt.Fprintln(os.Stderr, "protoload:", err)
		os.Exit(1)
	}
}

func run(target, connect, cacert, protos string, conc, conns int, dur time.Duration, maxN int64, pid int) error {
	if target == "" || connect == "" {
		return errors.New("need -url and -connect")
	}
	host, _, err := net.SplitHostPort(connect)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-connect %s is not a loopback address", connect)
	}
	if dur > 2*time.Minute {
		dur = 2 * time.Minute
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return err
		}
		roots.AppendCertsFromPEM(pem)
	}
	if conns <= 0 {
		conns = max(1, conc/32)
	}
	fmt.Printf("proto\tconc\tconns\treq/s\tp50_ms\tp99_ms\terrors\tsrv_cpu_s\treq_per_srv_cpu_s\tsrv_us_per_req\n")
	for _, p := range strings.Split(protos, ",") {
		rts, err := transports(strings.TrimSpace(p), connect, roots, conc, conns)
		if err != nil {
			return err
		}
		res := measure(rts, target, conc, dur, maxN, pid)
		for _, rt := range rts {
			if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
				c.CloseIdleConnections()
			}
			if c, ok := rt.(io.Closer); ok {
				c.Close()
			}
		}
		perCPU, usPer := 0.0, 0.0
		if res.cpu > 0 {
			perCPU = float64(res.n) / res.cpu
			usPer = res.cpu / float64(res.n) * 1e6
		}
		fmt.Printf("%s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%d\t%.2f\t%.0f\t%.1f\n", p, conc, conns,
			float64(res.n)/res.elapsed.Seconds(), res.p50, res.p99, res.errs, res.cpu, perCPU, usPer)
	}
	return nil
}

// transports returns conns round-trippers for proto (h1 uses one pooled
// transport with conc connections).
func transports(proto, connect string, roots *x509.CertPool, conc, conns int) ([]http.RoundTripper, error) {
	tlsConf := &tls.Config{RootCAs: roots}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, connect)
	}
	switch proto {
	case "h1":
		return []http.RoundTripper{&http.Transport{
			TLSClientConfig: tlsConf, DialContext: dial, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // no h2
		}}, nil
	case "h2":
		var out []http.RoundTripper
		for i := 0; i < conns; i++ {
			out = append(out, &http.Transport{TLSClientConfig: tlsConf, DialContext: dial, ForceAttemptHTTP2: true})
		}
		return out, nil
	case "h3":
		var out []http.RoundTripper
		for i := 0; i < conns; i++ {
			out = append(out, &http3.Transport{
				TLSClientConfig: tlsConf,
				Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
					return quic.DialAddrEarly(ctx, connect, tc, qc)
				},
			})
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown protocol %q (h1, h2, h3)", proto)
}

type result struct {
	n, errs  int64
	elapsed  time.Duration
	p50, p99 float64
	cpu      float64
}

func measure(rts []http.RoundTripper, target string, conc int, dur time.Duration, maxN int64, pid int) result {
	// warm up: one request per transport
	for _, rt := range rts {
		if req, err := http.NewRequest("GET", target, nil); err == nil {
			if resp, err := rt.RoundTrip(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	var n, errs atomic.Int64
	lat := make([][]float64, conc)
	cpu0 := cpuSeconds(pid)
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt := rts[i%len(rts)]
			for time.Now().Before(deadline) && n.Load() < maxN {
				t0 := time.Now()
				req, _ := http.NewRequest("GET", target, nil)
				resp, err := rt.RoundTrip(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				n.Add(1)
				lat[i] = append(lat[i], float64(time.Since(t0).Microseconds())/1000)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := result{n: n.Load(), errs: errs.Load(), elapsed: elapsed, cpu: cpuSeconds(pid) - cpu0}
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		res.p50 = all[len(all)/2]
		res.p99 = all[len(all)*99/100]
	}
	return res
}

// cpuSeconds is the user+system CPU of pid so far (0 without a pid).
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
