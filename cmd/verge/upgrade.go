package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary upgrade without downtime, as nginx and Envoy do it: on SIGUSR2 a
// running "verge edge", "verge hub" or "verge origin" starts the new binary
// (VERGE_UPGRADE_BINARY, else its own executable path, which a package
// upgrade has replaced) with the same arguments and its listening sockets
// as inherited file descriptors. The new process opens the same listeners
// on those sockets instead of binding, serves its admin listener, waits
// until its /healthz answers 200 (a node catching up on purges is not
// ready), then serves the public listeners and reports ready through a
// pipe. The old process then stops accepting, drains what is in flight
// and exits 0. Both processes accept from the same kernel sockets during
// the hand-over, so no connection is refused.
//
// If the new process fails (it exits, or is not ready within a minute),
// the old one kills it and keeps serving. With VERGE_PID_FILE set, each
// process writes its PID there once it serves (supervisors follow it).
//
// A cache directory or purge log is locked by the process using it. When
// the new process finds one of the old process's locked (the old process
// lists them in VERGE_UPGRADE_LOCKS), it asks for them through the pipe
// ("release"): the old process stops accepting, drains, closes its cache
// (checkpointing the disk index) and its purge log, and the new one opens
// them warm. Connections wait in the kernel's accept queue meanwhile; none
// is refused. From there the old process cannot serve again: if the new
// one fails, the old one exits 1 for the supervisor to restart the node.
//
// HTTP/3: the UDP socket is handed over too, but QUIC connections live in
// the process that made them; while both processes read the socket, each
// gets some of the other's packets, and the old process's connections end
// when it exits.
const (
	envListenFDs     = "VERGE_LISTEN_FDS"     // "key=fd;key=fd": inherited listening sockets
	envReadyFD       = "VERGE_READY_FD"       // pipe to the old process
	envUpgradeBinary = "VERGE_UPGRADE_BINARY" // binary to start on SIGUSR2
	envPIDFile       = "VERGE_PID_FILE"       // where the serving process writes its PID
	envUpgradeLocks  = "VERGE_UPGRADE_LOCKS"  // directories the old process releases on request

	upgradeWait = time.Minute // how long the new process has to be ready
)

// upgradeCommands are the subcommands that hand over to a new binary on
// SIGUSR2. Management (its database) and the scrubber are not among them.
var upgradeCommands = map[string]bool{"edge": true, "hub": true, "origin": true}

// handover is a process's part in binary upgrades: the sockets it
// inherited (taken by listen as it opens its listeners) and, when it was
// started by an upgrade, the pipe to report readiness on.
type handover struct {
	mu    sync.Mutex
	files map[string]*os.File // inherited sockets by key, until taken
	ready *os.File            // readiness pipe; nil unless started by an upgrade

	enabled bool     // this process's command upgrades on SIGUSR2
	args    []string // the command line to start the new binary with
	binary  string   // VERGE_UPGRADE_BINARY
	pidFile string
	claimed bool           // one serveAll per process runs the upgrades
	usr2    chan os.Signal // SIGUSR2, for the process's handover

	// The old process's side of locked directories: what it holds, and
	// how it lets go of them.
	locks   []string
	release func()
	// The new process's side: the directories the old one offered, and
	// whether this process has asked for them.
	offered []string
	asked   bool
}

var (
	processOnce sync.Once
	processHO   *handover
)

// processHandover is this process's handover, read once from its
// environment and arguments. A process has one set of inherited sockets and
// one command line, so this is the one piece of process-wide state here;
// tests build their own with newHandover.
func processHandover() *handover {
	processOnce.Do(func() {
		h, err := newHandover(os.Getenv, os.Args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "verge: ignoring inherited sockets: %v\n", err)
		}
		if h.enabled {
			// From the first listener on, a SIGUSR2 waits for serveAll
			// instead of ending the process (its default action).
			h.usr2 = make(chan os.Signal, 1)
			signal.Notify(h.usr2, syscall.SIGUSR2)
		}
		processHO = h
	})
	return processHO
}

// newHandover reads the inherited sockets and the readiness pipe from env.
// On a malformed variable it returns what it could read and the error.
func newHandover(getenv func(string) string, args []string) (*handover, error) {
	h := &handover{files: map[string]*os.File{}, binary: getenv(envUpgradeBinary), pidFile: getenv(envPIDFile),
		offered: filepath.SplitList(getenv(envUpgradeLocks))}
	if len(args) > 1 && upgradeCommands[args[1]] {
		h.enabled, h.args = true, args[1:]
	}
	var errs []error
	if v := getenv(envListenFDs); v != "" {
		for _, item := range strings.Split(v, ";") {
			key, fdText, ok := strings.Cut(item, "=")
			fd, err := strconv.Atoi(fdText)
			if !ok || key == "" || err != nil || fd < 3 {
				errs = append(errs, fmt.Errorf("%s: bad entry %q", envListenFDs, item))
				continue
			}
			h.files[key] = os.NewFile(uintptr(fd), key)
		}
	}
	if v := getenv(envReadyFD); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			errs = append(errs, fmt.Errorf("%s: bad fd %q", envReadyFD, v))
		} else {
			h.ready = os.NewFile(uintptr(fd), "upgrade-ready")
		}
	}
	return h, errors.Join(errs...)
}

