package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// A disk tier directory holds:
//
//	VERGE-CACHE        marker naming the format; a non-empty directory without it is refused
//	LOCK               locked (flock) by the process using the directory
//	index.ckpt         the last checkpoint of the index (checkpoint.go)
//	tmp/               files being written; emptied on start
//	objects/00 .. ff/  one file per object, named by the first 16 bytes of the
//	                   SHA-256 of its cache key, in hex (never from the URL)
const (
	markerName    = "VERGE-CACHE"
	markerText    = "verge disk cache, format 1\n"
	lockName      = "LOCK"
	tmpDir        = "tmp"
	objectsDir    = "objects"
	tailRead      = 4096 // bytes read from a file's end to find its header block
	writeBackoff  = 10 * time.Second
	logInterval   = time.Minute
	maxMetaOnDisk = maxMetaBytes
)

// fileID names an object's file: a hash of its cache key.
type fileID [16]byte

func idOf(key string) fileID {
	sum := sha256.Sum256([]byte(key))
	return fileID(sum[:16])
}

func (id fileID) String() string { return hex.EncodeToString(id[:]) }

// parseID reads a file name written by fileID.String.
func parseID(name string) (fileID, bool) {
	var id fileID
	if len(name) != 32 {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(name)); err != nil || name != id.String() {
		return id, false
	}
	return id, true
}

// diskEntry is the index's record of one file.
type diskEntry struct {
	id       fileID
	bodyLen  int64
	writeID  uint64
	stamp    fileStamp // includes the file size
	hits     uint32    // disk hits, for promotion to RAM
	verified bool      // the body checksum was checked (or the body written) by this process
}

// disk operations, for the errors metric
const (
	opWrite = iota
	opRead
	opRename
	opRemove
	opSync
	opCheckpoint
	opScan
	numOps
)

var opNames = [numOps]string{"write", "read", "rename", "remove", "sync", "checkpoint", "scan"}

// diskTier is the SSD spillover: files under dir, an LRU index of them in
// memory, a byte budget.
type diskTier struct {
	dir       string
	fs        fileSystem
	budget    int64
	maxObject int64
	fsync     bool
	log       *slog.Logger
	now       func() time.Time
	lock      *os.File // flock on LOCK

	// mu guards index and used, and is held across every rename into and
	// unlink from objects/, so that the index and the files change together
	// and a checkpoint taken under mu is a consistent cut.
	mu    sync.Mutex
	index *simplelru.LRU[fileID, *diskEntry]
	used  int64

	hits, misses, evictions, corrupt atomic.Uint64
	errs                             [numOps]atomic.Uint64
	failing                          atomic.Bool
	lastLog                          atomic.Int64 // unix nanos of the last failure log
	retryAt                          atomic.Int64 // unix nanos: no writes before
	checkpoints                      atomic.Uint64
	lastCheckpoint                   atomic.Int64 // unix seconds
	recoveryTime                     time.Duration
	recovered                        int
}

var (
	errNotOurs = errors.New("directory is not empty and has no " + markerName + " marker; refusing to use it")
	// ErrLocked is Open's error when another process holds the disk
	// tier's directory.
	ErrLocked    = errors.New("directory is in use by another process")
	errTooLarge  = errors.New("storage: object too large for the disk tier")
	errBackoff   = errors.New("storage: disk writes paused after a failure")
	errCancelled = errors.New("storage: write cancelled")
)

type diskOptions struct {
	dir       string
	budget    int64
	maxObject int64
	fsync     bool
	fs        fileSystem
	log       *slog.Logger
	now       func() time.Time
}

// openDisk prepares dir and rebuilds the index from the checkpoint and the
// files. Errors errNotOurs and ErrLocked are configuration errors; others
// are disk faults.
func openDisk(o diskOptions) (*diskTier, error) {
	d := &diskTier{dir: o.dir, fs: o.fs, budget: o.budget, maxObject: o.maxObject, fsync: o.fsync, log: o.log, now: o.now}
	d.index, _ = simplelru.NewLRU[fileID, *diskEntry](1<<62, nil)
	if err := d.prepare(); err != nil {
		d.close()
		return nil, err
	}
	start := time.Now()
	d.recover()
	d.recoveryTime = time.Since(start)
	return d, nil
}

