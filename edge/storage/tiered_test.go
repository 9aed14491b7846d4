package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const objSize = 20 << 10

// fill puts n objects of objSize under keys prefix0..; with 1 MiB of RAM,
// most of 200 end up on disk.
func fill(t testing.TB, tr *Tiered, prefix string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%d", prefix, i)
		tr.Put(response(keys[i], objSize))
	}
	tr.Flush()
	return keys
}

func TestSpillHitPromote(t *testing.T) {
	dir := t.TempDir()
	tr := open(t, testConfig(dir), Options{})
	keys := fill(t, tr, "k", 200)
	st := tr.TierStats()
	if st["disk"].Objects == 0 || st["ram"].Objects+st["disk"].Objects < 200 {
		t.Fatalf("after 200 puts: %+v", st)
	}
	if st["ram"].Bytes > int64(tr.cfg.RAMBytes) {
		t.Fatalf("RAM over budget: %+v", st["ram"])
	}
	// the first key was evicted from RAM long ago
	if _, ok := tr.RAM().Peek(keys[0]); ok {
		t.Fatal("k0 still in RAM")
	}
	o, ok := tr.Get(keys[0])
	if !ok {
		t.Fatal("k0 not found on disk")
	}
	if o.Body != nil || !o.HasDiskBody() || o.BodyLen() != objSize {
		t.Fatalf("disk hit: Body nil=%v disk=%v len=%d", o.Body == nil, o.HasDiskBody(), o.BodyLen())
	}
	f, n, err := o.OpenBody()
	if err != nil {
		t.Fatal(err)
	}
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != 0 || n != objSize {
		t.Fatalf("OpenBody at offset %d, length %d", pos, n)
	}
	f.Close()
	checkObject(t, o, keys[0], objSize)
	// the second disk hit promotes it
	p, ok := tr.Get(keys[0])
	if !ok || p.Body == nil {
		t.Fatal("second hit not promoted")
	}
	checkObject(t, p, keys[0], objSize)
	if r, ok := tr.RAM().Peek(keys[0]); !ok || r != p {
		t.Fatal("promoted object not in RAM")
	}
	if tr.promotions.Load() != 1 {
		t.Fatalf("promotions = %d", tr.promotions.Load())
	}
	// still on disk: evicting it from RAM again writes nothing
	tr.Flush() // the promotion evicted others; let their spills land
	spills := tr.spills.Load()
	tr.RAM().Delete(keys[0])
	tr.spillAll([]entry{{o: p}})
	tr.Flush()
	if tr.spills.Load() != spills {
		t.Fatal("a promoted object was written again")
	}
	checkIndexMatchesFiles(t, tr)
}

func TestTooLargeForRAMGoesToDisk(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	big := response("big", 600<<10) // shards hold 256 KiB
	if !tr.Put(big) {
		t.Fatal("Put of a large object refused")
	}
	tr.Flush()
	if _, ok := tr.RAM().Peek("big"); ok {
		t.Fatal("large object in RAM")
	}
	for range 3 {
		o, ok := tr.Get("big")
		if !ok || o.Body != nil {
			t.Fatalf("large object: ok=%v, in memory=%v", ok, ok && o.Body != nil)
		}
		checkObject(t, o, "big", 600<<10)
	}
}

func TestOpenBodyAfterReplaceOrDelete(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	tr.Put(response("big", 600<<10))
	tr.Flush()
	o, _ := tr.Get("big")
	tr.Put(response("big", 700<<10)) // replaced
	tr.Flush()
	if _, _, err := o.OpenBody(); !errors.Is(err, ErrGone) {
		t.Fatalf("OpenBody of a replaced file: %v, want ErrGone", err)
	}
	o2, _ := tr.Get("big")
	checkObject(t, o2, "big", 700<<10)
	tr.Delete("big")
	if _, _, err := o2.OpenBody(); !errors.Is(err, ErrGone) {
		t.Fatalf("OpenBody of a deleted file: %v, want ErrGone", err)
	}
	if _, _, err := response("x", 1).OpenBody(); !errors.Is(err, ErrNoDiskBody) {
		t.Fatalf("OpenBody of a RAM object: %v", err)
	}
}

