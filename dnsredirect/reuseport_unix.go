//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package dnsredirect

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// canReusePort: several UDP sockets can share a port, and the kernel
// spreads queries over them.
const canReusePort = true

// reusePort sets SO_REUSEPORT on a socket before it binds.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
