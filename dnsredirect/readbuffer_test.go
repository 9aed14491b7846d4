package dnsredirect

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestUDPReadBuffer: every UDP socket asks for a 4 MiB receive buffer, so
// a burst does not overflow the kernel's default (about 208 KiB), which
// dropped 0.3% of a 40,000 queries/s flood in TestNXDomainFloodLegitimateAnswered.
func TestUDPReadBuffer(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skipf("no rmem_max to compare with: %v", err)
	}
	rmemMax, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	b, _ = os.ReadFile("/proc/sys/net/core/rmem_default")
	rmemDefault, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	want := min(udpReadBuffer, rmemMax)
	if want <= rmemDefault {
		t.Skipf("net.core.rmem_max (%d) leaves no room above the default (%d)", rmemMax, rmemDefault)
	}
	s, _ := startServer(t, testConfig(t), Options{})
	for i, c := range s.udp {
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		raw.Control(func(fd uintptr) { got, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
		if err != nil {
			t.Fatal(err)
		}
		if got < want { // Linux reports twice what was set
			t.Errorf("socket %d: SO_RCVBUF %d, want at least %d", i, got, want)
		}
	}
}
