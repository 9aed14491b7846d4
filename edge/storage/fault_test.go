package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func slogFor(h slog.Handler) *slog.Logger { return slog.New(h) }

// metricValue returns the value of the series name{labels} ("k=v" pairs).
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// faultyFS is the real file system with switchable faults.
type faultyFS struct {
	osFS
	mu        sync.Mutex
	createErr error         // Create fails
	writeErr  error         // writes to created files fail
	renameErr error         // Rename fails
	openErr   error         // Open fails
	block     chan struct{} // Create waits for it to close
	blocked   chan struct{} // closed once Create is waiting
}

func (f *faultyFS) set(fn func(f *faultyFS)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *faultyFS) waitBlocked() {
	f.mu.Lock()
	if f.blocked == nil {
		f.blocked = make(chan struct{})
	}
	ch := f.blocked
	f.mu.Unlock()
	<-ch
}

func (f *faultyFS) Create(name string) (writeFile, error) {
	f.mu.Lock()
	block, err := f.block, f.createErr
	if block != nil {
		if f.blocked == nil {
			f.blocked = make(chan struct{})
		}
		select {
		case <-f.blocked:
		default:
			close(f.blocked)
		}
	}
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	w, err := f.osFS.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultyFile{writeFile: w, fs: f}, nil
}

func (f *faultyFS) Rename(from, to string) error {
	f.mu.Lock()
	err := f.renameErr
	f.mu.Unlock()
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return f.osFS.Rename(from, to)
}

func (f *faultyFS) Open(name string) (*os.File, error) {
	f.mu.Lock()
	err := f.openErr
	f.mu.Unlock()
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return f.osFS.Open(name)
}

type faultyFile struct {
	writeFile
	fs *faultyFS
}

func (w *faultyFile) err() error {
	w.fs.mu.Lock()
	defer w.fs.mu.Unlock()
	return w.fs.writeErr
}

func (w *faultyFile) Write(p []byte) (int, error) {
	if err := w.err(); err != nil {
		return 0, err
	}
	return w.writeFile.Write(p)
}

func (w *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := w.err(); err != nil {
		return 0, err
	}
	return w.writeFile.WriteAt(p, off)
}

// A full, read-only or failing disk costs disk hits, never a request: Put
// and Get keep working from RAM, the failure is counted, logged once, and
// writes pause; when the disk heals, writes resume.
func TestDiskFaultsKeepServing(t *testing.T) {
	faults := []struct {
		name string
		set  func(f *faultyFS)
	}{
		{"full", func(f *faultyFS) { f.writeErr = syscall.ENOSPC }},
		{"read-only", func(f *faultyFS) { f.createErr = syscall.EROFS; f.renameErr = syscall.EROFS }},
		{"failing", func(f *faultyFS) { f.writeErr = syscall.EIO; f.openErr = syscall.EIO }},
	}
	for _, fault := range faults {
		t.Run(fault.name, func(t *testing.T) {
			fs := &faultyFS{}
			clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
			logs := &logRecorder{}
			tr := open(t, testConfig(t.TempDir()), Options{fs: fs, Now: clock.Now, Logger: slogFor(logs)})
			reg := prometheus.NewRegistry()
			tr.Register(reg)
			before := fill(t, tr, "ok", 100) // some of these reach the disk
			fs.set(fault.set)
			for round := range 3 {
				keys := fill(t, tr, fmt.Sprintf("bad%d-", round), 100)
				big := response(fmt.Sprint("big", round), 600<<10)
				tr.Put(big)
				tr.Flush()
				// the most recent objects are served from RAM
				for _, k := range keys[90:] {
					o, ok := tr.Get(k)
					if !ok {
						t.Fatalf("%s: recent object lost with a %s disk", k, fault.name)
					}
					checkObject(t, o, k, objSize)
				}
				// disk reads may fail: a miss, never a wrong object
				for _, k := range before {
					if o, ok := tr.Get(k); ok {
						checkObject(t, o, k, objSize)
					}
				}
				if _, err := tr.Create(response("stream", 1)); err == nil {
					t.Fatal("Create succeeded on a failing disk")
				}
				clock.Advance(time.Second)
			}
			if n := logs.count("disk tier failing"); n != 1 {
				t.Errorf("logged the failure %d times, want once", n)
			}
			if metricValue(t, reg, "verge_storage_disk_up") != 0 {
				t.Error("disk_up still 1")
			}
			var errs float64
			for _, op := range opNames {
				errs += metricValue(t, reg, "verge_storage_disk_errors_total", "op="+op)
			}
			if errs == 0 {
				t.Error("no disk errors counted")
			}
			if metricValue(t, reg, "verge_storage_spills_dropped_total") == 0 {
				t.Error("no dropped spills counted")
			}
			// the disk heals: after the pause, writes go through again
			fs.set(func(f *faultyFS) { f.createErr, f.writeErr, f.renameErr, f.openErr = nil, nil, nil, nil })
			clock.Advance(writeBackoff)
			tr.Put(response("healed", 600<<10))
			tr.Flush()
			if !tr.disk.contains("healed") {
				t.Fatal("writes did not resume after the disk healed")
			}
			if metricValue(t, reg, "verge_storage_disk_up") != 1 || logs.count("disk tier recovered") != 1 {
				t.Error("recovery not reported")
			}
			checkIndexMatchesFiles(t, tr)
		})
	}
}

// A disk that cannot even be prepared leaves the node on RAM.
func TestUnusableDiskAtStart(t *testing.T) {
	fs := &faultyFS{createErr: syscall.EROFS}
	logs := &logRecorder{}
	tr, err := Open(t.Context(), testConfig(t.TempDir()), Options{fs: fs, Logger: slogFor(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.HasDisk() || logs.count("running on RAM only") != 1 {
		t.Fatal("expected a RAM-only node and one log line")
	}
	tr.Put(response("a", 100))
	if _, ok := tr.Get("a"); !ok {
		t.Fatal("RAM does not serve")
	}
	if _, err := tr.Create(response("b", 1)); !errors.Is(err, ErrNoDisk) {
		t.Fatal(err)
	}
}
