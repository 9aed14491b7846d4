package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// Version returns the binary's version: the -X value, else the module
// version, else the VCS revision, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}

func runVersion(_ context.Context, e env) int {
	fs := newFlags("version", e)
	if code, ok := parseFlags(fs, e.args); !ok {
		return code
	}
	fmt.Fprintf(e.stdout, "verge %s %s/%s %s\n", Version(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	return exitOK
}
