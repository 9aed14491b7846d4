package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	listenpkg "github.com/vergecdn/verge/edge/listen"
)

// The hardening measurements run "verge" as a real process: its memory is
// its own, signals reach only it, and a binary upgrade can replace it. They
// are long (tens of seconds) and print figures, so ./test.sh runs them in a
// step of their own with VERGE_HARDENING=1; "go test ./..." skips them.
func needHardening(t *testing.T) {
	t.Helper()
	if os.Getenv("VERGE_HARDENING") == "" {
		t.Skip("a hardening measurement: ./test.sh runs it with VERGE_HARDENING=1")
	}
}

// buildVerge builds the binary (without the race detector, like a release)
// into dir and returns its path. ldflags may set main.version.
func buildVerge(t *testing.T, dir, version string) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out := filepath.Join(dir, "verge-"+version)
	cmd := exec.Command(goTool, "build", "-o", out, "-ldflags", "-X main.version="+version, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// proc is a verge process started by a test, with its log. The log is a
// file, shared by the processes a binary upgrade starts (they inherit its
// descriptor), so that no pipe ties their lives to the test's reader.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
	code    int           // exit code, valid after exited
}

// startVerge starts bin with args; its stderr and stdout go to a log file.
// The process is stopped (SIGTERM, then SIGKILL) when the test ends.
func startVerge(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{logPath: filepath.Join(t.TempDir(), "verge.log"), exited: make(chan struct{})}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// log returns what the process (and those it started) logged so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// waitLog waits for a log line matching re and returns its first group.
func (p *proc) waitLog(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := re.FindStringSubmatch(p.log()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
		select {
		case <-p.exited:
			if m := re.FindStringSubmatch(p.log()); m != nil {
				continue
			}
			t.Fatalf("verge exited %d before logging %s:\n%s", p.code, re, p.log())
		case <-deadline:
			t.Fatalf("verge did not log %s within 60s:\n%s", re, p.log())
		case <-tick.C:
		}
	}
}

func (p *proc) addr(t *testing.T, server string) string {
	t.Helper()
	return p.waitLog(t, regexp.MustCompile(`msg=listening server=`+server+` addr=(\S+)`))
}

// rssKiB reads a process's resident set (VmRSS) and its peak (VmHWM).
func rssKiB(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	return rss, peak, sc.Err()
}

// cpuTime reads a process's user+system CPU time from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// tlsFixture is a local CA with a certificate for a.test, in dir.
type tlsFixture struct {
	dir string
	ca  *listenpkg.CA
}

func newTLSFixture(t *testing.T, dir string) *tlsFixture {
	t.Helper()
	ca, err := listenpkg.LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), "verge test CA")
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsFixture{dir: dir, ca: ca}
	f.issue(t)
	return f
}

// issue (re)writes the a.test certificate: a new key and serial each time.
func (f *tlsFixture) issue(t *testing.T) {
	t.Helper()
	if err := f.ca.Issue(filepath.Join(f.dir, "a.test.pem"), filepath.Join(f.dir, "a.test.key"), "a.test"); err != nil {
		t.Fatal(err)
	}
}

// edgeYAML is an edge config for one property, a.test, served over HTTP
// and HTTPS (h1, h2, h3) on ports the kernel picks; extra is appended
// (limits, more properties).
func (f *tlsFixture) edgeYAML(origin, extra string) string {
	return fmt.Sprintf(`node: {name: edge-t}
listen: {http: "127.0.0.1:0", https: "127.0.0.1:0", admin: "127.0.0.1:0"}
properties:
  - name: a
    hosts: [a.test]
    origin: %[1]s
    tls: {cert_file: %[2]s/a.test.pem, key_file: %[2]s/a.test.key}
%[3]s`, origin, f.dir, extra)
}

func writeConfig(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
