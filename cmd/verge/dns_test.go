package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const dnsTestCSV = `cidr,country,continent,lat,lon
127.0.0.0/8,US,NA,39.04,-77.49
192.0.2.0/24,DE,EU,50.11,8.68
`

// The config names the mmdb relative to itself; edges are documentation
// addresses and probes are off, so nothing leaves loopback.
const dnsTestYAML = `listen: 127.0.0.1:0
admin: 127.0.0.1:0
mmdb: geo.mmdb
zones:
  - {name: cdn.example.test, ns: [ns1], hosts: [www], records: ["ns1 A 127.0.0.1"]}
sites:
  - {name: us, lat: 39.04, lon: -77.49, edges: [{name: us-1, ipv4: 192.0.2.10}]}
  - {name: eu, lat: 50.11, lon: 8.68, edges: [{name: eu-1, ipv4: 192.0.2.20}]}
health: {enabled: false}
`

func buildTestMMDB(t *testing.T, dir string) {
	t.Helper()
	csv := filepath.Join(dir, "geo.csv")
	os.WriteFile(csv, []byte(dnsTestCSV), 0o644)
	var out, errb bytes.Buffer
	if code := runMMDB(context.Background(), env{args: []string{"build", "-csv", csv, "-out", filepath.Join(dir, "geo.mmdb")}, stdout: &out, stderr: &errb}); code != exitOK {
		t.Fatalf("mmdb build: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "wrote 2 networks to") {
		t.Fatalf("mmdb build said %q", out.String())
	}
}

func TestDNSCommand(t *testing.T) {
	dir := t.TempDir()
	buildTestMMDB(t, dir)
	// A stand-in for management that keeps the reports it is sent.
	reports := make(chan string, 16)
	manage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/reports" && r.Header.Get("Authorization") == "Bearer "+testClusterToken {
			body, _ := io.ReadAll(r.Body)
			select {
			case reports <- string(body):
			default:
			}
		}
		http.Error(w, "stand-in", http.StatusServiceUnavailable)
	}))
	defer manage.Close()
	token := filepath.Join(dir, "cluster.token")
	os.WriteFile(token, []byte(testClusterToken+"\n"), 0o600)
	cfg := filepath.Join(dir, "dns.yaml")
	os.WriteFile(cfg, []byte(dnsTestYAML+"node: {name: from-file}\nreport: {url: "+manage.URL+", token_file: "+token+", interval: 100ms}\n"), 0o644)

	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan int, 1)
	// -name and -admin override the file (a pod's name and address).
	args := []string{"-config", cfg, "-name", "dns-pod-1", "-admin", "127.0.0.3:0"}
	go func() { exited <- runDNS(ctx, env{args: args, stdout: io.Discard, stderr: logs}) }()
	addr := waitLog(t, logs, regexp.MustCompile(`msg="dns serving" addr=(\S+)`), exited)
	admin := waitLog(t, logs, regexp.MustCompile(`msg=listening server=admin addr=(\S+)`), exited)
	if !strings.HasPrefix(admin, "127.0.0.3:") {
		t.Errorf("admin listens on %s, want -admin 127.0.0.3:0", admin)
	}
	select {
	case rep := <-reports:
		if !strings.Contains(rep, `"node":"dns-pod-1"`) || !strings.Contains(rep, `"admin_url":"http://`+admin+`"`) {
			t.Errorf("report names the node and admin URL wrongly:\n%s", rep)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no report reached management:\n%s", logs.String())
	}

	m := new(dns.Msg)
	m.SetQuestion("www.cdn.example.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{192, 0, 2, 0}})
	r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, addr)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.20" || !r.Authoritative {
		t.Fatalf("query: %v %v", r, err)
	}

	for path, want := range map[string]string{"/healthz": "ok", "/metrics": `verge_dns_queries_total{qtype="A",rcode="NOERROR",site="eu"} 1`} {
		res, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, want %q in\n%s", path, res.StatusCode, want, body)
		}
	}
	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("exit %d after shutdown:\n%s", code, logs.String())
	}
}