func (d *diskTier) prepare() error {
	if err := d.fs.MkdirAll(d.dir); err != nil {
		return fmt.Errorf("storage: disk dir: %w", err)
	}
	ents, err := d.fs.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("storage: disk dir: %w", err)
	}
	ours := false
	for _, e := range ents {
		if e.Name() == markerName {
			ours = true
		}
	}
	if !ours && len(ents) > 0 {
		return fmt.Errorf("storage: disk dir %s: %w", d.dir, errNotOurs)
	}
	lf, err := os.OpenFile(filepath.Join(d.dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("storage: disk dir lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = ErrLocked
		}
		return fmt.Errorf("storage: disk dir %s: %w", d.dir, err)
	}
	d.lock = lf
	if err := d.fs.MkdirAll(filepath.Join(d.dir, tmpDir)); err != nil {
		return fmt.Errorf("storage: disk dir: %w", err)
	}
	for i := range 256 {
		if err := d.fs.MkdirAll(d.shardDir(byte(i))); err != nil {
			return fmt.Errorf("storage: disk dir: %w", err)
		}
	}
	if !ours {
		if err := d.writeSmallFile(markerName, []byte(markerText)); err != nil {
			return fmt.Errorf("storage: disk dir marker: %w", err)
		}
	}
	// what was being written when the last process stopped is garbage
	tmps, err := d.fs.ReadDir(filepath.Join(d.dir, tmpDir))
	if err != nil {
		return fmt.Errorf("storage: disk dir: %w", err)
	}
	for _, e := range tmps {
		d.fs.Remove(filepath.Join(d.dir, tmpDir, e.Name()))
	}
	return nil
}

// writeSmallFile writes name in dir atomically and durably.
func (d *diskTier) writeSmallFile(name string, data []byte) error {
	tmp := filepath.Join(d.dir, tmpDir, fmt.Sprintf("%s.%016x", name, rand.Uint64()))
	if err := d.fs.MkdirAll(filepath.Join(d.dir, tmpDir)); err != nil {
		return err
	}
	f, err := d.fs.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.fs.Rename(tmp, filepath.Join(d.dir, name))
	}
	if err != nil {
		d.fs.Remove(tmp)
	}
	return err
}

func (d *diskTier) close() {
	if d.lock != nil {
		d.lock.Close() // releases the flock
		d.lock = nil
	}
}

func (d *diskTier) shardDir(b byte) string {
	return filepath.Join(d.dir, objectsDir, hex.EncodeToString([]byte{b}))
}

func (d *diskTier) path(id fileID) string {
	return filepath.Join(d.shardDir(id[0]), id.String())
}

// fail records a failed disk operation: a metric always, a log line when the
// tier starts failing (at most once a minute), and a pause of writes.
func (d *diskTier) fail(op int, err error) {
	d.errs[op].Add(1)
	now := d.now()
	if op != opRead {
		d.retryAt.Store(now.Add(writeBackoff).UnixNano())
	}
	if !d.failing.Swap(true) {
		last := d.lastLog.Load()
		if last == 0 || now.UnixNano()-last >= int64(logInterval) {
			d.lastLog.Store(now.UnixNano())
			d.log.Warn("storage: disk tier failing; serving from RAM and upstream",
				"dir", d.dir, "op", opNames[op], "err", err)
		}
	}
}

// ok records a successful write: the tier is healthy again.
func (d *diskTier) ok() {
	if d.failing.Swap(false) {
		d.log.Info("storage: disk tier recovered", "dir", d.dir)
	}
}

// writable reports whether writes are allowed (not paused after a failure).
func (d *diskTier) writable() bool {
	return d.now().UnixNano() >= d.retryAt.Load()
}

// has reports whether the index holds the file written by writeID for id.
func (d *diskTier) has(id fileID, writeID uint64) bool {
	d.mu.Lock()
	e, ok := d.index.Peek(id)
	d.mu.Unlock()
	return ok && e.writeID == writeID
}

// contains reports whether key has a file.
func (d *diskTier) contains(key string) bool {
	d.mu.Lock()
	ok := d.index.Contains(idOf(key))
	d.mu.Unlock()
	return ok
}

// readMeta opens the file of id and decodes its footer and header block,
// checking the file's length and both checksums. want, when non-zero, is the
// write the caller expects to find.
func (d *diskTier) readMeta(id fileID, want uint64) (*Object, footer, error) {
	path := d.path(id)
	f, err := d.fs.Open(path)
	if err != nil {
		return nil, footer{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, footer{}, err
	}
	size := fi.Size()
	if size < footerSize {
		return nil, footer{}, fmt.Errorf("%w: %d bytes", errCorrupt, size)
	}
	n := min(size, tailRead)
	pb := tailPool.Get().(*[tailRead]byte)
	defer tailPool.Put(pb)
	buf := pb[:n]
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return nil, footer{}, err
	}
	ft, meta, need, err := parseTail(buf, size) // meta copies what it keeps
	if err == nil && need > 0 {
		if int64(need) > size {
			return nil, ft, fmt.Errorf("%w: header block past the start", errCorrupt)
		}
		buf = make([]byte, need)
		if _, err = f.ReadAt(buf, size-int64(need)); err != nil {
			return nil, ft, err
		}
		ft, meta, _, err = parseTail(buf, size)
	}
	if err != nil {
		return nil, ft, err
	}
	if want != 0 && ft.writeID != want {
		return nil, ft, fmt.Errorf("%w: replaced", ErrGone)
	}
	if idOf(meta.Key) != id {
		return nil, ft, fmt.Errorf("%w: key does not match the file name", errCorrupt)
	}
	meta.disk = &diskRef{path: path, id: id, writeID: ft.writeID, bodyLen: ft.bodyLen, bodyCRC: ft.bodyCRC, fs: d.fs}
	return meta, ft, nil
}