func TestDeleteAndPurgeBothTiers(t *testing.T) {
	dir := t.TempDir()
	tr := open(t, testConfig(dir), Options{})
	keys := fill(t, tr, "k", 200)
	tr.Get(keys[0])
	tr.Get(keys[0]) // promoted: now in RAM and on disk
	if _, ok := tr.RAM().Peek(keys[0]); !ok || !tr.disk.contains(keys[0]) {
		t.Fatal("k0 should be in both tiers")
	}
	if !tr.Delete(keys[0]) {
		t.Fatal("Delete reported nothing")
	}
	if _, ok := tr.Get(keys[0]); ok {
		t.Fatal("deleted object still served")
	}
	if _, err := os.Stat(tr.disk.path(idOf(keys[0]))); !os.IsNotExist(err) {
		t.Fatalf("file of a deleted object: %v", err)
	}
	// purge by tag: Range + Delete, across both tiers
	for i := range 200 {
		o := response(fmt.Sprint("tagged", i), objSize)
		if i%2 == 0 {
			o.SurrogateKeys = []string{"red"}
		}
		tr.Put(o)
	}
	tr.Flush()
	var purge []string
	tr.Range(func(o *Object) bool {
		for _, s := range o.SurrogateKeys {
			if s == "red" {
				purge = append(purge, o.Key)
			}
		}
		return true
	})
	if len(purge) != 100 {
		t.Fatalf("Range found %d red objects, want 100", len(purge))
	}
	for _, k := range purge {
		tr.Delete(k)
	}
	seen := map[string]int{}
	tr.Range(func(o *Object) bool {
		seen[o.Key]++
		if len(o.SurrogateKeys) > 0 {
			t.Errorf("%s survived the purge", o.Key)
		}
		return true
	})
	for k, n := range seen {
		if n != 1 {
			t.Errorf("Range visited %s %d times", k, n)
		}
	}
	checkIndexMatchesFiles(t, tr)
}

// A Delete while the object waits to be written keeps it off the disk.
func TestDeleteCancelsQueuedWrite(t *testing.T) {
	fs := &faultyFS{}
	tr := open(t, testConfig(t.TempDir()), Options{fs: fs})
	release := make(chan struct{})
	fs.set(func(f *faultyFS) { f.block = release })
	tr.Put(response("first", 600<<10)) // the writer blocks creating its file
	fs.waitBlocked()
	tr.Put(response("victim", 600<<10)) // queued behind it
	if _, ok := tr.Get("victim"); !ok {
		t.Fatal("a queued object must be served while it waits")
	}
	tr.Delete("victim")
	fs.set(func(f *faultyFS) { f.block = nil })
	close(release)
	tr.Flush()
	if _, ok := tr.Get("victim"); ok || tr.disk.contains("victim") {
		t.Fatal("deleted object was written to disk")
	}
	if _, ok := tr.Get("first"); !ok {
		t.Fatal("first object lost")
	}
}

func TestWarmRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	tr := open(t, cfg, Options{})
	keys := fill(t, tr, "k", 200)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tr2 := open(t, cfg, Options{})
	tr2.Register(reg)
	if n := tr2.TierStats()["disk"].Objects; n != 200 {
		t.Fatalf("after restart: %d disk objects, want 200 (RAM was saved on close)", n)
	}
	for _, k := range keys {
		o, ok := tr2.Get(k)
		if !ok {
			t.Fatalf("%s: miss after restart", k)
		}
		checkObject(t, o, k, objSize)
	}
	if got := metricValue(t, reg, "verge_storage_recovered_objects"); got != 200 {
		t.Fatalf("verge_storage_recovered_objects = %v", got)
	}
	checkIndexMatchesFiles(t, tr2)
}

// Recovery without a clean shutdown: the checkpoint plus the files written
// after it, minus what was deleted after it; a stale file older than the
// checkpoint (an unlink that failed) is removed, not served.
func TestRecoveryAfterCrash(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.Disk.SaveRAMOnClose = false
	tr := open(t, cfg, Options{})
	before := fill(t, tr, "before", 100)
	if err := tr.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	after := fill(t, tr, "after", 100)
	var deleted []string
	for _, k := range before[:40] {
		if tr.disk.contains(k) {
			tr.Delete(k)
			deleted = append(deleted, k)
		}
	}
	onDisk := map[string]bool{}
	for _, k := range append(before, after...) {
		if tr.disk.contains(k) {
			onDisk[k] = true
		}
	}
	tr.abandon()

	// a file the checkpoint does not list, older than it: must go
	stale := response("stale", 100)
	fb := fileBytes(stale, 77)
	stalePath := filepath.Join(dir, objectsDir, fmt.Sprintf("%02x", idOf("stale")[0]), idOf("stale").String())
	if err := os.WriteFile(stalePath, fb, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stalePath, old, old)
	// leftovers of an interrupted write
	os.WriteFile(filepath.Join(dir, tmpDir, "junk.tmp"), []byte("partial"), 0o644)

	tr2 := open(t, cfg, Options{})
	for k := range onDisk {
		o, ok := tr2.Get(k)
		if !ok {
			t.Fatalf("%s was on disk before the crash and is missing after", k)
		}
		n := objSize
		checkObject(t, o, k, n)
	}
	for _, k := range deleted {
		if _, ok := tr2.Get(k); ok {
			t.Fatalf("%s was deleted before the crash and came back", k)
		}
	}
	if _, ok := tr2.Get("stale"); ok {
		t.Fatal("stale file older than the checkpoint was served")
	}
	if _, err := os.Stat(stalePath); !os.IsNotExist(err) {
		t.Fatal("stale file not removed")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Fatalf("%d files left in tmp/", len(ents))
	}
	checkIndexMatchesFiles(t, tr2)
}

