package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	listenpkg "github.com/vergecdn/verge/edge/listen"
)

// startTLSEdge runs "verge edge" with an HTTPS listener (h1, h2, h3) in front
// of origin, with certificates for a.test and b.test from a fresh local CA.
func startTLSEdge(t *testing.T, origin string) (httpsAddr, h3Addr string, ca *listenpkg.CA) {
	t.Helper()
	dir := t.TempDir()
	ca, err := listenpkg.LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), "verge test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a.test", "b.test"} {
		if err := ca.Issue(filepath.Join(dir, h+".pem"), filepath.Join(dir, h+".key"), h); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`node: {name: tls-edge}
listen: {http: "127.0.0.1:0", https: "127.0.0.1:0", admin: "127.0.0.1:0"}
properties:
  - name: a
    hosts: [a.test]
    origin: %[1]s
    tls: {cert_file: %[2]s/a.test.pem, key_file: %[2]s/a.test.key}
  - name: b
    hosts: [b.test]
    origin: %[1]s
    tls: {cert_file: %[2]s/b.test.pem, key_file: %[2]s/b.test.key}
`, origin, dir)
	path := filepath.Join(dir, "edge.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- runEdge(ctx, env{args: []string{"-config", path}, stdout: io.Discard, stderr: logs}) }()
	t.Cleanup(func() {
		cancel()
		if code := <-exited; code != exitOK {
			t.Errorf("edge exited %d:\n%s", code, logs.String())
		}
	})
	return waitListening(t, logs, "https", exited), waitListening(t, logs, "http3", exited), ca
}

func TestHTTP2AndHTTP3ServeTheSameCache(t *testing.T) {
	body := strings.Repeat("verge over every protocol. ", 4000) // ~108 KB: several frames
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Alt-Svc", `h3=":9999"`) // the origin's own: must not reach clients
		io.WriteString(w, body)
	}))
	defer origin.Close()
	httpsAddr, h3Addr, ca := startTLSEdge(t, origin.URL)
	tlsConf := &tls.Config{RootCAs: ca.Pool()}

	h2 := &http.Transport{
		TLSClientConfig:   tlsConf.Clone(),
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, httpsAddr)
		},
	}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{
		TLSClientConfig: tlsConf.Clone(),
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, h3Addr, tc, qc)
		},
	}
	defer h3.Close()
	_, port, _ := net.SplitHostPort(httpsAddr)

	get := func(rt http.RoundTripper, host string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+host+":"+port+"/obj", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	r2, b2 := get(h2, "a.test")
	r3, b3 := get(h3, "a.test")
	if r2.Proto != "HTTP/2.0" || r3.Proto != "HTTP/3.0" {
		t.Fatalf("protocols %s and %s", r2.Proto, r3.Proto)
	}
	if sha256.Sum256([]byte(b2)) != sha256.Sum256([]byte(b3)) || b2 != body {
		t.Fatalf("bodies differ: %d and %d bytes", len(b2), len(b3))
	}
	if r2.Header.Get("Cache-Status") != "tls-edge; fwd=uri-miss" || r3.Header.Get("Cache-Status") != "tls-edge; hit" {
		t.Errorf("cache behaviour: h2 %q, h3 %q", r2.Header.Get("Cache-Status"), r3.Header.Get("Cache-Status"))
	}
	if want := `h3=":` + port + `"; ma=86400`; r2.Header.Get("Alt-Svc") != want {
		t.Errorf("Alt-Svc on TCP = %q, want %q", r2.Header.Values("Alt-Svc"), want)
	}
	if r3.Header.Get("Alt-Svc") != "" {
		t.Errorf("Alt-Svc over HTTP/3 = %q", r3.Header.Get("Alt-Svc"))
	}

	// SNI picks each property's certificate; an unknown name gets none.
	for _, c := range []struct{ sni, want string }{{"a.test", "a.test"}, {"b.test", "b.test"}} {
		conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: ca.Pool(), ServerName: c.sni})
		if err != nil {
			t.Fatalf("SNI %s: %v", c.sni, err)
		}
		if got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]; got != c.want {
			t.Errorf("SNI %s got the certificate for %s", c.sni, got)
		}
		conn.Close()
	}
	if conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true, ServerName: "evil.test"}); err == nil {
		conn.Close()
		t.Error("handshake for an unknown name succeeded")
	}
	// TLS 1.1 is refused.
	if conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: ca.Pool(), ServerName: "a.test", MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Error("TLS 1.1 accepted")
	}
}

func TestBadCertificateIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("not a certificate"), 0o644)
	cfg := fmt.Sprintf(`listen: {http: "127.0.0.1:0", https: "127.0.0.1:0", admin: "127.0.0.1:0"}
properties:
  - name: a
    hosts: [a.test]
    origin: http://127.0.0.1:1
    tls:
      cert_file: %[1]s/bad.pem
      key_file: %[1]s/bad.pem
`, dir)
	path := filepath.Join(dir, "edge.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	var stderr lockedBuffer
	code := runEdge(context.Background(), env{args: []string{"-config", path}, stdout: io.Discard, stderr: &stderr})
	if code != exitUsage || !strings.Contains(stderr.String(), "edge.yaml:7: properties[0].tls.cert_file") {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}
}