// tailPool holds buffers for the tail of a file (footer and header block).
var tailPool = sync.Pool{New: func() any { return new([tailRead]byte) }}

// get looks key up and reads its metadata. hits counts disk hits on the
// file, this one included. A file that fails a check is dropped.
func (d *diskTier) get(key string) (o *Object, hits uint32, ok bool) {
	id := idOf(key)
	d.mu.Lock()
	e, ok := d.index.Get(id)
	var writeID uint64
	var verified bool
	if ok {
		e.hits++
		hits, writeID, verified = e.hits, e.writeID, e.verified
	}
	d.mu.Unlock()
	if !ok {
		d.misses.Add(1)
		return nil, 0, false
	}
	o, _, err := d.readMeta(id, writeID)
	if err == nil && o.Key != key {
		err = fmt.Errorf("%w: key mismatch", errCorrupt)
	}
	if err == nil && !verified {
		// a file left by an earlier process: check its body once
		if _, err = d.loadBody(o); err == nil {
			d.mu.Lock()
			if e, ok := d.index.Peek(id); ok && e.writeID == writeID {
				e.verified = true
			}
			d.mu.Unlock()
		}
	}
	if err != nil {
		d.readFailed(id, writeID, err)
		d.misses.Add(1)
		return nil, 0, false
	}
	d.hits.Add(1)
	return o, hits, true
}

// readFailed handles a read error on the file of (id, writeID): a corrupt or
// vanished file leaves the index; other errors count as disk faults.
func (d *diskTier) readFailed(id fileID, writeID uint64, err error) {
	switch {
	case errors.Is(err, errCorrupt), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		d.corrupt.Add(1)
		d.log.Warn("storage: dropping corrupt disk object", "file", d.path(id), "err", err)
		d.drop(id, writeID)
	case errors.Is(err, os.ErrNotExist), errors.Is(err, ErrGone):
		d.drop(id, writeID)
	default:
		d.fail(opRead, err)
	}
}

// loadBody reads o's body from its file and checks its checksum.
func (d *diskTier) loadBody(o *Object) ([]byte, error) {
	ref := o.disk
	f, n, err := o.OpenBody()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body := make([]byte, n)
	if _, err := io.ReadFull(f, body); err != nil {
		return nil, err
	}
	if crc32.Checksum(body, castagnoli) != ref.bodyCRC {
		return nil, fmt.Errorf("%w: body checksum", errCorrupt)
	}
	return body, nil
}

// drop removes the index entry of id and its file, if it is still the
// write writeID (0: any).
func (d *diskTier) drop(id fileID, writeID uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.index.Peek(id)
	if !ok || (writeID != 0 && e.writeID != writeID) {
		return
	}
	d.removeLocked(e)
}

