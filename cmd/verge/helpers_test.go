package main

import (
	"bytes"
	"regexp"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a running command's logger and
// the test reading it.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitLog returns the first submatch of re in the command's log, waiting
// for it to appear (or failing when the command exits first).
func waitLog(t *testing.T, logs *lockedBuffer, re *regexp.Regexp, exited <-chan int) string {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-exited:
			t.Fatalf("exited %d early:\n%s", code, logs.String())
		case <-deadline:
			t.Fatalf("no %q in the log after 30s:\n%s", re, logs.String())
		case <-tick.C:
		}
	}
}

// waitListening returns the address a server logged for its listener name.
func waitListening(t *testing.T, logs *lockedBuffer, name string, exited <-chan int) string {
	t.Helper()
	return waitLog(t, logs, regexp.MustCompile(`msg=listening server=`+name+` addr=(\S+)`), exited)
}
