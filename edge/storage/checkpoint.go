package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A checkpoint (index.ckpt) is the disk index at one moment:
//
//	magic "VRGCKPT1"
//	time the index was read (unix nanoseconds, int64)
//	count (uint64)
//	count entries, least recently used first, 64 bytes each:
//	  id [16], write ID, body length, inode, mtime (ns), file size (8 each), hits (4)
//	CRC-32C of everything above (4)
//
// Little-endian. It is written to tmp/, synced, and renamed over the last one.
//
// Recovery trusts it as far as the directories allow. Every rename into and
// unlink from objects/ happens under the index lock, so the checkpoint is a
// consistent cut: a file renamed before it is in it, and anything done to a
// directory after it changes the directory's modification time. On start:
//   - names listed in the checkpoint, in a directory not modified since (with
//     a margin for coarse file-system clocks), are taken as they are;
//   - in a modified directory, a listed name whose inode, size and mtime still
//     match is taken; any other file is opened and checked (length, footer and
//     header block checksums, key hash = file name) and taken or removed;
//   - a file the checkpoint does not list is taken (after those checks) only if
//     it is newer than the checkpoint: an older one is a file whose unlink
//     failed, and is removed so that a purged object never comes back;
//   - checkpoint entries without a file are dropped.
//
// Bodies of recovered files are checked against their checksum on first use.
const (
	ckptMagic   = "VRGCKPT1"
	ckptName    = "index.ckpt"
	ckptEntry   = 64
	dirtyMargin = 2 * time.Second
)

type ckptRecord struct {
	e     diskEntry
	order int
}

// checkpoint writes the index to index.ckpt.
func (d *diskTier) checkpoint() error {
	d.mu.Lock()
	at := time.Now() // file times are real time; so is this
	snap := make([]diskEntry, 0, d.index.Len())
	for _, e := range d.index.Values() {
		snap = append(snap, *e)
	}
	d.mu.Unlock()

	tmp := filepath.Join(d.dir, tmpDir, fmt.Sprintf("%s.%016x", ckptName, rand.Uint64()))
	f, err := d.fs.Create(tmp)
	if err != nil {
		d.fail(opCheckpoint, err)
		return fmt.Errorf("storage: checkpoint: %w", err)
	}
	h := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 256<<10)
	var rec [ckptEntry]byte
	w.WriteString(ckptMagic)
	binary.LittleEndian.PutUint64(rec[:8], uint64(at.UnixNano()))
	binary.LittleEndian.PutUint64(rec[8:16], uint64(len(snap)))
	w.Write(rec[:16])
	for _, e := range snap {
		copy(rec[:16], e.id[:])
		binary.LittleEndian.PutUint64(rec[16:], e.writeID)
		binary.LittleEndian.PutUint64(rec[24:], uint64(e.bodyLen))
		binary.LittleEndian.PutUint64(rec[32:], e.stamp.ino)
		binary.LittleEndian.PutUint64(rec[40:], uint64(e.stamp.mtime))
		binary.LittleEndian.PutUint64(rec[48:], uint64(e.stamp.size))
		binary.LittleEndian.PutUint32(rec[56:], e.hits)
		binary.LittleEndian.PutUint32(rec[60:], 0)
		w.Write(rec[:])
	}
	err = w.Flush()
	if err == nil {
		var sum [4]byte
		binary.LittleEndian.PutUint32(sum[:], h.Sum32())
		_, err = f.Write(sum[:])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.fs.Rename(tmp, filepath.Join(d.dir, ckptName))
	}
	if err != nil {
		d.fs.Remove(tmp)
		d.fail(opCheckpoint, err)
		return fmt.Errorf("storage: checkpoint: %w", err)
	}
	d.checkpoints.Add(1)
	d.lastCheckpoint.Store(at.Unix())
	return nil
}

// loadCheckpoint reads index.ckpt. A missing or damaged one is an error.
func (d *diskTier) loadCheckpoint() (at time.Time, recs map[fileID]ckptRecord, err error) {
	f, err := d.fs.Open(filepath.Join(d.dir, ckptName))
	if err != nil {
		return at, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return at, nil, err
	}
	return decodeCheckpoint(data)
}