// removeLocked removes e from the index and its file; d.mu is held.
func (d *diskTier) removeLocked(e *diskEntry) {
	d.index.Remove(e.id)
	d.used -= e.stamp.size
	if err := d.fs.Remove(d.path(e.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.fail(opRemove, err)
	}
}

// delete removes key's file and reports whether there was one.
func (d *diskTier) delete(key string) bool {
	id := idOf(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.index.Peek(id)
	if ok {
		d.removeLocked(e)
	}
	return ok
}

// tempFile is an object file written under tmp/, waiting to be installed.
type tempFile struct {
	tmp   string
	entry diskEntry
}

// writeTemp writes o (body from memory, or copied from another file when o
// has only a disk body) to a temporary file.
func (d *diskTier) writeTemp(o *Object) (*tempFile, error) {
	if !d.writable() {
		return nil, errBackoff
	}
	meta := encodeMeta(nil, o)
	if len(meta) > maxMetaOnDisk {
		return nil, fmt.Errorf("storage: header block of %q is %d bytes, over %d", o.Key, len(meta), maxMetaOnDisk)
	}
	total := o.BodyLen() + int64(len(meta)) + footerSize
	if total > d.maxObject || total > d.budget {
		return nil, errTooLarge
	}
	id := idOf(o.Key)
	writeID := rand.Uint64() | 1 // never 0: 0 means "any" to drop
	tmp := filepath.Join(d.dir, tmpDir, fmt.Sprintf("%s.%016x", id, writeID))
	f, err := d.fs.Create(tmp)
	if err != nil {
		d.fail(opWrite, err)
		return nil, fmt.Errorf("storage: create %s: %w", tmp, err)
	}
	t := &tempFile{tmp: tmp, entry: diskEntry{id: id, writeID: writeID, verified: true}}
	bodyCRC, bodyLen, err := d.writeBody(f, o)
	if err == nil {
		t.entry.bodyLen = bodyLen
		err = finishFile(f, meta, writeID, bodyLen, bodyCRC, d.fsync, &t.entry.stamp)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		d.fs.Remove(tmp)
		if !errors.Is(err, errCorrupt) && !errors.Is(err, ErrGone) {
			d.fail(opWrite, err)
		}
		return nil, fmt.Errorf("storage: write %s: %w", tmp, err)
	}
	return t, nil
}

// writeBody writes o's body to f and returns its checksum and length.
func (d *diskTier) writeBody(f writeFile, o *Object) (uint32, int64, error) {
	if o.Body != nil || o.disk == nil {
		_, err := f.Write(o.Body)
		return crc32.Checksum(o.Body, castagnoli), int64(len(o.Body)), err
	}
	// only the metadata changed (a 304 refreshed it): copy the body over
	src, n, err := o.OpenBody()
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	h := crc32.New(castagnoli)
	w, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, n))
	if err == nil && w != n {
		err = fmt.Errorf("%w: body shorter than its footer says", errCorrupt)
	}
	if err == nil && h.Sum32() != o.disk.bodyCRC {
		err = fmt.Errorf("%w: body checksum", errCorrupt)
	}
	return h.Sum32(), n, err
}

// finishFile appends the header block and footer after a body of bodyLen
// bytes, syncs when asked, and records the file's stamp.
func finishFile(f writeFile, meta []byte, writeID uint64, bodyLen int64, bodyCRC uint32, sync bool, stamp *fileStamp) error {
	var foot [footerSize]byte
	ft := footer{writeID: writeID, bodyLen: bodyLen, metaLen: int64(len(meta)), metaCRC: crc32.Checksum(meta, castagnoli), bodyCRC: bodyCRC}
	ft.encode(foot[:])
	if _, err := f.WriteAt(append(meta, foot[:]...), bodyLen); err != nil {
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	*stamp = stampOf(fi)
	if stamp.size != ft.fileSize() {
		return fmt.Errorf("storage: file is %d bytes after writing %d", stamp.size, ft.fileSize())
	}
	return nil
}

// install renames t into objects/ and indexes it, evicting the least
// recently used files beyond the budget. wanted, when set, is asked under
// the index lock whether the object is still wanted (not deleted since it
// was queued); if not, t is discarded.
func (d *diskTier) install(t *tempFile, wanted func() bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if wanted != nil && !wanted() {
		d.fs.Remove(t.tmp)
		return errCancelled
	}
	if err := d.fs.Rename(t.tmp, d.path(t.entry.id)); err != nil {
		d.fs.Remove(t.tmp)
		d.fail(opRename, err)
		return fmt.Errorf("storage: install: %w", err)
	}
	if old, ok := d.index.Peek(t.entry.id); ok {
		d.used -= old.stamp.size // its file was just replaced
		d.index.Remove(t.entry.id)
	}
	e := t.entry
	d.index.Add(e.id, &e)
	d.used += e.stamp.size
	d.evictLocked()
	d.ok()
	return nil
}

// evictLocked removes least recently used files until the budget holds.
func (d *diskTier) evictLocked() {
	for d.used > d.budget {
		_, e, ok := d.index.GetOldest()
		if !ok {
			return
		}
		d.removeLocked(e)
		d.evictions.Add(1)
	}
}

// discard removes a temporary file that will not be installed.
func (d *diskTier) discard(t *tempFile) { d.fs.Remove(t.tmp) }

// each calls fn with the metadata of every file (most recently used last)
// until fn returns false. Files that fail their checks are dropped.
func (d *diskTier) each(fn func(*Object) bool) {
	d.mu.Lock()
	snap := make([]diskEntry, 0, d.index.Len())
	for _, e := range d.index.Values() {
		snap = append(snap, *e)
	}
	d.mu.Unlock()
	for _, e := range snap {
		o, _, err := d.readMeta(e.id, e.writeID)
		if err != nil {
			d.readFailed(e.id, e.writeID, err)
			continue
		}
		if !fn(o) {
			return
		}
	}
}

func (d *diskTier) stats() Stats {
	d.mu.Lock()
	st := Stats{Objects: int64(d.index.Len()), Bytes: d.used}
	d.mu.Unlock()
	st.Capacity = d.budget
	st.Evictions = d.evictions.Load()
	st.Hits, st.Misses = d.hits.Load(), d.misses.Load()
	return st
}
