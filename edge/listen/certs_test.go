package listen

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func issue(t *testing.T, ca *CA, dir, name string, hosts ...string) CertFiles {
	t.Helper()
	cf := CertFiles{CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+".key")}
	if err := ca.Issue(cf.CertFile, cf.KeyFile, hosts...); err != nil {
		t.Fatal(err)
	}
	return cf
}

func TestSNIAndReload(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	a := issue(t, ca, dir, "a", "a.test")
	b := issue(t, ca, dir, "b", "b.test", "*.b.test")
	certs, err := NewCerts([]CertFiles{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pick := func(name string) string {
		c, err := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			return "error"
		}
		return c.Leaf.DNSNames[0]
	}
	for name, want := range map[string]string{"a.test": "a.test", "A.TEST.": "a.test", "b.test": "b.test", "x.b.test": "b.test", "": "a.test", "c.test": "error", "y.x.b.test": "error"} {
		if got := pick(name); got != want {
			t.Errorf("SNI %q got the certificate of %q, want %q", name, got, want)
		}
	}

	// A reload picks up a re-issued certificate; a broken file keeps the old one.
	before, _ := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.test"})
	time.Sleep(10 * time.Millisecond) // distinct mtime on coarse filesystems
	issue(t, ca, dir, "a", "a.test")
	if !certs.changed() {
		t.Error("changed certificate file not noticed")
	}
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	after, _ := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.test"})
	if before.Leaf.SerialNumber.Cmp(after.Leaf.SerialNumber) == 0 {
		t.Error("reload kept the old certificate")
	}
	os.WriteFile(a.CertFile, []byte("garbage"), 0o644)
	if err := certs.Reload(); err == nil {
		t.Error("broken certificate accepted")
	}
	if kept, _ := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.test"}); kept != after {
		t.Error("a failed reload replaced the certificate in use")
	}

	// The CA is reused when it exists.
	ca2, err := LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), "test CA")
	if err != nil || !ca2.cert.Equal(ca.cert) {
		t.Errorf("CA not reloaded: %v", err)
	}
	if _, err := NewCerts([]CertFiles{{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: a.KeyFile}}, nil); err == nil {
		t.Error("missing certificate accepted")
	}
}

func TestAltSvc(t *testing.T) {
	h := AltSvc(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), 8443)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if got := rec.Header().Get("Alt-Svc"); got != `h3=":8443"; ma=86400` {
		t.Errorf("Alt-Svc = %q", got)
	}
}
