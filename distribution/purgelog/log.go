package purgelog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/vergecdn/verge/edge"
)

// FileName is the log's file in its directory.
const FileName = "purge.log"

// Options tune a Log.
type Options struct {
	// Sync makes every write durable (fsync) before Append or Put returns.
	// Management's authoritative log needs it: a number handed out must
	// never be handed out again after a crash. A node can do without: a
	// record lost to a power cut is fetched again from its peer.
	Sync bool
	// Log receives a warning when Open drops a torn or corrupt tail.
	Log *slog.Logger
}

// Log is an append-only, file-backed purge log with a Merkle summary. It is
// safe for concurrent use.
type Log struct {
	path    string
	sync    bool
	dropped int64

	mu     sync.Mutex // guards everything below, and writes to f
	f      *os.File
	size   int64            // bytes in the file
	broken error            // a failed write that could not be undone: no more writes
	recs   []edge.Purge     // by Seq, unique: the last record written for a number wins
	tree   map[nodeKey]Hash // cached hashes of non-empty tree nodes
	buf    []byte           // encoding buffer, reused under mu
}

// ErrLocked is Open's error when another process holds the log's file.
var ErrLocked = errors.New("in use by another process")

// Open opens (or creates) the log in dir, which it creates if needed. A torn
// or corrupt tail (what a crash during a write leaves) is cut off, with a
// warning naming the bytes dropped; Dropped reports them. A directory's log
// can be open in one process at a time.
func Open(dir string, opts Options) (*Log, error) {
	if dir == "" {
		return nil, errors.New("purgelog: no directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("purgelog: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("purgelog: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = ErrLocked
		}
		return nil, fmt.Errorf("purgelog: %s: %w", path, err)
	}
	l := &Log{path: path, sync: opts.Sync, f: f, tree: map[nodeKey]Hash{}}
	if err := l.load(opts.Log); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// load reads the file, cuts off a bad tail and fills recs.
func (l *Log) load(log *slog.Logger) error {
	data, err := io.ReadAll(l.f)
	if err != nil {
		return fmt.Errorf("purgelog: reading %s: %w", l.path, err)
	}
	if len(data) < len(magic) {
		if !bytes.HasPrefix([]byte(magic), data) {
			return fmt.Errorf("purgelog: %s is not a purge log", l.path)
		}
		// New, or torn while writing the header.
		if err := l.f.Truncate(0); err != nil {
			return fmt.Errorf("purgelog: %w", err)
		}
		if _, err := l.f.Write([]byte(magic)); err != nil {
			return fmt.Errorf("purgelog: %w", err)
		}
		if err := syncDir(l.f, filepath.Dir(l.path)); err != nil {
			return err
		}
		l.size = int64(len(magic))
		return nil
	}
	if string(data[:len(magic)]) != magic {
		return fmt.Errorf("purgelog: %s is not a purge log", l.path)
	}
	off := len(magic)
	var recs []edge.Purge
	var bad error
	for off < len(data) {
		p, n, err := decodeRecord(data[off:])
		if err != nil {
			bad = err
			break
		}
		recs = append(recs, p)
		off += n
	}
	l.recs = sortUnique(recs)
	l.size = int64(off)
	if bad != nil {
		l.dropped = int64(len(data) - off)
		if err := l.f.Truncate(int64(off)); err != nil {
			return fmt.Errorf("purgelog: cutting the bad tail of %s: %w", l.path, err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("purgelog: %w", err)
		}
		if log != nil {
			log.Warn("purgelog: dropped a torn or corrupt tail", "file", l.path, "offset", off, "bytes", l.dropped, "reason", bad.Error())
		}
	}
	return nil
}

// sortUnique sorts records by Seq; for a repeated number the one written
// last wins.
func sortUnique(recs []edge.Purge) []edge.Purge {
	slices.SortStableFunc(recs, func(a, b edge.Purge) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	out := recs[:0]
	for i, p := range recs {
		if i+1 < len(recs) && recs[i+1].Seq == p.Seq {
			continue
		}
		out = append(out, p)
	}
	return out
}

func syncDir(f *os.File, dir string) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("purgelog: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("purgelog: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("purgelog: syncing %s: %w", dir, err)
	}
	return nil
}

// Close closes the file. The Log must not be used afterwards.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Path is the log's file.
func (l *Log) Path() string { return l.path }

// Dropped is how many bytes Open cut off a torn or corrupt tail.
func (l *Log) Dropped() int64 { return l.dropped }

// Append gives p the next sequence number (Last()+1), records it, and
// returns it with its number. It is management's call: p must carry no
// number of its own.
func (l *Log) Append(p edge.Purge) (edge.Purge, error) {
	if p.Seq != 0 {
		return p, fmt.Errorf("purgelog: append: the log assigns the sequence number, got %d", p.Seq)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("purgelog: append: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p.Seq = l.lastLocked() + 1
	if err := l.writeLocked(p); err != nil {
		return edge.Purge{}, err
	}
	l.recs = append(l.recs, p)
	l.invalidate(p.Seq)
	return p, nil
}

// Put records p under its own number (a node recording what it applied).
// It reports false, writing nothing, when the log already holds exactly p;
// a different purge under the same number replaces the old one (the
// authority's log was rebuilt; its version wins).
func (l *Log) Put(p edge.Purge) (bool, error) {
	if p.Seq == 0 {
		return false, errors.New("purgelog: put: purge has no sequence number")
	}
	if err := p.Validate(); err != nil {
		return false, fmt.Errorf("purgelog: put: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i, found := l.find(p.Seq)
	if found && l.recs[i] == p {
		return false, nil
	}
	if err := l.writeLocked(p); err != nil {
		return false, err
	}
	if found {
		l.recs[i] = p
	} else {
		l.recs = slices.Insert(l.recs, i, p)
	}
	l.invalidate(p.Seq)
	return true, nil
}

// writeLocked appends p's record to the file. A failed write is undone by
// truncating to the previous size, so a later record never follows a torn
// one; if even that fails, the log refuses further writes.
func (l *Log) writeLocked(p edge.Purge) error {
	if l.f == nil {
		return errors.New("purgelog: log is closed")
	}
	if l.broken != nil {
		return l.broken
	}
	l.buf = appendRecord(l.buf[:0], p)
	n, err := l.f.Write(l.buf)
	if err == nil && l.sync {
		err = l.f.Sync()
	}
	if err != nil {
		if n > 0 {
			if terr := l.f.Truncate(l.size); terr != nil {
				l.broken = fmt.Errorf("purgelog: %s: a write failed (%v) and could not be undone (%v); reopen the log", l.path, err, terr)
			}
		}
		return fmt.Errorf("purgelog: writing %s: %w", l.path, err)
	}
	l.size += int64(n)
	return nil
}

// find returns where seq is (or would be inserted) in recs.
func (l *Log) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(l.recs, seq, func(p edge.Purge, s uint64) int {
		switch {
		case p.Seq < s:
			return -1
		case p.Seq > s:
			return 1
		}
		return 0
	})
}

// Get returns the purge recorded under seq.
func (l *Log) Get(seq uint64) (edge.Purge, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i, ok := l.find(seq); ok {
		return l.recs[i], true
	}
	return edge.Purge{}, false
}

// Has reports whether the log holds exactly p.
func (l *Log) Has(p edge.Purge) bool {
	got, ok := l.Get(p.Seq)
	return ok && got == p
}

// Last is the highest sequence number recorded (0 for an empty log).
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastLocked()
}

func (l *Log) lastLocked() uint64 {
	if len(l.recs) == 0 {
		return 0
	}
	return l.recs[len(l.recs)-1].Seq
}

// Len is the number of records (distinct sequence numbers).
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// Size is the file's size in bytes.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Records returns up to limit records (all if limit <= 0) numbered from
// from to to inclusive, in order.
func (l *Log) Records(from, to uint64, limit int) []edge.Purge {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := l.find(from)
	j := i
	for j < len(l.recs) && l.recs[j].Seq <= to && (limit <= 0 || j-i < limit) {
		j++
	}
	return slices.Clone(l.recs[i:j])
}