// socketKey names a listening socket across processes: the listener's name
// and the address it was configured with (before any port was picked).
func socketKey(name, addr string) string { return name + "@" + addr }

// take returns the inherited socket for key, once.
func (h *handover) take(key string) *os.File {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.files[key]
	delete(h.files, key)
	return f
}

// listenTCP opens a TCP listener for addr, on the inherited socket when
// there is one for this name and address.
func (h *handover) listenTCP(name, addr string) (net.Listener, error) {
	if f := h.take(socketKey(name, addr)); f != nil {
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("inherited socket %s: %w", socketKey(name, addr), err)
		}
		return ln, nil
	}
	return net.Listen("tcp", addr)
}

// listenUDP opens a UDP socket for addr, inherited when there is one.
func (h *handover) listenUDP(name, addr string) (net.PacketConn, error) {
	if f := h.take(socketKey(name, addr)); f != nil {
		defer f.Close()
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, fmt.Errorf("inherited socket %s: %w", socketKey(name, addr), err)
		}
		return pc, nil
	}
	return net.ListenPacket("udp", addr)
}

// closeUnclaimed closes inherited sockets no listener took (the config no
// longer has them).
func (h *handover) closeUnclaimed(log *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, f := range h.files {
		log.Warn("upgrade: inherited socket not in the config; closed", "socket", key)
		f.Close()
		delete(h.files, key)
	}
}

// claim makes the caller (the first serveAll) the one that runs upgrades;
// false for every later caller and when the command does not upgrade.
func (h *handover) claim() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.enabled || h.claimed {
		return false
	}
	h.claimed = true
	return true
}

// file returns a duplicate of a server's listening socket, to hand over.
// It dups the descriptor itself: (*net.TCPListener).File returns a File
// whose Fd, which os/exec calls, switches the shared socket to blocking
// mode, and this process's own Accept would then block in the kernel where
// closing the listener cannot wake it.
func (s server) file() (*os.File, error) {
	var sc syscall.Conn
	switch {
	case s.h3 != nil:
		uc, ok := s.pc.(*net.UDPConn)
		if !ok {
			return nil, fmt.Errorf("%s: socket cannot be handed over", s.name)
		}
		sc = uc
	case s.tcp != nil:
		sc = s.tcp
	default:
		return nil, fmt.Errorf("%s: socket cannot be handed over", s.name)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			derr = errno
			return
		}
		dup = int(r)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("%s: dup: %w", s.name, derr)
	}
	return os.NewFile(uintptr(dup), s.key), nil
}

// errReleased marks an upgrade that failed after this process let go of
// its cache: it cannot serve on.
var errReleased = errors.New("this process released its cache and purge log")

// holdLocks records, in a process that upgrades, the directories it holds
// locked and how to let go of them (close the cache and the purge log), for
// a new process that asks.
func (h *handover) holdLocks(dirs []string, release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.locks = h.locks[:0]
	for _, d := range dirs {
		if abs, err := filepath.Abs(d); err == nil {
			h.locks = append(h.locks, abs)
		}
	}
	h.release = release
}

// openLocked runs open, which takes dir's lock. In a process started by an
// upgrade, when the old process holds dir (it offered it), this one asks
// for it once and retries open until the old process has let go, open
// fails otherwise, or upgradeWait passes.
func (h *handover) openLocked(ctx context.Context, dir string, locked func(error) bool, open func() error, log *slog.Logger) error {
	err := open()
	if err == nil || !locked(err) || !h.startedByUpgrade() {
		return err
	}
	abs, aerr := filepath.Abs(dir)
	if aerr != nil || !slices.Contains(h.offered, abs) {
		return err // someone else's lock: nothing to ask for
	}
	h.mu.Lock()
	if !h.asked {
		h.asked = true
		if _, werr := h.ready.WriteString("release\n"); werr != nil {
			h.mu.Unlock()
			return fmt.Errorf("%w (asking the old process to release it: %v)", err, werr)
		}
		log.Info("upgrade: asked the old process to release its cache and purge log", "dir", abs)
	}
	h.mu.Unlock()
	deadline := time.Now().Add(upgradeWait)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if err = open(); err == nil || !locked(err) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (the old process did not release it within %v)", err, upgradeWait)
		}
	}
}