func TestDNSCommandErrors(t *testing.T) {
	dir := t.TempDir()
	noDB := filepath.Join(dir, "nodb.yaml")
	os.WriteFile(noDB, []byte(dnsTestYAML), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(dnsTestYAML, "edges: [{name: eu-1, ipv4: 192.0.2.20}]", "edges: []", 1)), 0o644)
	notDB := filepath.Join(dir, "notdb.yaml")
	os.WriteFile(notDB, []byte(strings.Replace(dnsTestYAML, "mmdb: geo.mmdb", "mmdb: notdb.yaml", 1)), 0o644)

	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "-config FILE is required"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, exitUsage, "missing.yaml: open"},
		{[]string{"-config", noDB}, exitUsage, "nodb.yaml: mmdb: geo: mmdb " + filepath.Join(dir, "geo.mmdb") + ": no such file or directory"},
		{[]string{"-config", notDB}, exitUsage, "notdb.yaml: not a MaxMind DB"},
		{[]string{"-config", bad}, exitUsage, `bad.yaml:8: sites[1].edges: site "eu" has no edges`},
		{[]string{"-config", noDB, "-log-level", "loud"}, exitUsage, "bad -log-level"},
		{[]string{"-bogus"}, exitUsage, "flag provided but not defined"},
	}
	for _, c := range cases {
		var errb bytes.Buffer
		code := runDNS(context.Background(), env{args: c.args, stdout: io.Discard, stderr: &errb})
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("dns %v: exit %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

func TestMMDBCommand(t *testing.T) {
	dir := t.TempDir()
	buildTestMMDB(t, dir)
	db := filepath.Join(dir, "geo.mmdb")
	badCSV := filepath.Join(dir, "bad.csv")
	os.WriteFile(badCSV, []byte("cidr,country,continent,lat,lon\n192.0.2.0/24,DEU,EU,1,2\n"), 0o644)
	emptyCSV := filepath.Join(dir, "empty.csv")
	os.WriteFile(emptyCSV, []byte("# nothing\n"), 0o644)

	cases := []struct {
		args      []string
		code      int
		out, errS string
	}{
		{[]string{"lookup", "-db", db, "192.0.2.7", "10.0.0.1"}, exitOK,
			"192.0.2.7\tnetwork=192.0.2.0/24\tcountry=DE\tcontinent=EU\tlatlon=50.11,8.68\n10.0.0.1\tnetwork=0.0.0.0/2\tnot found\n", ""},
		{[]string{"build", "-csv", badCSV, "-out", filepath.Join(dir, "x.mmdb")}, exitFailure, "", badCSV + ":2:14: country: want a two-letter"},
		{[]string{"build", "-csv", emptyCSV, "-out", filepath.Join(dir, "x.mmdb")}, exitFailure, "", "has no rows"},
		{[]string{"build", "-csv", filepath.Join(dir, "none.csv"), "-out", filepath.Join(dir, "x.mmdb")}, exitFailure, "", "no such file"},
		{[]string{"build", "-csv", badCSV}, exitUsage, "", "-csv FILE and -out FILE are required"},
		{[]string{"lookup", "-db", db, "nope"}, exitUsage, "", `"nope" is not an IP address`},
		{[]string{"lookup", "-db", badCSV, "192.0.2.1"}, exitFailure, "", "not a MaxMind DB"},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{nil, exitUsage, "", "verge mmdb build -csv FILE -out FILE"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := runMMDB(context.Background(), env{args: c.args, stdout: &out, stderr: &errb})
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.errS) {
			t.Errorf("mmdb %v: exit %d\nstdout %q\nstderr %q\nwant %d, %q, %q", c.args, code, out.String(), errb.String(), c.code, c.out, c.errS)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.mmdb")); err == nil {
		t.Error("a failed build left an output file")
	}
}
