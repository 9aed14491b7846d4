package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// ownedFDs returns n descriptors that belong to the test alone (duplicates
// of pipe ends). newHandover wraps the numbers it is given in os.Files, and
// closes them when those are collected: numbers the process uses for
// something else (the runtime's epoll descriptor, say) must never reach it.
func ownedFDs(t *testing.T, n int) []string {
	t.Helper()
	var fds []string
	for range n {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Dup(int(r.Fd()))
		r.Close()
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, strconv.Itoa(fd))
	}
	return fds
}

func TestHandoverEnv(t *testing.T) {
	fd := ownedFDs(t, 4)
	h, err := newHandover(envOf(map[string]string{
		envListenFDs:     "public@127.0.0.1:8080=" + fd[0] + ";https@:8443=" + fd[1] + ";http3@:8443=" + fd[2],
		envReadyFD:       fd[3],
		envUpgradeBinary: "/opt/verge/verge",
		envPIDFile:       "/run/verge.pid",
	}), []string{"verge", "edge", "-config", "e.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range h.files {
			f.Close()
		}
		h.ready.Close()
	}()
	var keys []string
	for k, f := range h.files {
		keys = append(keys, k+"="+f.Name())
	}
	slices.Sort(keys)
	if strings.Join(keys, " ") != "http3@:8443=http3@:8443 https@:8443=https@:8443 public@127.0.0.1:8080=public@127.0.0.1:8080" {
		t.Errorf("files: %v", keys)
	}
	if !h.enabled || !h.startedByUpgrade() || h.binary != "/opt/verge/verge" || h.pidFile != "/run/verge.pid" ||
		strings.Join(h.args, " ") != "edge -config e.yaml" {
		t.Errorf("handover: %+v", h)
	}
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{envListenFDs: "public@:80"}, nil, `bad entry "public@:80"`},
		{map[string]string{envListenFDs: "=3"}, nil, "bad entry"},
		{map[string]string{envListenFDs: "a=2"}, nil, "bad entry"}, // stdin..stderr are never sockets
		{map[string]string{envListenFDs: "a=x"}, nil, "bad entry"},
		{map[string]string{envReadyFD: "-1"}, nil, "bad fd"},
	} {
		if _, err := newHandover(envOf(c.env), c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.env, err, c.want)
		}
	}
	// Only edge, hub and origin upgrade; the demo runs many in one process.
	for args, want := range map[string]bool{"verge edge": true, "verge hub -config h.yaml": true, "verge origin": true,
		"verge demo": false, "verge manage": false, "verge scrubber": false, "verge.test -test.v": false, "verge": false} {
		h, _ := newHandover(envOf(nil), strings.Fields(args))
		if h.enabled != want || h.claim() != want || h.claim() {
			t.Errorf("%q: enabled %v, want %v (and one claim)", args, h.enabled, want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	old := []string{"PATH=/bin", envListenFDs + "=old=3", envReadyFD + "=4", envUpgradeLocks + "=/old", "HOME=/root"}
	got := childEnv(old, []string{"public@:80", "admin@:9080"}, 5, nil)
	want := []string{"PATH=/bin", "HOME=/root", envListenFDs + "=public@:80=3;admin@:9080=4", envReadyFD + "=5"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
	got = childEnv(old, []string{"public@:80"}, 4, []string{"/var/cache/verge", "/var/lib/verge/purges"})
	want = []string{"PATH=/bin", "HOME=/root", envListenFDs + "=public@:80=3", envReadyFD + "=4",
		envUpgradeLocks + "=/var/cache/verge:/var/lib/verge/purges"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv with locks = %q, want %q", got, want)
	}
	if h, _ := newHandover(envOf(map[string]string{envUpgradeLocks: "/var/cache/verge:/var/lib/verge/purges"}), nil); !slices.Equal(h.offered, []string{"/var/cache/verge", "/var/lib/verge/purges"}) {
		t.Errorf("offered %q", h.offered)
	}
}

// TestInheritedSockets hands a TCP and a UDP socket to a handover the way
// a new process receives them and checks that the listeners opened on them
// are the same kernel sockets: a connection made before the hand-over is
// accepted after it.
func TestInheritedSockets(t *testing.T) {
	old, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	oldUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tf, _ := old.(*net.TCPListener).File()
	uf, _ := oldUDP.(*net.UDPConn).File()
	h := &handover{files: map[string]*os.File{"public@127.0.0.1:0": tf, "http3@127.0.0.1:0": uf}}

	early, err := net.Dial("tcp", old.Addr().String()) // queued in the shared backlog
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	old.Close() // the old process stops accepting; the socket stays open

	ln, err := h.listenTCP("public", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.Addr().String() != old.Addr().String() {
		t.Errorf("inherited listener on %s, want %s", ln.Addr(), old.Addr())
	}
	io.WriteString(early, "hello")
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	io.ReadFull(c, b)
	c.Close()
	if string(b) != "hello" {
		t.Errorf("read %q through the inherited socket", b)
	}

	pc, err := h.listenUDP("http3", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if pc.LocalAddr().String() != oldUDP.LocalAddr().String() {
		t.Errorf("inherited UDP socket on %s, want %s", pc.LocalAddr(), oldUDP.LocalAddr())
	}
	oldUDP.Close()

	// Each socket is taken once; a second listener for the key binds anew.
	again, err := h.listenTCP("public", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if again.Addr().String() == ln.Addr().String() {
		t.Error("the inherited socket was handed out twice")
	}
	// A socket the config no longer names is closed.
	_, spare, _ := os.Pipe()
	h.files["gone@:1"] = spare
	h.closeUnclaimed(slog.New(slog.DiscardHandler))
	if _, err := spare.Write([]byte("x")); err == nil {
		t.Error("unclaimed inherited file still open")
	}
}

// startTestServers opens an admin server (healthy when healthy is set) and
// a public one on loopback.
func startTestServers(t *testing.T, healthy *atomic.Bool) []server {
	t.Helper()
	h := &handover{files: map[string]*os.File{}}
	log := slog.New(slog.DiscardHandler)
	health := func() error {
		if !healthy.Load() {
			return errNotReadyForTest
		}
		return nil
	}
	var servers []server
	for _, name := range []string{"public", "admin"} {
		ln, err := h.listenTCP(name, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		handler := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		if name == "admin" {
			handler = adminMux(prometheus.NewRegistry(), health, nil)
		}
		servers = append(servers, server{name: name, ln: ln, key: socketKey(name, "127.0.0.1:0"), tcp: ln.(*net.TCPListener),
			srv: &http.Server{Handler: handler, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}})
	}
	return servers
}

var errNotReadyForTest = &net.AddrError{Err: "not ready", Addr: "test"}

// TestNewProcessServesOnlyWhenHealthy runs serveWith as a process started
// by an upgrade: it serves the admin listener at once, the public one only
// once /healthz says 200, and then reports ready to the old process.
func TestNewProcessServesOnlyWhenHealthy(t *testing.T) {
	var healthy atomic.Bool
	servers := startTestServers(t, &healthy)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid := filepath.Join(t.TempDir(), "verge.pid")
	ho := &handover{files: map[string]*os.File{}, ready: w, enabled: true, pidFile: pid}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveWith(ctx, log, 5*time.Second, ho, nil, servers...) }()

	waitLog(t, logs, regexp.MustCompile(`msg=listening server=(admin)`), nil)
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		lines <- line
	}()
	// Not healthy: the public listener is not served and nothing is said.
	res, err := http.Get("http://" + servers[1].ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || strings.Contains(logs.String(), "server=public") {
		t.Fatalf("before health: /healthz %d, log:\n%s", res.StatusCode, logs.String())
	}
	select {
	case l := <-lines:
		t.Fatalf("reported %q before it was healthy", l)
	default:
	}
	healthy.Store(true)
	if l := <-lines; l != "ready\n" {
		t.Fatalf("reported %q", l)
	}
	waitLog(t, logs, regexp.MustCompile(`msg=listening server=(public)`), nil)
	res, err = http.Get("http://" + servers[0].ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "public" {
		t.Errorf("public answered %q", b)
	}
	if b, _ := os.ReadFile(pid); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file holds %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Errorf("pid file left after a clean exit: %v", err)
	}
}

// TestFailedUpgradeKeepsServing: the new binary exits at once (/bin/false
// here); the running process logs why and serves on.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	bin := "/bin/false"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no %s: %v", bin, err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	servers := startTestServers(t, &healthy)
	ho := &handover{files: map[string]*os.File{}, enabled: true, binary: bin, args: []string{"edge"}}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	trigger := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- serveWith(ctx, log, 5*time.Second, ho, trigger, servers...) }()
	waitLog(t, logs, regexp.MustCompile(`msg=listening server=(public)`), nil)
	trigger <- syscall.SIGUSR2
	waitLog(t, logs, regexp.MustCompile(`msg="upgrade failed; still serving" err="upgrade: new process \d+ (exited before it was ready)`), nil)
	res, err := http.Get("http://" + servers[0].ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("not serving after a failed upgrade: %v", err)
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// openLocked asks the old process for a directory only when that process
// offered it, asks once, and retries until the lock is free.
func TestOpenLocked(t *testing.T) {
	errBusy := errors.New("locked")
	locked := func(err error) bool { return errors.Is(err, errBusy) }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()

	// Not started by an upgrade: the error as it is, at once.
	h, _ := newHandover(envOf(nil), nil)
	if err := h.openLocked(context.Background(), dir, locked, func() error { return errBusy }, log); !errors.Is(err, errBusy) {
		t.Fatalf("plain start: %v", err)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h, _ = newHandover(envOf(map[string]string{envUpgradeLocks: dir}), nil)
	h.ready = w
	defer w.Close()
	// Someone else's directory: nothing is asked.
	if err := h.openLocked(context.Background(), filepath.Join(dir, "other"), locked, func() error { return errBusy }, log); !errors.Is(err, errBusy) || h.asked {
		t.Fatalf("a directory not offered: %v (asked %v)", err, h.asked)
	}
	// The old process's directory: asked for once, opened when free.
	tries := 0
	open := func() error {
		if tries++; tries < 4 {
			return errBusy
		}
		return nil
	}
	if err := h.openLocked(context.Background(), dir, locked, open, log); err != nil || tries != 4 {
		t.Fatalf("offered directory: %v after %d tries", err, tries)
	}
	tries = 0
	if err := h.openLocked(context.Background(), dir+"/", locked, open, log); err != nil {
		t.Fatalf("second directory: %v", err)
	}
	w.Close()
	said, _ := io.ReadAll(r)
	if string(said) != "release\n" {
		t.Errorf("the old process was told %q, want one release", said)
	}
	// Another error than the lock is returned at once.
	if err := h.openLocked(context.Background(), dir, locked, func() error { return io.ErrUnexpectedEOF }, log); err != io.ErrUnexpectedEOF {
		t.Errorf("other error: %v", err)
	}
}
