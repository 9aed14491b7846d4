package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go/http3"
)

// server is one HTTP server on one listener: a TCP one (TLS when
// srv.TLSConfig is set), or HTTP/3 on a UDP socket when h3 is set.
type server struct {
	name string // "public", "admin", ... for logs
	srv  *http.Server
	ln   net.Listener
	h3   *http3.Server
	pc   net.PacketConn
	// key names the socket for a binary upgrade (see upgrade.go); tcp is
	// the listening socket under ln, which wrappers may hide.
	key string
	tcp *net.TCPListener
	// fresh counts the connections accepted whose first request has not
	// been read yet (TCP servers).
	fresh *freshConns
}

// freshConns tracks, through http.Server.ConnState, the connections still
// in StateNew. http.Server.Shutdown closes such a connection without an
// answer if the request arrives after the shutdown began, so a drain
// first stops accepting and lets them read their request.
type freshConns struct {
	conns sync.Map // net.Conn -> struct{}
	n     atomic.Int64
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	if st == http.StateNew {
		f.conns.Store(c, struct{}{})
		f.n.Add(1)
		return
	}
	if _, ok := f.conns.LoadAndDelete(c); ok {
		f.n.Add(-1)
	}
}

// freshGrace bounds the wait for fresh connections' first requests (a
// client that connected without sending anything may never send).
const freshGrace = time.Second

func (s server) addr() string {
	if s.h3 != nil {
		return s.pc.LocalAddr().String()
	}
	return s.ln.Addr().String()
}

func (s server) serve() error {
	switch {
	case s.h3 != nil:
		return s.h3.Serve(s.pc)
	case s.srv.TLSConfig != nil:
		return s.srv.ServeTLS(s.ln, "", "")
	}
	return s.srv.Serve(s.ln)
}

func (s server) shutdown(ctx context.Context) error {
	if s.h3 != nil {
		err := s.h3.Shutdown(ctx)
		s.pc.Close()
		return err
	}
	return s.srv.Shutdown(ctx)
}

func (s server) close() {
	if s.h3 != nil {
		s.h3.Close()
		s.pc.Close()
		return
	}
	s.srv.Close()
}

// listen opens addr and pairs it with h. Every server gets bounded header
// reads so a slow client cannot hold a connection open forever.
// The socket is the one inherited from the process this one replaces in a
// binary upgrade, when there is one for name and addr.
func listen(name, addr string, h http.Handler, log *slog.Logger) (server, error) {
	ln, err := processHandover().listenTCP(name, addr)
	if err != nil {
		return server{}, fmt.Errorf("%s listener: %w", name, err)
	}
	tcp, _ := ln.(*net.TCPListener)
	fresh := &freshConns{}
	return server{name: name, ln: ln, key: socketKey(name, addr), tcp: tcp, fresh: fresh, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         fresh.track,
	}}, nil
}

// listenH3 opens the UDP socket for an HTTP/3 server on addr (inherited in
// a binary upgrade, like listen's).
func listenH3(name, addr string, h3 *http3.Server) (server, error) {
	pc, err := processHandover().listenUDP(name, addr)
	if err != nil {
		return server{}, fmt.Errorf("%s listener: %w", name, err)
	}
	return server{name: name, h3: h3, pc: pc, key: socketKey(name, addr)}, nil
}

// serveAll serves every server until ctx is done or one fails, then shuts all
// of them down, draining in-flight requests for up to drain. In "verge edge",
// "hub" and "origin" it also runs binary upgrades on SIGUSR2 (upgrade.go):
// once the new process serves, this one drains and returns nil.
func serveAll(ctx context.Context, log *slog.Logger, drain time.Duration, servers ...server) error {
	ho := processHandover()
	if !ho.claim() {
		return serveWith(ctx, log, drain, nil, nil, servers...)
	}
	return serveWith(ctx, log, drain, ho, ho.usr2, servers...)
}

// serveWith is serveAll with the process's handover (nil: no upgrades)
// and the upgrade trigger.
func serveWith(ctx context.Context, log *slog.Logger, drain time.Duration, ho *handover, trigger <-chan os.Signal, servers ...server) error {
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	start := func(s server) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("listening", "server", s.name, "addr", s.addr())
			if err := s.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("%s server: %w", s.name, err)
			}
		}()
	}
	var err error
	if ho != nil && ho.startedByUpgrade() {
		// The old process serves meanwhile: the admin listener first, the
		// public ones once healthy, then the old process may go.
		for _, s := range servers {
			if s.name == "admin" {
				start(s)
			}
		}
		if err = waitAdminHealthy(ctx, servers); err == nil {
			for _, s := range servers {
				if s.name != "admin" {
					start(s)
				}
			}
			ho.closeUnclaimed(log)
			if perr := ho.writePID(); perr != nil {
				log.Warn("pid file", "err", perr)
			}
			if err = ho.reportReady(); err == nil {
				log.Info("upgrade: serving; the old process drains", "pid", os.Getpid())
			}
		}
	} else {
		for _, s := range servers {
			start(s)
		}
		if ho != nil {
			if perr := ho.writePID(); perr != nil {
				log.Warn("pid file", "err", perr)
			}
		}
	}
	// drainAll stops accepting and waits up to drain for what is in flight:
	// first for the requests of connections just accepted (at most
	// freshGrace), then for every response.
	drainAll := sync.OnceFunc(func() {
		sctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		for _, s := range servers {
			if s.fresh != nil {
				s.ln.Close() // Serve returns; its connections go on
			}
		}
		graceEnd := time.Now().Add(min(freshGrace, drain))
		for _, s := range servers {
			for s.fresh != nil && s.fresh.n.Load() > 0 && time.Now().Before(graceEnd) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		var swg sync.WaitGroup
		for _, s := range servers {
			swg.Add(1)
			go func() {
				defer swg.Done()
				if serr := s.shutdown(sctx); serr != nil {
					log.Warn("shutdown incomplete", "server", s.name, "err", serr)
					s.close()
				}
			}()
		}
		swg.Wait()
		wg.Wait()
	})
	upgraded := false
wait:
	for err == nil {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "drain", drain)
			break wait
		case err = <-errc:
			log.Error("server failed", "err", err)
		case <-trigger:
			uerr := ho.upgrade(ctx, servers, drainAll, log)
			if errors.Is(uerr, errReleased) {
				log.Error("upgrade failed after this process released its cache; exiting for the supervisor to restart the node", "err", uerr)
				err = uerr
				break wait
			}
			if uerr != nil {
				log.Error("upgrade failed; still serving", "err", uerr)
				continue
			}
			upgraded = true
			break wait
		}
	}
	drainAll()
	switch {
	case upgraded:
		log.Info("upgrade: drained; exiting", "pid", os.Getpid())
	case ho != nil:
		ho.removePID()
	}
	return err
}

// newRegistry returns a Prometheus registry with the Go runtime and process
// collectors; each component registers its own metrics into it.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// adminMux serves /healthz (200 "ok" when healthy returns nil, else 503 with
// the reason) and /metrics; extra, when not nil, serves every other path.
func adminMux(reg *prometheus.Registry, healthy func() error, extra http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if healthy != nil {
			if err := healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if extra != nil {
		mux.Handle("/", extra)
	}
	return mux
}
