package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/dnsredirect"
	"github.com/vergecdn/verge/edge"
	"github.com/vergecdn/verge/management"
	"github.com/vergecdn/verge/origin"
)

// TestEveryConfigLoads loads each file in configs/ into the struct its
// subcommand reads, with the same strict loader; a file nobody loads fails.
func TestEveryConfigLoads(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			var cfg any
			switch {
			case name == "edge" || name == "cache-tests":
				c := defaultCacheFile()
				c.Role = edge.RoleEdge
				cfg = &c
			case name == "hub":
				c := defaultCacheFile()
				c.Role = edge.RoleHub
				cfg = &c
			case name == "origin":
				c := origin.DefaultConfig()
				cfg = &c
			case strings.HasPrefix(name, "dns"):
				c := dnsFile{Config: dnsredirect.DefaultConfig(), Report: defaultReportConfig()}
				cfg = &c
			case name == "scrubber":
				c := defaultScrubberConfig()
				cfg = &c
			case name == "manage":
				c := management.DefaultConfig()
				cfg = &c
			default:
				t.Fatalf("no test knows how to load configs/%s.yaml: add it here", filepath.Base(f))
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// Files name paths on the machine they describe (token files,
			// roots, mmdbs); only the keys and values are checked here.
			if err := configs.LoadBytes(f, data, cfg); err != nil {
				if !onlyMissingFiles(err) {
					t.Fatal(err)
				}
				t.Logf("paths for another machine: %v", err)
			}
		})
	}
}

// onlyMissingFiles reports whether every problem is a file that does not
// exist on this machine (the sample's paths are for its deployment).
func onlyMissingFiles(err error) bool {
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(line, "no such file or directory") {
			return false
		}
	}
	return true
}
