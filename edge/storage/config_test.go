package storage_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/edge/storage"
)

// nodeConfig embeds the storage config the way the edge config does.
type nodeConfig struct {
	Cache storage.Config `yaml:"cache"`
}

func (c *nodeConfig) Validate() error { return c.Cache.ValidateAt("cache") }

func TestDefaultConfigValid(t *testing.T) {
	c := storage.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Disk.Dir = "/tmp/x"
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults with a disk dir: %v", err)
	}
	if c.Policy != storage.DefaultPolicy || c.RAMBytes != 256<<20 || c.Disk.PromoteAfter != 2 {
		t.Fatalf("defaults changed: %+v", c)
	}
}

func TestSampleConfigLoads(t *testing.T) {
	c := nodeConfig{Cache: storage.DefaultConfig()}
	if err := configs.Load("testdata/cache.yaml", &c); err != nil {
		t.Fatal(err)
	}
	d := c.Cache.Disk
	if c.Cache.RAMBytes != 512<<20 || c.Cache.Shards != 64 || c.Cache.Policy != storage.PolicyTinyLFU ||
		d.Dir != "/var/cache/verge" || d.Bytes != 200<<30 || d.MaxObjectBytes != 2<<30 ||
		d.CheckpointInterval.D() != 30*time.Second || d.PromoteAfter != 2 || d.Fsync || !d.SaveRAMOnClose || d.SpillQueue != 4096 {
		t.Fatalf("loaded %+v", c.Cache)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		yaml string
		want string // file:line: key: message fragment
	}{
		{"cache:\n  policy: lfu\n", "x.yaml:2: cache.policy: unknown policy \"lfu\""},
		{"cache:\n  ram_bytes: 1KiB\n", "x.yaml:2: cache.ram_bytes: must be at least 1MiB"},
		{"cache:\n  ram_bytes: 1MiB\n  shards: 64\n", "x.yaml:3: cache.shards: leaves 16384B per shard"},
		{"cache:\n  shards: 0\n", "x.yaml:2: cache.shards: must be between 1 and 4096"},
		{"cache:\n  disk:\n    dir: /d\n    bytes: 1GiB\n    max_object_bytes: 2GiB\n", "x.yaml:5: cache.disk.max_object_bytes: must not exceed disk.bytes"},
		{"cache:\n  disk:\n    dir: /d\n    checkpoint_interval: 10ms\n", "x.yaml:4: cache.disk.checkpoint_interval: must be at least 1s"},
		{"cache:\n  disk:\n    dir: /d\n    promote_after: 0\n", "x.yaml:4: cache.disk.promote_after: must be between 1 and 1000"},
		{"cache:\n  disk:\n    dir: /d\n    spill_queue: -1\n", "x.yaml:4: cache.disk.spill_queue: must be between 1"},
		{"cache:\n  disk:\n    bytes: lots\n", "x.yaml:3: cache.disk.bytes: bad size"},
		{"cache:\n  disk:\n    dri: /d\n", "x.yaml:3: cache.disk.dri: unknown key"},
	}
	for _, c := range cases {
		cfg := nodeConfig{Cache: storage.DefaultConfig()}
		err := configs.LoadBytes("x.yaml", []byte(c.yaml), &cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.yaml, err, c.want)
		}
		var ce *configs.Error
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("%q: error %T is not a *configs.Error", c.yaml, err)
		}
	}
}
