package dnsredirect_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/dnsredirect/geo"
)

// benchDir is the shared GeoDNS bench (check.sh, run.sh, data/): $VERGE_DNS_BENCH
// or ../shared/bench/dns next to the repository.
func benchDir() string {
	if d := os.Getenv("VERGE_DNS_BENCH"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "bench", "dns")
}

// TestCheckScript serves configs/dns-bench.yaml (on a free port) and runs
// the bench's 30 dig checks against it. It needs dig (Debian: dnsutils) and
// the bench directory; without them it skips and says why.
func TestCheckScript(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (apt-get install dnsutils): skipping the bench's check.sh")
	}
	script := filepath.Join(benchDir(), "check.sh")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("bench check script not found (%v; set VERGE_DNS_BENCH): skipping", err)
	}
	cfg := dnsredirect.DefaultConfig()
	const path = "../configs/dns-bench.yaml"
	if err := configs.Load(path, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	mmdb := cfg.MMDB
	if !filepath.IsAbs(mmdb) {
		mmdb = filepath.Join(filepath.Dir(path), mmdb)
	}
	if os.Getenv("VERGE_DNS_BENCH") != "" {
		mmdb = filepath.Join(benchDir(), "data", "geo.mmdb") // the bench is not next to the repository
	}
	db, err := geo.Open(mmdb)
	if err != nil {
		t.Skipf("bench mmdb: %v: skipping", err)
	}
	defer db.Close()
	s, err := dnsredirect.New(cfg, dnsredirect.Options{Geo: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	host, port, _ := net.SplitHostPort(s.Addr())
	// The bound keeps a broken dig from hanging the test run; every dig in
	// the script has its own 2 s timeout.
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	out, err := exec.CommandContext(cctx, "bash", script, host, port).CombinedOutput()
	t.Logf("check.sh %s %s:\n%s", host, port, out)
	m := regexp.MustCompile(`dns-check: (\d+) passed, (\d+) failed`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line from check.sh (%v)", err)
	}
	passed, _ := strconv.Atoi(string(m[1]))
	failed, _ := strconv.Atoi(string(m[2]))
	if failed != 0 || passed == 0 || err != nil {
		t.Fatalf("check.sh: %d passed, %d failed (%v)", passed, failed, err)
	}
}
