package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// demoClient fetches through one node of the demo, as curl --resolve does.
func demoClient(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(ip, port))
		},
	}}
}

func demoGet(t *testing.T, ip, path string) (*http.Response, []byte) {
	t.Helper()
	res, err := demoClient(ip).Get("http://" + demoHost + ":8080" + path)
	if err != nil {
		t.Fatalf("GET %s via %s: %v", path, ip, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func digA(t *testing.T, subnet string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(demoHost+".", dns.TypeA)
	if subnet != "" {
		_, ipnet, _ := net.ParseCIDR(subnet)
		ones, _ := ipnet.Mask.Size()
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ipnet.IP})
		m.Extra = append(m.Extra, o)
	}
	r, _, err := new(dns.Client).Exchange(m, demoDNS+":5300")
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	slices.Sort(ips)
	return ips
}

// TestDemoEndToEnd boots the demo topology and walks the path a user does:
// dig -> edge -> hub -> origin, Cache-Status at each hop, a purge, a hub failure.
func TestDemoEndToEnd(t *testing.T) {
	dir := t.TempDir()
	nodes, err := prepareDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	d, err := startDemo(context.Background(), nodes, "warn", logs)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer func() {
		if f := d.wait(); len(f) > 0 {
			t.Errorf("nodes failed: %v\n%s", f, logs.String())
		}
	}()

	// 1. DNS: this host (127.0.0.1, placed in Germany) gets the eu edges; a
	// client subnet in 10.2/16 gets the us edges.
	if got := digA(t, ""); fmt.Sprint(got) != fmt.Sprint(demoRegions[0].edges) {
		t.Errorf("eu answer %v", got)
	}
	if got := digA(t, "10.2.0.0/16"); fmt.Sprint(got) != fmt.Sprint(demoRegions[1].edges) {
		t.Errorf("us answer %v", got)
	}

	// 2. Edge -> hub -> origin, and the hops in Cache-Status.
	want, _ := os.ReadFile(filepath.Join(dir, "site/index.html"))
	eu1, eu2 := demoRegions[0].edges[0], demoRegions[0].edges[1]
	res, body := demoGet(t, eu1, "/")
	if string(body) != string(want) {
		t.Fatalf("edge served %q", body)
	}
	if cs := strings.Join(res.Header.Values("Cache-Status"), ", "); cs != "hub-eu; fwd=uri-miss, edge-eu-1; fwd=uri-miss" {
		t.Errorf("first fetch: Cache-Status %q", cs)
	}
	res, _ = demoGet(t, eu2, "/")
	if cs := strings.Join(res.Header.Values("Cache-Status"), ", "); cs != "hub-eu; hit, edge-eu-2; fwd=uri-miss" {
		t.Errorf("second edge: Cache-Status %q", cs)
	}
	res, _ = demoGet(t, eu1, "/")
	if cs := strings.Join(res.Header.Values("Cache-Status"), ", "); cs != "hub-eu; fwd=uri-miss, edge-eu-1; hit" {
		t.Errorf("again: Cache-Status %q", cs)
	}
	// A range of the large file.
	req, _ := http.NewRequest("GET", "http://"+demoHost+":8080/video/big.bin", nil)
	req.Header.Set("Range", "bytes=16-31")
	r2, err := demoClient(eu1).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 206 || string(b2) != fmt.Sprintf("%015x\n", 16) {
		t.Errorf("range: %d %q", r2.StatusCode, b2)
	}

	// 3. An operator purges by tag through management: every hub and edge
	// acknowledges, and the next request misses.
	token, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	preq, _ := http.NewRequest("POST", "http://"+demoManage+":9300/api/v1/purge", strings.NewReader(`{"kind":"tag","value":"html"}`))
	preq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	pres, err := http.DefaultClient.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(pres.Body)
	pres.Body.Close()
	if pres.StatusCode != http.StatusAccepted {
		t.Fatalf("purge: %d %s", pres.StatusCode, pb)
	}
	var status struct {
		State    string
		Progress struct{ Nodes, OK, Failed int }
	}
	for i := 0; i < 200 && status.State != "done"; i++ {
		sreq, _ := http.NewRequest("GET", "http://"+demoManage+":9300"+pres.Header.Get("Location"), nil)
		sreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		sres, err := http.DefaultClient.Do(sreq)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(sres.Body).Decode(&status)
		sres.Body.Close()
		if status.State != "done" {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if status.State != "done" || status.Progress.OK != 6 || status.Progress.Failed != 0 {
		t.Fatalf("purge status %+v", status)
	}
	res, _ = demoGet(t, eu1, "/")
	if cs := strings.Join(res.Header.Values("Cache-Status"), ", "); cs != "hub-eu; fwd=uri-miss, edge-eu-1; fwd=uri-miss" {
		t.Errorf("after purge: Cache-Status %q", cs)
	}

	// 4. The eu hub fails: cached objects are still served, and misses go
	// to the origin.
	d.stop("hub-eu")
	res, body = demoGet(t, eu1, "/")
	if res.StatusCode != 200 || string(body) != string(want) {
		t.Errorf("cached object with the hub down: %d", res.StatusCode)
	}
	res, body = demoGet(t, eu1, "/static/style.css")
	if res.StatusCode != 200 || !strings.Contains(string(body), "font-family") {
		t.Errorf("uncached object with the hub down: %d %q", res.StatusCode, body)
	}
	if cs := strings.Join(res.Header.Values("Cache-Status"), ", "); cs != "edge-eu-1; fwd=uri-miss" {
		t.Errorf("with the hub down, Cache-Status %q (want the edge alone: it went to the origin)", cs)
	}
}
