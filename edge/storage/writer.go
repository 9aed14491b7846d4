package storage

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Writer streams one object's body into the disk tier, so a large body never
// sits whole in memory. The body goes to a temporary file as it arrives;
// any number of Readers follow it while it is written. Commit appends the
// header block and renames the file into the tier; Abort throws it away.
//
//	w, err := t.Create(meta)       // meta: the object without its body
//	go func() { io.Copy(w, upstream); w.Commit() }()   // or Abort on error
//	r, err := w.NewReader(ctx)     // each client: io.Copy(client, r); r.Close()
//
// Write is for one goroutine; Written, Wait and NewReader are safe from any.
type Writer struct {
	t       *Tiered
	meta    *Object // copy of Create's meta
	id      fileID
	writeID uint64
	f       writeFile
	crc     hash.Hash32 // used by the writing goroutine only
	limit   int64       // largest body that fits the tier's limits

	mu        sync.Mutex // guards n, state, err, path, wake, cancelled
	n         int64      // body bytes written
	state     writerState
	err       error         // why the body is incomplete (write failure, too large, abort)
	path      string        // where a new reader opens the body: the temp file, then the object file
	wake      chan struct{} // closed and replaced on every change
	cancelled bool          // Delete of the key while writing: Commit must not store
}

type writerState uint8

const (
	writing  writerState = iota
	complete             // Commit was called: the body is whole (stored or not)
	aborted              // the body is incomplete for good
)

var (
	// ErrAborted is what readers of a Writer get when the body will not be
	// completed (Abort, or a failed Write).
	ErrAborted = errors.New("storage: streaming write aborted")
	// ErrDeleted is Commit's error when the key was deleted (purged) while
	// its body was being written: the body is complete for its readers but
	// not stored.
	ErrDeleted    = errors.New("storage: key deleted during the write; not stored")
	errWriterDone = errors.New("storage: writer already committed or aborted")
)

// Create starts a streaming write of meta's body (meta.Body is ignored; its
// Header is stored with Content-Length set to the bytes written). It fails
// with ErrNoDisk when no disk tier runs and with an error when the disk is
// failing: the caller then keeps the body in memory or does not store it.
func (t *Tiered) Create(meta *Object) (*Writer, error) {
	if t.disk == nil {
		return nil, ErrNoDisk
	}
	if meta == nil || meta.Key == "" || meta.IsMarker() {
		return nil, errors.New("storage: Create needs a response object with a key")
	}
	if !t.disk.writable() {
		return nil, errBackoff
	}
	m := *meta
	m.Body, m.disk = nil, nil
	metaLen := int64(len(encodeMeta(nil, &m))) + 32 // + a Content-Length field
	w := &Writer{
		t: t, meta: &m, id: idOf(m.Key), writeID: rand.Uint64() | 1,
		crc: crc32.New(castagnoli), wake: make(chan struct{}),
		limit: min(t.disk.maxObject, t.disk.budget) - metaLen - footerSize,
	}
	w.path = filepath.Join(t.disk.dir, tmpDir, fmt.Sprintf("%s.%016x", w.id, w.writeID))
	t.pmu.Lock()
	closed := t.closed
	if !closed {
		t.writers[w] = struct{}{}
	}
	t.pmu.Unlock()
	if closed {
		return nil, errors.New("storage: closed")
	}
	f, err := t.disk.fs.Create(w.path)
	if err != nil {
		t.disk.fail(opWrite, err)
		t.forget(w)
		return nil, fmt.Errorf("storage: create %s: %w", w.path, err)
	}
	w.f = f
	return w, nil
}

func (t *Tiered) forget(w *Writer) {
	t.pmu.Lock()
	delete(t.writers, w)
	t.pmu.Unlock()
}

// signal wakes waiters; w.mu is held.
func (w *Writer) signal() {
	close(w.wake)
	w.wake = make(chan struct{})
}

// Write appends p to the body. After an error (disk failure, or the body
// growing past the tier's limit: then errTooLarge) the write is over:
// readers get ErrAborted once they have read what was written, and the
// caller should Abort.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	st, err, n0 := w.state, w.err, w.n
	w.mu.Unlock()
	if st != writing {
		return 0, errWriterDone
	}
	if err != nil {
		return 0, err
	}
	if n0+int64(len(p)) > w.limit {
		w.fail(errTooLarge)
		return 0, errTooLarge
	}
	k, werr := w.f.Write(p)
	w.crc.Write(p[:k])
	w.mu.Lock()
	w.n += int64(k)
	if werr != nil {
		w.err = fmt.Errorf("storage: write %s: %w", w.path, werr)
		err = w.err
	}
	w.signal()
	w.mu.Unlock()
	if werr != nil {
		w.t.disk.fail(opWrite, werr)
		return k, err
	}
	return k, nil
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.signal()
	w.mu.Unlock()
}

// cancel marks the write as deleted: Commit will not store it.
func (w *Writer) cancel() {
	w.mu.Lock()
	w.cancelled = true
	w.mu.Unlock()
}

// Written is the number of body bytes written so far.
func (w *Writer) Written() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Wait blocks until more than off body bytes are written, the body is
// complete (Commit was called), the write failed or was aborted, or ctx is
// done. It returns the bytes written so far and whether that is the whole
// body; err is ErrAborted (or the write's error) once no more will come.
func (w *Writer) Wait(ctx context.Context, off int64) (n int64, whole bool, err error) {
	for {
		w.mu.Lock()
		n, st, werr, wake := w.n, w.state, w.err, w.wake
		w.mu.Unlock()
		switch {
		case n > off:
			return n, st == complete, nil
		case st == complete:
			return n, true, nil
		case st == aborted || werr != nil:
			return n, false, abortErr(werr)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return n, false, ctx.Err()
		}
	}
}

