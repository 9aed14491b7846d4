package storage

import (
	"errors"
	"slices"
	"time"

	"github.com/vergecdn/verge/configs"
)

// Config sizes and places the cache tiers. The edge config embeds it.
type Config struct {
	// RAMBytes is the RAM tier's budget. Default 256MiB.
	RAMBytes configs.Bytes `yaml:"ram_bytes"`
	// Shards is how many locks split the RAM tier (rounded up to a power of
	// two); each shard holds an equal share of the budget, so the largest
	// object RAM holds is RAMBytes/Shards. Default 32.
	Shards int `yaml:"shards"`
	// Policy is the RAM tier's eviction policy: lru, 2q, arc or tinylfu.
	// Default tinylfu (chosen by the trace simulation in README.md).
	Policy Policy `yaml:"policy"`
	// Disk is the SSD spillover tier.
	Disk DiskConfig `yaml:"disk"`
}

// DiskConfig configures the disk tier.
type DiskConfig struct {
	// Dir holds the tier's files. Default "": no disk tier. A non-empty
	// directory that is not a Verge cache directory is refused.
	Dir string `yaml:"dir"`
	// Bytes is the disk tier's budget (file sizes, headers included).
	// Default 10GiB.
	Bytes configs.Bytes `yaml:"bytes"`
	// MaxObjectBytes is the largest object the disk tier stores. Default 1GiB.
	MaxObjectBytes configs.Bytes `yaml:"max_object_bytes"`
	// CheckpointInterval is how often the index is checkpointed, so a
	// restart finds the cache warm; it is also checkpointed on clean
	// shutdown. Default 1m.
	CheckpointInterval configs.Duration `yaml:"checkpoint_interval"`
	// PromoteAfter is the disk hit on which an object that fits in RAM is
	// copied back to RAM. Default 2 (its second hit).
	PromoteAfter int `yaml:"promote_after"`
	// Fsync syncs every object file before it is renamed into place.
	// Default false: a kill never tears a renamed file (the page cache holds
	// it), and after a power loss a torn body fails its checksum on first
	// use and is dropped. Checkpoints are always synced.
	Fsync bool `yaml:"fsync"`
	// SaveRAMOnClose writes the RAM tier's objects to disk on clean
	// shutdown, so a restart finds the hot set warm too. Default true.
	SaveRAMOnClose bool `yaml:"save_ram_on_close"`
	// SpillQueue is how many objects evicted from RAM may wait to be
	// written; beyond it spills are dropped (and counted). Default 1024.
	SpillQueue int `yaml:"spill_queue"`
}

// DefaultConfig returns the defaults stated on each field.
func DefaultConfig() Config {
	return Config{
		RAMBytes: 256 << 20,
		Shards:   32,
		Policy:   DefaultPolicy,
		Disk: DiskConfig{
			Bytes:              10 << 30,
			MaxObjectBytes:     1 << 30,
			CheckpointInterval: configs.Duration(time.Minute),
			PromoteAfter:       2,
			SaveRAMOnClose:     true,
			SpillQueue:         1024,
		},
	}
}

// Validate checks c; errors name keys from the storage section's root.
func (c Config) Validate() error { return c.ValidateAt("") }

// ValidateAt checks c; errors name keys under prefix ("cache.ram_bytes"),
// for a config that embeds this one.
func (c Config) ValidateAt(prefix string) error {
	var errs []error
	key := func(k string) string { return configs.Key(prefix, k) }
	if c.RAMBytes < 1<<20 {
		errs = append(errs, configs.Errorf(key("ram_bytes"), "must be at least 1MiB, got %s", c.RAMBytes))
	}
	if c.Shards < 1 || c.Shards > 4096 {
		errs = append(errs, configs.Errorf(key("shards"), "must be between 1 and 4096, got %d", c.Shards))
	} else if c.RAMBytes >= 1<<20 && int64(c.RAMBytes)/int64(c.Shards) < 64<<10 {
		errs = append(errs, configs.Errorf(key("shards"), "leaves %dB per shard; each needs at least 64KiB (fewer shards or more ram_bytes)", int64(c.RAMBytes)/int64(c.Shards)))
	}
	if !slices.Contains(Policies, c.Policy) {
		errs = append(errs, configs.Errorf(key("policy"), "unknown policy %q (want lru, 2q, arc or tinylfu)", c.Policy))
	}
	d := c.Disk
	dk := func(k string) string { return configs.Key(key("disk"), k) }
	if d.Dir != "" {
		if d.Bytes < 1<<20 {
			errs = append(errs, configs.Errorf(dk("bytes"), "must be at least 1MiB, got %s", d.Bytes))
		}
		if d.MaxObjectBytes < 1<<10 {
			errs = append(errs, configs.Errorf(dk("max_object_bytes"), "must be at least 1KiB, got %s", d.MaxObjectBytes))
		} else if d.MaxObjectBytes > d.Bytes {
			errs = append(errs, configs.Errorf(dk("max_object_bytes"), "must not exceed disk.bytes (%s), got %s", d.Bytes, d.MaxObjectBytes))
		}
		if d.CheckpointInterval.D() < time.Second {
			errs = append(errs, configs.Errorf(dk("checkpoint_interval"), "must be at least 1s, got %s", d.CheckpointInterval))
		}
		if d.PromoteAfter < 1 || d.PromoteAfter > 1000 {
			errs = append(errs, configs.Errorf(dk("promote_after"), "must be between 1 and 1000, got %d", d.PromoteAfter))
		}
		if d.SpillQueue < 1 || d.SpillQueue > 1<<20 {
			errs = append(errs, configs.Errorf(dk("spill_queue"), "must be between 1 and 1048576, got %d", d.SpillQueue))
		}
	}
	return errors.Join(errs...)
}
