//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package dnsredirect

import "syscall"

// canReusePort: without SO_REUSEPORT one UDP socket serves the port.
const canReusePort = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