// upgrade starts the new binary with servers' sockets and waits until it
// reports ready (nil: the caller stops serving and exits), it fails, the
// wait times out or ctx ends (an error: the caller keeps serving). When
// the new process asks for the locked directories, drain stops this
// process's servers and the release hook lets go of them; a failure after
// that is errReleased.
func (h *handover) upgrade(ctx context.Context, servers []server, drain func(), log *slog.Logger) error {
	var keys []string
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, s := range servers {
		f, err := s.file()
		if err != nil {
			return err
		}
		keys = append(keys, s.key)
		files = append(files, f)
	}
	bin := h.binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("finding the binary: %w", err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(bin, h.args...)
	h.mu.Lock()
	locks, release := h.locks, h.release
	h.mu.Unlock()
	cmd.Env = childEnv(os.Environ(), keys, len(files)+3, locks)
	cmd.ExtraFiles = append(files, w)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	log.Info("upgrade: new process started", "binary", bin, "pid", cmd.Process.Pid, "sockets", len(files))
	// The new process writes "release" (at most once) and then "ready".
	asks, ready := make(chan struct{}, 1), make(chan error, 1)
	go func() {
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			switch {
			case line == "release\n":
				select {
				case asks <- struct{}{}:
				default: // asked already
				}
				continue
			case line == "ready\n":
				ready <- nil
				return
			case err == nil:
				err = fmt.Errorf("said %q", line)
			}
			ready <- fmt.Errorf("exited before it was ready (%v)", err)
			return
		}
	}()
	timer := time.NewTimer(upgradeWait)
	defer timer.Stop()
	released := false
wait:
	for {
		select {
		case <-asks:
			if release == nil {
				continue // nothing held: the new process finds its lock elsewhere
			}
			log.Info("upgrade: the new process asks for the cache and purge log; draining and releasing them", "pid", cmd.Process.Pid)
			drain()
			release()
			released = true
			log.Info("upgrade: released; connections wait for the new process", "pid", cmd.Process.Pid)
		case err = <-ready:
			break wait
		case <-timer.C:
			err = fmt.Errorf("not ready within %v", upgradeWait)
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		}
	}
	if err != nil {
		cmd.Process.Kill() // the process this one started, by its PID
		go func() {
			cmd.Wait()
			log.Warn("upgrade: new process ended", "pid", cmd.Process.Pid, "status", cmd.ProcessState.String())
		}()
		err = fmt.Errorf("upgrade: new process %d %w", cmd.Process.Pid, err)
		if released {
			err = errors.Join(errReleased, err)
		}
		return err
	}
	log.Info("upgrade: new process is serving; draining", "pid", cmd.Process.Pid)
	cmd.Process.Release() // it outlives this process
	return nil
}

// childEnv is env without the previous hand-over's variables, plus this
// one's: the sockets at fds 3, 4, ..., the readiness pipe at readyFD and
// the locked directories this process would release.
func childEnv(env []string, keys []string, readyFD int, locks []string) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		if strings.HasPrefix(kv, envListenFDs+"=") || strings.HasPrefix(kv, envReadyFD+"=") || strings.HasPrefix(kv, envUpgradeLocks+"=") {
			continue
		}
		out = append(out, kv)
	}
	items := make([]string, len(keys))
	for i, k := range keys {
		items[i] = k + "=" + strconv.Itoa(3+i)
	}
	out = append(out, envListenFDs+"="+strings.Join(items, ";"), envReadyFD+"="+strconv.Itoa(readyFD))
	if len(locks) > 0 {
		out = append(out, envUpgradeLocks+"="+strings.Join(locks, string(filepath.ListSeparator)))
	}
	return out
}

// startedByUpgrade reports whether an old process waits for this one.
func (h *handover) startedByUpgrade() bool { return h.ready != nil }

// reportReady tells the old process to stop; this process serves alone.
func (h *handover) reportReady() error {
	_, err := h.ready.WriteString("ready\n")
	h.ready.Close()
	return err
}

// waitAdminHealthy polls the admin server's /healthz in this process (over the
// network the old process could answer) until it says 200.
func waitAdminHealthy(ctx context.Context, servers []server) error {
	var admin http.Handler
	for _, s := range servers {
		if s.name == "admin" && s.srv != nil {
			admin = s.srv.Handler
		}
	}
	if admin == nil {
		return nil
	}
	deadline := time.Now().Add(upgradeWait)
	for {
		w := &statusWriter{h: http.Header{}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/healthz", nil)
		admin.ServeHTTP(w, req)
		if w.code == http.StatusOK || w.code == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("upgrade: /healthz still %d after %v", w.code, upgradeWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// statusWriter is a ResponseWriter that keeps only the status.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header { return w.h }
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(b), nil
}
func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// writePID writes this process's PID to the pid file, atomically.
func (h *handover) writePID() error {
	if h.pidFile == "" {
		return nil
	}
	tmp := h.pidFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, h.pidFile)
}

// removePID removes the pid file if it still names this process.
func (h *handover) removePID() {
	if h.pidFile == "" {
		return
	}
	if b, err := os.ReadFile(h.pidFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(h.pidFile)
	}
}
