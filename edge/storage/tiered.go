package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Options are Tiered's collaborators; zero values get defaults.
type Options struct {
	Logger *slog.Logger
	// Now is the clock that paces disk write retries and failure logs.
	// Default time.Now. (File times and checkpoints use the real clock:
	// they are compared with file-system times.)
	Now func() time.Time

	fs fileSystem // tests: a file system with faults
}

// Tiered is the node's cache storage: the RAM tier in front of an optional
// disk tier. It implements the engine's Store interface (Get, Put, Delete,
// Range) plus TierStats.
//
//   - Get tries RAM, then objects waiting to be written, then disk. A disk
//     hit returns an object whose Body is nil and whose body is served with
//     OpenBody; on its PromoteAfter-th hit an object that fits in RAM is read
//     into memory and put in RAM, and that copy is returned.
//   - Put stores in RAM. Objects RAM evicts (or does not admit) are written
//     to disk by a background writer (spills); objects too large for RAM go
//     to disk the same way. Put never waits for the disk.
//   - Delete removes a key from both tiers and from the write queue, and
//     cancels a streaming write of it (Create).
//
// A disk that fails (full, read-only, I/O errors) costs hits, never a
// request: reads that fail are misses, writes that fail are dropped; both
// are counted, logged once, and writes pause for a while.
type Tiered struct {
	cfg  Config
	ram  *RAM
	disk *diskTier // nil: RAM only
	log  *slog.Logger

	// evictMu is read-held while objects RAM evicted are queued for disk
	// (Put, promotion) and write-held by Delete, so an object being deleted
	// cannot be spilled back behind Delete's back.
	evictMu sync.RWMutex

	pmu          sync.RWMutex // guards pending, pendingBytes, writers, closed
	drained      *sync.Cond   // on pmu: broadcast when pending becomes empty
	pending      map[string]*Object
	pendingBytes int64
	maxPending   int64
	writers      map[*Writer]struct{}
	closed       bool
	queue        chan *Object

	spills, spillDrops, promotions atomic.Uint64

	wg        sync.WaitGroup
	stopLoops context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// store is the cache engine's view of storage (edge.Store) plus TierStats.
type store interface {
	Get(key string) (*Object, bool)
	Put(o *Object) bool
	Delete(key string) bool
	Range(fn func(*Object) bool)
	TierStats() map[string]Stats
}

var (
	_ store = (*Tiered)(nil)
	_ interface {
		Get(key string) (*Object, bool)
		Put(o *Object) bool
		Delete(key string) bool
		Range(fn func(*Object) bool)
		Stats() Stats
	} = (*RAM)(nil)
)

// ErrNoDisk is returned by Create when no disk tier is running.
var ErrNoDisk = errors.New("storage: no disk tier")

// Open builds the tiers. With a disk directory it rebuilds the disk index
// (checkpoint plus scan) before returning, then writes spills and
// checkpoints in the background until ctx is done or Close. A disk that
// cannot be used (I/O errors, read-only) is logged and the node runs on RAM
// alone; a directory that is not a Verge cache or is used by another
// process is an error.
func Open(ctx context.Context, cfg Config, opts Options) (*Tiered, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.fs == nil {
		opts.fs = osFS{}
	}
	ram, err := NewRAMPolicy(int64(cfg.RAMBytes), cfg.Shards, cfg.Policy)
	if err != nil {
		return nil, err
	}
	t := &Tiered{cfg: cfg, ram: ram, log: opts.Logger, pending: map[string]*Object{}, writers: map[*Writer]struct{}{}}
	t.maxPending = max(int64(cfg.RAMBytes)/4, 16<<20)
	t.drained = sync.NewCond(&t.pmu)
	if cfg.Disk.Dir == "" {
		return t, nil
	}
	d, err := openDisk(diskOptions{
		dir: cfg.Disk.Dir, budget: int64(cfg.Disk.Bytes), maxObject: int64(cfg.Disk.MaxObjectBytes),
		fsync: cfg.Disk.Fsync, fs: opts.fs, log: opts.Logger, now: opts.Now,
	})
	if errors.Is(err, errNotOurs) || errors.Is(err, ErrLocked) {
		return nil, err
	}
	if err != nil {
		opts.Logger.Error("storage: disk tier unavailable; running on RAM only", "dir", cfg.Disk.Dir, "err", err)
		return t, nil
	}
	t.disk = d
	opts.Logger.Info("storage: disk tier ready", "dir", d.dir, "objects", d.recovered,
		"bytes", d.used, "recovery", d.recoveryTime.Round(time.Millisecond))
	t.queue = make(chan *Object, cfg.Disk.SpillQueue)
	loopCtx, stop := context.WithCancel(ctx)
	t.stopLoops = stop
	t.wg.Add(2)
	go t.spillLoop(ctx)
	go t.checkpointLoop(loopCtx)
	return t, nil
}

// RAM returns the RAM tier.
func (t *Tiered) RAM() *RAM { return t.ram }

// HasDisk reports whether a disk tier is running.
func (t *Tiered) HasDisk() bool { return t.disk != nil }

// MaxObject is the largest object Put keeps: the disk tier's limit when
// there is one, else RAM's (RAMBytes/Shards).
func (t *Tiered) MaxObject() int64 {
	if t.disk != nil {
		return max(t.disk.maxObject, t.ram.MaxObject())
	}
	return t.ram.MaxObject()
}

// Get returns the object stored under key.
func (t *Tiered) Get(key string) (*Object, bool) {
	if o, ok := t.ram.Get(key); ok {
		return o, true
	}
	if t.disk == nil {
		return nil, false
	}
	t.pmu.RLock()
	o, ok := t.pending[key]
	t.pmu.RUnlock()
	if ok {
		return o, true
	}
	o, hits, ok := t.disk.get(key)
	if !ok {
		return nil, false
	}
	if int(hits) >= t.cfg.Disk.PromoteAfter && o.Size()+o.BodyLen() <= t.ram.MaxObject() {
		if p := t.promote(o); p != nil {
			return p, true
		}
	}
	return o, true
}

// promote copies a disk object into RAM and returns the copy (nil if it
// could not be read or was deleted meanwhile).
func (t *Tiered) promote(o *Object) *Object {
	body, err := t.disk.loadBody(o)
	if err != nil {
		t.disk.readFailed(o.disk.id, o.disk.writeID, err)
		return nil
	}
	p := *o
	p.Body = body
	t.evictMu.RLock()
	defer t.evictMu.RUnlock()
	if !t.disk.has(o.disk.id, o.disk.writeID) {
		return nil // deleted or replaced since the read
	}
	stored, evicted := t.ram.put(&p)
	t.spillAll(evicted)
	if stored {
		t.promotions.Add(1)
	}
	return &p
}

// Put stores o, replacing what key held in either tier.
func (t *Tiered) Put(o *Object) bool {
	if t.disk == nil {
		return t.ram.Put(o)
	}
	t.evictMu.RLock()
	defer t.evictMu.RUnlock()
	t.cancelPending(o.Key)
	if o.Body == nil && o.disk != nil {
		// a disk object whose metadata changed (a 304 refreshed it): its
		// file is rewritten in the background; the old one serves until then
		t.ram.Delete(o.Key)
		return t.enqueue(o)
	}
	if o.Size() > t.ram.MaxObject() {
		t.ram.Delete(o.Key)
		t.disk.delete(o.Key)
		return t.enqueue(o)
	}
	t.disk.delete(o.Key) // an older version
	stored, evicted := t.ram.put(o)
	t.spillAll(evicted)
	return stored || t.isPending(o)
}

// Delete removes key from both tiers and reports whether it was stored.
func (t *Tiered) Delete(key string) bool {
	if t.disk == nil {
		return t.ram.Delete(key)
	}
	t.evictMu.Lock()
	defer t.evictMu.Unlock()
	found := t.ram.Delete(key)
	if t.cancelPending(key) {
		found = true
	}
	t.pmu.RLock()
	var cancel []*Writer
	for w := range t.writers {
		if w.meta.Key == key {
			cancel = append(cancel, w)
		}
	}
	t.pmu.RUnlock()
	for _, w := range cancel {
		w.cancel()
	}
	if t.disk.delete(key) {
		found = true
	}
	return found
}

// Range calls fn for every stored object (RAM, then waiting for disk, then
// disk, each key once) until fn returns false. Disk objects are read from
// their files, so Range over a large disk tier takes a read per object. fn
// may call Put and Delete.
func (t *Tiered) Range(fn func(*Object) bool) {
	stopped := false
	t.ram.Range(func(o *Object) bool {
		stopped = !fn(o)
		return !stopped
	})
	if stopped || t.disk == nil {
		return
	}
	t.pmu.RLock()
	waiting := make([]*Object, 0, len(t.pending))
	for _, o := range t.pending {
		waiting = append(waiting, o)
	}
	t.pmu.RUnlock()
	for _, o := range waiting {
		if _, inRAM := t.ram.Peek(o.Key); inRAM {
			continue
		}
		if !fn(o) {
			return
		}
	}
	t.disk.each(func(o *Object) bool {
		if _, inRAM := t.ram.Peek(o.Key); inRAM {
			return true
		}
		t.pmu.RLock()
		_, isPending := t.pending[o.Key]
		t.pmu.RUnlock()
		if isPending {
			return true
		}
		return fn(o)
	})
}

// TierStats reports each tier ("ram", and "disk" when it runs).
func (t *Tiered) TierStats() map[string]Stats {
	m := map[string]Stats{"ram": t.ram.Stats()}
	if t.disk != nil {
		m["disk"] = t.disk.stats()
	}
	return m
}

// Checkpoint writes the disk index now (it is also written every
// CheckpointInterval and on Close).
func (t *Tiered) Checkpoint() error {
	if t.disk == nil {
		return ErrNoDisk
	}
	return t.disk.checkpoint()
}

// Close stops the background work: it writes what is queued, saves RAM to
// disk when SaveRAMOnClose, and writes a final checkpoint. The tiers keep
// answering Get after Close; Put no longer reaches the disk.
func (t *Tiered) Close() error {
	t.closeOnce.Do(func() {
		if t.disk == nil {
			return
		}
		t.pmu.Lock()
		t.closed = true
		close(t.queue)
		t.drained.Broadcast()
		t.pmu.Unlock()
		t.stopLoops()
		t.wg.Wait()
		if t.cfg.Disk.SaveRAMOnClose {
			t.saveRAM()
		}
		t.closeErr = t.disk.checkpoint()
		t.disk.close()
	})
	return t.closeErr
}

// saveRAM writes every RAM object that is not on disk yet.
func (t *Tiered) saveRAM() {
	t.ram.Range(func(o *Object) bool {
		if o.disk != nil && t.disk.has(o.disk.id, o.disk.writeID) {
			return true
		}
		tmp, err := t.disk.writeTemp(o)
		if errors.Is(err, errBackoff) {
			return false
		}
		if err == nil {
			t.disk.install(tmp, nil)
		}
		return true
	})
}

// spillAll queues for disk the objects RAM let go of.
func (t *Tiered) spillAll(evicted []entry) {
	for _, e := range evicted {
		o := e.o
		if o.disk != nil && t.disk.has(o.disk.id, o.disk.writeID) {
			continue // its file is still there
		}
		t.enqueue(o)
	}
}

// enqueue hands o to the disk writer, unless the disk is paused, the queue
// is full or too many bytes wait already.
func (t *Tiered) enqueue(o *Object) bool {
	if !t.disk.writable() {
		t.spillDrops.Add(1)
		return false
	}
	size := o.BodyLen()
	t.pmu.Lock()
	defer t.pmu.Unlock()
	if t.closed {
		t.spillDrops.Add(1)
		return false
	}
	if old, ok := t.pending[o.Key]; ok {
		delete(t.pending, o.Key)
		t.pendingBytes -= old.BodyLen()
	}
	if t.pendingBytes > 0 && t.pendingBytes+size > t.maxPending {
		t.spillDrops.Add(1)
		return false
	}
	select {
	case t.queue <- o:
		t.pending[o.Key] = o
		t.pendingBytes += size
		return true
	default:
		t.spillDrops.Add(1)
		return false
	}
}

// cancelPending forgets a queued write of key and reports whether there was one.
func (t *Tiered) cancelPending(key string) bool {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	old, ok := t.pending[key]
	if ok {
		delete(t.pending, key)
		t.pendingBytes -= old.BodyLen()
		if len(t.pending) == 0 {
			t.drained.Broadcast()
		}
	}
	return ok
}

// Flush waits until no object is waiting to be written to disk (each was
// written or dropped). Checkpoint after Flush to make them part of a restart.
func (t *Tiered) Flush() {
	if t.disk == nil {
		return
	}
	t.pmu.Lock()
	for len(t.pending) > 0 && !t.closed {
		t.drained.Wait()
	}
	t.pmu.Unlock()
}

func (t *Tiered) isPending(o *Object) bool {
	t.pmu.RLock()
	defer t.pmu.RUnlock()
	return t.pending[o.Key] == o
}

func (t *Tiered) spillLoop(ctx context.Context) {
	defer t.wg.Done()
	for {
		select {
		case o, ok := <-t.queue:
			if !ok {
				return
			}
			t.writeOne(o)
		case <-ctx.Done():
			// no more disk writes: drop what waits, refuse new ones
			t.pmu.Lock()
			t.closed = true
			t.spillDrops.Add(uint64(len(t.pending)))
			clear(t.pending)
			t.pendingBytes = 0
			t.drained.Broadcast()
			t.pmu.Unlock()
			return
		}
	}
}

// writeOne writes a queued object, unless it was deleted or superseded.
func (t *Tiered) writeOne(o *Object) {
	if !t.isPending(o) {
		return
	}
	tmp, err := t.disk.writeTemp(o)
	if err == nil {
		err = t.disk.install(tmp, func() bool { return t.isPending(o) })
		if err == nil {
			t.spills.Add(1)
		}
	}
	if err != nil && !errors.Is(err, errCancelled) {
		t.spillDrops.Add(1)
	}
	t.pmu.Lock()
	if t.pending[o.Key] == o {
		delete(t.pending, o.Key)
		t.pendingBytes -= o.BodyLen()
	}
	if len(t.pending) == 0 {
		t.drained.Broadcast()
	}
	t.pmu.Unlock()
}

func (t *Tiered) checkpointLoop(ctx context.Context) {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.Disk.CheckpointInterval.D())
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := t.disk.checkpoint(); err != nil {
				t.log.Debug("storage: checkpoint failed", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}
