package dnsredirect

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fixedHandler answers like the bench's fixed-answer server: one fixed A or
// AAAA, EDNS with the ECS option echoed. It does no lookup at all.
func fixedHandler(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 30}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 10).To4()})
		case dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::10")})
		}
	}
	if opt := r.IsEdns0(); opt != nil {
		ro := new(dns.OPT)
		ro.Hdr.Name = "."
		ro.Hdr.Rrtype = dns.TypeOPT
		ro.SetUDPSize(1232)
		for _, o := range opt.Option {
			if ecs, ok := o.(*dns.EDNS0_SUBNET); ok {
				e := *ecs
				e.SourceScope = e.SourceNetmask
				ro.Option = append(ro.Option, &e)
			}
		}
		m.Extra = append(m.Extra, ro)
	}
	w.WriteMsg(m)
}

// BenchmarkUDPExchange sends the bench's query mix over loopback UDP to
// Verge and to a fixed-answer miekg/dns server (the same server shape as
// the bench's fixed: SO_REUSEPORT sockets, one per CPU), from parallel
// clients in this process. The clients share the CPU, so compare the two
// numbers of one run, not with dnsperf's.
func BenchmarkUDPExchange(b *testing.B) {
	qs := benchQueries(b)
	b.Run("verge", func(b *testing.B) {
		_, addr := startServer(b, testConfig(b), Options{})
		exchangeLoop(b, addr, qs)
	})
	b.Run("fixed", func(b *testing.B) {
		addr := startFixed(b)
		exchangeLoop(b, addr, qs)
	})
}

func startFixed(b *testing.B) string {
	lc := net.ListenConfig{Control: reusePort}
	first, err := lc.ListenPacket(b.Context(), "udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := first.LocalAddr().String()
	conns := []net.PacketConn{first}
	for len(conns) < runtime.GOMAXPROCS(0) && canReusePort {
		c, err := lc.ListenPacket(b.Context(), "udp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		started := make(chan struct{})
		srv := &dns.Server{PacketConn: c, Handler: dns.HandlerFunc(fixedHandler), NotifyStartedFunc: func() { close(started) }}
		go srv.ActivateAndServe()
		<-started
		b.Cleanup(func() { srv.Shutdown() })
	}
	return addr
}

func exchangeLoop(b *testing.B, addr string, qs [][]byte) {
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			q := qs[next.Add(1)%uint64(len(qs))]
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(q); err != nil {
				b.Error(err)
				return
			}
			if _, err := conn.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
