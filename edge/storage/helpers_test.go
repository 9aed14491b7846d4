package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
)

// bodyFor is a deterministic body for key, so any reader can check it.
func bodyFor(key string, n int) []byte {
	out := make([]byte, 0, n+32)
	seed := sha256.Sum256([]byte(key))
	for len(out) < n {
		out = append(out, seed[:]...)
		seed = sha256.Sum256(seed[:])
	}
	return out[:n]
}

// response builds a stored response with a body of n bytes.
func response(key string, n int) *Object {
	return &Object{
		Key:          key,
		Status:       200,
		Header:       http.Header{"Content-Type": {"application/octet-stream"}, "Etag": {`"` + key + `"`}},
		Body:         bodyFor(key, n),
		RequestTime:  time.Unix(1_800_000_000, 0).UTC(),
		ResponseTime: time.Unix(1_800_000_001, 0).UTC(),
		Lifetime:     time.Hour,
		HitStatus:    []string{"test; hit"},
	}
}

// testConfig is a small two-tier config: 1 MiB of RAM in 4 shards of
// 256 KiB, and a disk tier in dir.
func testConfig(dir string) Config {
	c := DefaultConfig()
	c.RAMBytes = 1 << 20
	c.Shards = 4
	c.Policy = PolicyLRU // predictable evictions
	c.Disk.Dir = dir
	c.Disk.Bytes = 64 << 20
	c.Disk.MaxObjectBytes = 16 << 20
	c.Disk.CheckpointInterval = configs.Duration(time.Hour)
	return c
}

// logRecorder keeps log records for assertions.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many records contain substr in their message.
func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func open(t testing.TB, cfg Config, opts Options) *Tiered {
	t.Helper()
	tr, err := Open(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// abandon stops t as a crash would: no final checkpoint, no saving of RAM,
// queued writes lost; the directory lock is released.
func (t *Tiered) abandon() {
	t.closeOnce.Do(func() {
		t.pmu.Lock()
		t.closed = true
		clear(t.pending)
		close(t.queue)
		t.drained.Broadcast()
		t.pmu.Unlock()
		t.stopLoops()
		t.wg.Wait()
		t.disk.close()
	})
}

// readBody returns o's body, from memory or from its file.
func readBody(t testing.TB, o *Object) []byte {
	t.Helper()
	if o.Body != nil || !o.HasDiskBody() {
		return o.Body
	}
	f, n, err := o.OpenBody()
	if err != nil {
		t.Fatalf("OpenBody %s: %v", o.Key, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkObject fails unless o is key's response with a body of n bytes.
func checkObject(t testing.TB, o *Object, key string, n int) {
	t.Helper()
	want := response(key, n)
	if o.Key != key || o.Status != 200 || o.Header.Get("Etag") != want.Header.Get("Etag") || !o.ResponseTime.Equal(want.ResponseTime) {
		t.Fatalf("object %q: got %+v", key, o)
	}
	if b := readBody(t, o); !bytes.Equal(b, want.Body) {
		t.Fatalf("object %q: body of %d bytes differs from the %d written", key, len(b), n)
	}
}

// diskFiles lists the object files under dir by id.
func diskFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, objectsDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, d.Name())
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// checkIndexMatchesFiles fails unless the disk index names exactly the
// files on disk and its byte count is their total size within the budget.
func checkIndexMatchesFiles(t testing.TB, tr *Tiered) {
	t.Helper()
	d := tr.disk
	files := diskFiles(t, d.dir)
	d.mu.Lock()
	var ids []string
	var sum int64
	for _, e := range d.index.Values() {
		ids = append(ids, e.id.String())
		sum += e.stamp.size
	}
	used := d.used
	d.mu.Unlock()
	sort.Strings(ids)
	if !slices.Equal(ids, files) {
		t.Fatalf("index has %d entries, dir has %d files; differ", len(ids), len(files))
	}
	var onDisk int64
	for _, f := range files {
		id, _ := parseID(f)
		fi, err := os.Stat(d.path(id))
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	if sum != used || onDisk != used || used > d.budget {
		t.Fatalf("index counts %d bytes (entries sum %d), files hold %d, budget %d", used, sum, onDisk, d.budget)
	}
}