func abortErr(err error) error {
	if err == nil || errors.Is(err, ErrAborted) {
		return ErrAborted
	}
	return fmt.Errorf("%w: %w", ErrAborted, err)
}

// Commit completes the body, appends the header block and footer, and
// installs the file in the disk tier (evicting older files beyond the
// budget). It returns the stored object, whose body is served with
// OpenBody. Readers see the body as complete as soon as Commit starts, even
// when storing then fails (full disk: the error is returned and counted;
// the readers still get every byte). After a Delete of the key during the
// write it returns ErrDeleted.
func (w *Writer) Commit() (*Object, error) {
	t, d := w.t, w.t.disk
	defer t.forget(w)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != writing {
		return nil, errWriterDone
	}
	if w.err != nil {
		return nil, w.err
	}
	w.state = complete
	w.signal()
	meta := *w.meta
	meta.Header = withLength(meta.Header, w.n)
	entry := diskEntry{id: w.id, bodyLen: w.n, writeID: w.writeID, verified: true}
	err := finishFile(w.f, encodeMeta(nil, &meta), w.writeID, w.n, w.crc.Sum32(), d.fsync, &entry.stamp)
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		d.fail(opWrite, err)
		d.fs.Remove(w.path)
		w.path = ""
		return nil, fmt.Errorf("storage: commit %q: %w", meta.Key, err)
	}
	tmp := &tempFile{tmp: w.path, entry: entry}
	if err := d.install(tmp, func() bool { return !w.cancelled }); err != nil {
		w.path = ""
		if errors.Is(err, errCancelled) {
			return nil, ErrDeleted
		}
		return nil, err
	}
	w.path = d.path(w.id)
	// the new body replaces older versions of the key elsewhere
	t.ram.Delete(meta.Key)
	t.cancelPending(meta.Key)
	meta.disk = &diskRef{path: w.path, id: w.id, writeID: w.writeID, bodyLen: w.n, bodyCRC: w.crc.Sum32(), fs: d.fs}
	return &meta, nil
}

// Abort ends an unfinished write: readers get ErrAborted after what was
// written, and the temporary file is removed. After Commit it does nothing,
// so it is safe to defer.
func (w *Writer) Abort() {
	w.mu.Lock()
	if w.state != writing {
		w.mu.Unlock()
		return
	}
	w.state = aborted
	if w.err == nil {
		w.err = ErrAborted
	}
	w.signal()
	path := w.path
	w.path = ""
	w.mu.Unlock()
	w.f.Close()
	w.t.disk.fs.Remove(path)
	w.t.forget(w)
}

// withLength returns h with Content-Length n (a copy; h is not modified).
func withLength(h http.Header, n int64) http.Header {
	v := strconv.FormatInt(n, 10)
	if cur := h["Content-Length"]; len(cur) == 1 && cur[0] == v {
		return h
	}
	out := make(http.Header, len(h)+1)
	for k, vs := range h {
		out[k] = vs
	}
	out["Content-Length"] = []string{v}
	return out
}

// Reader reads a Writer's body from the start while it is written.
type Reader struct {
	w   *Writer
	ctx context.Context
	f   *os.File
	off int64
}

// NewReader opens the body for reading from its first byte. ctx bounds
// Read's waits for more data. Close the reader when done.
func (w *Writer) NewReader(ctx context.Context) (*Reader, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.path == "" {
		if w.state == aborted {
			return nil, ErrAborted
		}
		return nil, ErrGone
	}
	f, err := w.t.disk.fs.Open(w.path)
	if err != nil {
		return nil, fmt.Errorf("storage: open streaming body: %w", err)
	}
	return &Reader{w: w, ctx: ctx, f: f}, nil
}

// Read reads the next bytes of the body, waiting for the writer when it is
// ahead. It returns io.EOF at the end of a complete body, ErrAborted (after
// every byte that was written) for a body that will not be completed, and
// ctx's error when ctx is done.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, whole, err := r.w.Wait(r.ctx, r.off)
	if r.off < n {
		k, rerr := r.f.ReadAt(p[:min(int64(len(p)), n-r.off)], r.off)
		r.off += int64(k)
		if k > 0 || rerr == nil || rerr == io.EOF {
			return k, nil
		}
		return k, rerr
	}
	if err != nil {
		return 0, err
	}
	if whole {
		return 0, io.EOF
	}
	return 0, nil
}

// ReadAt reads from off what is available now, without waiting: n <
// len(p) with a nil error means the writer has not written further yet (see
// Writer.Wait); io.EOF means the end of the complete body was reached;
// ErrAborted that the body ends here incomplete. (Unlike io.ReaderAt, a
// short read is not an error while the body is still arriving.)
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	r.w.mu.Lock()
	n, st, werr := r.w.n, r.w.state, r.w.err
	r.w.mu.Unlock()
	var k int
	if off < n && len(p) > 0 {
		var err error
		k, err = r.f.ReadAt(p[:min(int64(len(p)), n-off)], off)
		if err != nil && err != io.EOF {
			return k, err
		}
	}
	end := off+int64(k) >= n
	switch {
	case end && st == complete:
		return k, io.EOF
	case end && (st == aborted || werr != nil):
		return k, abortErr(werr)
	}
	return k, nil
}

// Close releases the reader's file.
func (r *Reader) Close() error { return r.f.Close() }