// Every read checks the file: a damaged header block is caught on any read;
// a damaged body on the first read of a file left by an earlier process.
func TestCorruptFilesAreDropped(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	tr := open(t, cfg, Options{})
	for _, k := range []string{"body", "meta", "short", "zero"} {
		tr.Put(response(k, 600<<10)) // straight to disk
	}
	tr.Flush()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	damage := func(key string, f func(path string, b []byte) []byte) {
		p := filepath.Join(dir, objectsDir, fmt.Sprintf("%02x", idOf(key)[0]), idOf(key).String())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if err := os.WriteFile(p, f(p, b), 0o644); err != nil {
			t.Fatal(err)
		}
		// keep the stamp, as an in-place corruption would
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
	}
	damage("body", func(_ string, b []byte) []byte { b[1000] ^= 1; return b })
	damage("meta", func(_ string, b []byte) []byte { b[600<<10+5] ^= 1; return b })
	damage("short", func(_ string, b []byte) []byte { return b[:len(b)-1] })
	damage("zero", func(_ string, b []byte) []byte { clear(b[len(b)-100:]); return b })
	logs := &logRecorder{}
	tr2 := open(t, cfg, Options{Logger: slogFor(logs)})
	for _, k := range []string{"body", "meta", "short", "zero"} {
		if o, ok := tr2.Get(k); ok {
			t.Errorf("%s: corrupt file served (%d bytes)", k, o.BodyLen())
		}
		if tr2.disk.contains(k) {
			t.Errorf("%s: corrupt file still indexed", k)
		}
	}
	if c := tr2.disk.corrupt.Load(); c != 4 {
		t.Errorf("corrupt counter %d, want 4", c)
	}
	checkIndexMatchesFiles(t, tr2)
}

func TestDirectoryGuards(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("not a cache"), 0o644)
	if _, err := Open(context.Background(), testConfig(dir), Options{}); !errors.Is(err, errNotOurs) {
		t.Fatalf("Open on a foreign directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious.txt")); err != nil {
		t.Fatal("foreign file touched")
	}
	dir2 := t.TempDir()
	open(t, testConfig(dir2), Options{})
	if _, err := Open(context.Background(), testConfig(dir2), Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open on a directory in use: %v", err)
	}
}

func TestRAMOnly(t *testing.T) {
	cfg := testConfig("")
	tr := open(t, cfg, Options{})
	tr.Put(response("a", 100))
	if o, ok := tr.Get("a"); !ok || o.Body == nil {
		t.Fatal("RAM-only Get")
	}
	if _, err := tr.Create(response("b", 1)); !errors.Is(err, ErrNoDisk) {
		t.Fatalf("Create without disk: %v", err)
	}
	if _, ok := tr.TierStats()["disk"]; ok {
		t.Fatal("disk stats without a disk tier")
	}
	if !tr.Delete("a") {
		t.Fatal("Delete")
	}
}

func TestMetrics(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	fill(t, tr, "k", 100)
	tr.Get("k0")
	tr.Get("k0")
	reg := prometheus.NewRegistry()
	if err := tr.Register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"verge_storage_objects", "verge_storage_bytes", "verge_storage_capacity_bytes",
		"verge_storage_evictions_total", "verge_storage_spills_total", "verge_storage_promotions_total",
		"verge_storage_disk_errors_total", "verge_storage_disk_up", "verge_storage_recovery_seconds",
		"verge_storage_hits_total", "verge_storage_admission_rejections_total"} {
		if !names[want] {
			t.Errorf("metric %s missing", want)
		}
	}
	if got := metricValue(t, reg, "verge_storage_promotions_total"); got != 1 {
		t.Errorf("promotions = %v", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP verge_storage_disk_up 1 when the disk tier runs and its last write succeeded, 0 when it is failing or absent.
# TYPE verge_storage_disk_up gauge
verge_storage_disk_up 1
`), "verge_storage_disk_up"); err != nil {
		t.Error(err)
	}
}
