package health

import (
	"errors"
	"strings"
	"time"

	"github.com/vergecdn/verge/configs"
)

// Config is the health-check section a pool or parent set embeds.
type Config struct {
	// Path is what a probe GETs below each target's URL. Default "/healthz".
	Path string `yaml:"path"`
	// Interval between probe rounds. Default 2s.
	Interval configs.Duration `yaml:"interval"`
	// Timeout for one probe, from dial to the end of the response headers.
	// Default 1s; at most Interval.
	Timeout configs.Duration `yaml:"timeout"`
	// Rise is how many consecutive successes bring a down target back. Default 2.
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failures (probes or live traffic) take a
	// target down. Default 3.
	Fall int `yaml:"fall"`
	// Enabled turns checking on. When false nothing is probed, passive reports
	// are ignored and every target stays healthy. Default true.
	Enabled bool `yaml:"enabled"`
}

// DefaultConfig returns the defaults stated on each field.
func DefaultConfig() Config {
	return Config{
		Path:     "/healthz",
		Interval: configs.Duration(2 * time.Second),
		Timeout:  configs.Duration(time.Second),
		Rise:     2,
		Fall:     3,
		Enabled:  true,
	}
}

// Limits that keep a typo from turning into a probe storm or a target that
// can never change state.
const (
	minInterval = 10 * time.Millisecond
	maxCount    = 1000
)

// Validate checks c; errors name keys under prefix ("upstream.health.rise").
func (c Config) Validate(prefix string) error {
	var errs []error
	key := func(k string) string { return configs.Key(prefix, k) }
	if !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, configs.Errorf(key("path"), "must start with \"/\", got %q", c.Path))
	} else if strings.ContainsAny(c.Path, " \t\r\n#") {
		errs = append(errs, configs.Errorf(key("path"), "must not contain spaces or '#', got %q", c.Path))
	}
	if c.Interval.D() < minInterval {
		errs = append(errs, configs.Errorf(key("interval"), "must be at least %v, got %v", minInterval, c.Interval))
	}
	if c.Timeout.D() <= 0 {
		errs = append(errs, configs.Errorf(key("timeout"), "must be positive, got %v", c.Timeout))
	} else if c.Timeout.D() > c.Interval.D() {
		errs = append(errs, configs.Errorf(key("timeout"), "must not exceed interval (%v), got %v", c.Interval, c.Timeout))
	}
	if c.Rise < 1 || c.Rise > maxCount {
		errs = append(errs, configs.Errorf(key("rise"), "must be between 1 and %d, got %d", maxCount, c.Rise))
	}
	if c.Fall < 1 || c.Fall > maxCount {
		errs = append(errs, configs.Errorf(key("fall"), "must be between 1 and %d, got %d", maxCount, c.Fall))
	}
	return errors.Join(errs...)
}