func decodeCheckpoint(data []byte) (at time.Time, recs map[fileID]ckptRecord, err error) {
	bad := func(what string) error { return fmt.Errorf("%w: checkpoint %s", errCorrupt, what) }
	if len(data) < len(ckptMagic)+16+4 || string(data[:len(ckptMagic)]) != ckptMagic {
		return at, nil, bad("header")
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return at, nil, bad("checksum")
	}
	p := body[len(ckptMagic):]
	at = time.Unix(0, int64(binary.LittleEndian.Uint64(p)))
	n := binary.LittleEndian.Uint64(p[8:])
	p = p[16:]
	if uint64(len(p)) != n*ckptEntry {
		return at, nil, bad("length")
	}
	recs = make(map[fileID]ckptRecord, n)
	for i := range int(n) {
		r := p[i*ckptEntry:]
		var e diskEntry
		copy(e.id[:], r[:16])
		e.writeID = binary.LittleEndian.Uint64(r[16:])
		e.bodyLen = int64(binary.LittleEndian.Uint64(r[24:]))
		e.stamp.ino = binary.LittleEndian.Uint64(r[32:])
		e.stamp.mtime = int64(binary.LittleEndian.Uint64(r[40:]))
		e.stamp.size = int64(binary.LittleEndian.Uint64(r[48:]))
		e.hits = binary.LittleEndian.Uint32(r[56:])
		if e.bodyLen < 0 || e.stamp.size < footerSize || e.writeID == 0 {
			return at, nil, bad("entry")
		}
		recs[e.id] = ckptRecord{e: e, order: i}
	}
	return at, recs, nil
}

// recover rebuilds the index from the checkpoint and the files (see the
// comment at the top of this file), then enforces the budget.
func (d *diskTier) recover() {
	at, recs, err := d.loadCheckpoint()
	haveCkpt := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("storage: disk checkpoint unusable; scanning every file", "dir", d.dir, "err", err)
	}
	var kept []ckptRecord // from the checkpoint, in its order
	var found []diskEntry // files it did not describe, oldest first
	for i := range 256 {
		dir := d.shardDir(byte(i))
		dirty := !haveCkpt
		if haveCkpt {
			fi, err := d.fs.Stat(dir)
			if err != nil {
				d.fail(opScan, err)
				continue
			}
			dirty = !fi.ModTime().Before(at.Add(-dirtyMargin))
		}
		names, err := d.fs.ReadDir(dir)
		if err != nil {
			d.fail(opScan, err)
			continue
		}
		for _, de := range names {
			path := filepath.Join(dir, de.Name())
			id, ok := parseID(de.Name())
			if !ok || id[0] != byte(i) {
				d.fs.Remove(path) // not a file this tier wrote
				continue
			}
			rec, listed := recs[id]
			if listed && !dirty {
				kept = append(kept, rec)
				continue
			}
			fi, err := d.fs.Stat(path)
			if err != nil {
				continue // vanished while listing
			}
			st := stampOf(fi)
			if listed && st == rec.e.stamp {
				kept = append(kept, rec)
				continue
			}
			if !listed && haveCkpt && fi.ModTime().Before(at.Add(-dirtyMargin)) {
				d.fs.Remove(path) // older than the checkpoint that does not list it
				continue
			}
			_, ft, err := d.readMeta(id, 0)
			if err != nil {
				if errors.Is(err, errCorrupt) {
					d.corrupt.Add(1)
				}
				d.fs.Remove(path)
				continue
			}
			e := diskEntry{id: id, bodyLen: ft.bodyLen, writeID: ft.writeID, stamp: st}
			if listed {
				e.hits = rec.e.hits
			}
			found = append(found, e)
		}
	}
	slices.SortFunc(kept, func(a, b ckptRecord) int { return a.order - b.order })
	slices.SortFunc(found, func(a, b diskEntry) int {
		if a.stamp.mtime < b.stamp.mtime {
			return -1
		}
		if a.stamp.mtime > b.stamp.mtime {
			return 1
		}
		return 0
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range kept {
		e := r.e
		e.verified = false
		d.index.Add(e.id, &e)
		d.used += e.stamp.size
	}
	for _, e := range found {
		e := e
		d.index.Add(e.id, &e)
		d.used += e.stamp.size
	}
	d.evictLocked()
	d.recovered = d.index.Len()
}
