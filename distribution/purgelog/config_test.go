package purgelog

import (
	"strings"
	"testing"

	"github.com/vergecdn/verge/configs"
)

type fileConfig struct {
	PurgeLog Config `yaml:"purge_log"`
}

func (f *fileConfig) Validate() error { return f.PurgeLog.Validate("purge_log") }

func TestConfig(t *testing.T) {
	f := fileConfig{PurgeLog: DefaultConfig()}
	if err := configs.LoadBytes("n.yaml", []byte("purge_log:\n  dir: /tmp/x\n  peers: [http://127.0.0.1:9300, https://hub.example.test:9180/]\n  start_wait: 1m\n"), &f); err != nil {
		t.Fatal(err)
	}
	if !f.PurgeLog.Enabled() || len(f.PurgeLog.Peers) != 2 || f.PurgeLog.SyncInterval.String() != "30s" || f.PurgeLog.StartWait.String() != "1m0s" {
		t.Errorf("%+v", f.PurgeLog)
	}
	if DefaultConfig().Enabled() {
		t.Error("enabled by default")
	}
	for _, c := range []struct{ yaml, want string }{
		{"purge_log:\n  peers: [http://a.test:1]\n", "n.yaml:2: purge_log.dir: is required when peers are set"},
		{"purge_log:\n  dir: d\n  peers: [a.test:1]\n", "purge_log.peers[0]: want an http(s) base URL"},
		{"purge_log:\n  dir: d\n  peers: [\"http://u:p@a.test\"]\n", "without path, query or credentials"},
		{"purge_log:\n  dir: d\n  peers: [http://a.test, http://a.test]\n", `purge_log.peers[1]: duplicate peer "http://a.test"`},
		{"purge_log:\n  dir: d\n  gap_timeout: 0s\n", "purge_log.gap_timeout: must be positive"},
		{"purge_log:\n  dir: d\n  sync_interval: soon\n", "purge_log.sync_interval"},
		{"purge_log:\n  dir: d\n  peers: [" + strings.Repeat("http://a.test,", MaxPeers) + "http://b.test]\n", "at most 16 peers"},
	} {
		f := fileConfig{PurgeLog: DefaultConfig()}
		err := configs.LoadBytes("n.yaml", []byte(c.yaml), &f)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}

// FuzzConfig: any file either loads into a config that validates, or fails
// with an error; never a panic.
func FuzzConfig(f *testing.F) {
	f.Add("purge_log:\n  dir: d\n  peers: [http://a.test:1]\n")
	f.Add("purge_log: {dir: x, retry: 0s}\n")
	f.Add("purge_log:\n  peers: [\"http://[::1]:9\"]\n")
	f.Fuzz(func(t *testing.T, s string) {
		c := fileConfig{PurgeLog: DefaultConfig()}
		if err := configs.LoadBytes("f.yaml", []byte(s), &c); err != nil {
			return
		}
		if err := c.PurgeLog.Validate("purge_log"); err != nil {
			t.Fatalf("loaded but invalid: %v", err)
		}
	})
}

func FuzzParseHash(f *testing.F) {
	f.Add("")
	f.Add(strings.Repeat("ab", 32))
	f.Add(strings.Repeat("00", 32))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		if h.String() != strings.ToLower(s) {
			t.Fatalf("%q parses to %s", s, h)
		}
	})
}
