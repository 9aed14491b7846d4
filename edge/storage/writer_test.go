package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// readAll reads r to the end, returning what it read and the final error
// (nil at io.EOF).
func readAll(r *Reader) ([]byte, error) {
	var buf bytes.Buffer
	p := make([]byte, 7000)
	for {
		n, err := r.Read(p)
		buf.Write(p[:n])
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return buf.Bytes(), err
		}
	}
}

type readResult struct {
	body []byte
	err  error
}

// startReaders starts n readers of w, each reading to the end.
func startReaders(t *testing.T, w *Writer, n int, out chan<- readResult) {
	t.Helper()
	for range n {
		r, err := w.NewReader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer r.Close()
			b, err := readAll(r)
			out <- readResult{b, err}
		}()
	}
}

// writeChunks writes body to w in random-sized chunks.
func writeChunks(t *testing.T, w *Writer, body []byte, seed uint64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 1))
	for len(body) > 0 {
		n := min(len(body), 1+rnd.IntN(50000))
		if _, err := w.Write(body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
}

func TestWriterConcurrentReaders(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	meta := response("stream", 0)
	meta.Body = nil
	body := bodyFor("stream", 3<<20+12345)
	w, err := tr.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan readResult, 8)
	startReaders(t, w, 4, results) // from the start
	writeChunks(t, w, body[:1<<20], 1)
	startReaders(t, w, 4, results) // joining mid-stream: still from byte 0
	if got := w.Written(); got != 1<<20 {
		t.Fatalf("Written = %d", got)
	}
	writeChunks(t, w, body[1<<20:], 2)
	o, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	for range 8 {
		r := <-results
		if r.err != nil || !bytes.Equal(r.body, body) {
			t.Fatalf("reader: %d bytes, err %v", len(r.body), r.err)
		}
	}
	// the committed object, and the same from the store
	if o.Body != nil || o.BodyLen() != int64(len(body)) || o.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("committed object: len %d, Content-Length %q", o.BodyLen(), o.Header.Get("Content-Length"))
	}
	if meta.Header.Get("Content-Length") != "" {
		t.Fatal("Commit modified the caller's header")
	}
	for _, got := range []*Object{o, must(tr.Get("stream"))} {
		if b := readBody(t, got); !bytes.Equal(b, body) {
			t.Fatal("stored body differs")
		}
	}
	// a reader opened after Commit reads the stored file
	r, err := w.NewReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := readAll(r)
	r.Close()
	if err != nil || !bytes.Equal(b, body) {
		t.Fatalf("late reader: %d bytes, %v", len(b), err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Commit")
	}
	w.Abort() // no effect after Commit
	if _, ok := tr.Get("stream"); !ok {
		t.Fatal("Abort after Commit removed the object")
	}
	checkIndexMatchesFiles(t, tr)
}

func must(o *Object, ok bool) *Object {
	if !ok {
		panic("missing object")
	}
	return o
}

func TestWriterReadAtAndWait(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	w, err := tr.Create(response("ra", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	r, _ := w.NewReader(context.Background())
	defer r.Close()
	p := make([]byte, 10)
	if n, err := r.ReadAt(p, 0); n != 0 || err != nil {
		t.Fatalf("empty: %d %v", n, err)
	}
	w.Write([]byte("hello"))
	if n, err := r.ReadAt(p, 0); n != 5 || err != nil || string(p[:5]) != "hello" {
		t.Fatalf("partial: %d %v %q", n, err, p[:n])
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, whole, err := w.Wait(ctx, 5); n != 5 || whole || !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with nothing new: %d %v %v", n, whole, err)
	}
	if n, _, err := w.Wait(context.Background(), 2); n != 5 || err != nil {
		t.Fatalf("Wait with data beyond off: %d %v", n, err)
	}
	w.Write([]byte(" world"))
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.ReadAt(p, 6); n != 5 || err != io.EOF || string(p[:5]) != "world" {
		t.Fatalf("end: %d %v %q", n, err, p[:n])
	}
	if n, whole, err := w.Wait(context.Background(), 11); n != 11 || !whole || err != nil {
		t.Fatalf("Wait at the end: %d %v %v", n, whole, err)
	}
}

func TestWriterAbort(t *testing.T) {
	dir := t.TempDir()
	tr := open(t, testConfig(dir), Options{})
	w, _ := tr.Create(response("ab", 0))
	results := make(chan readResult, 2)
	startReaders(t, w, 2, results)
	w.Write(bodyFor("ab", 100000))
	w.Abort()
	for range 2 {
		r := <-results
		if !errors.Is(r.err, ErrAborted) || len(r.body) != 100000 {
			t.Fatalf("reader of an aborted write: %d bytes, %v", len(r.body), r.err)
		}
	}
	if _, ok := tr.Get("ab"); ok {
		t.Fatal("aborted object stored")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Fatalf("%d temp files left", len(ents))
	}
	if _, err := w.NewReader(context.Background()); !errors.Is(err, ErrAborted) {
		t.Fatalf("NewReader after Abort: %v", err)
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit after Abort")
	}
}

// A disk that fails mid-body: Write reports it, readers get ErrAborted after
// what was written.
func TestWriterWriteFails(t *testing.T) {
	fs := &faultyFS{}
	tr := open(t, testConfig(t.TempDir()), Options{fs: fs})
	w, _ := tr.Create(response("wf", 0))
	results := make(chan readResult, 1)
	startReaders(t, w, 1, results)
	w.Write(make([]byte, 5000))
	fs.set(func(f *faultyFS) { f.writeErr = syscall.ENOSPC })
	if _, err := w.Write(make([]byte, 10)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write on a full disk: %v", err)
	}
	r := <-results
	if !errors.Is(r.err, ErrAborted) || !errors.Is(r.err, syscall.ENOSPC) || len(r.body) != 5000 {
		t.Fatalf("reader: %d bytes, %v", len(r.body), r.err)
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit of a failed write")
	}
	w.Abort()
}

// Storing can fail at Commit (rename refused); readers still get the whole
// body, which was complete.
func TestWriterCommitFailsReadersComplete(t *testing.T) {
	fs := &faultyFS{}
	tr := open(t, testConfig(t.TempDir()), Options{fs: fs})
	w, _ := tr.Create(response("cf", 0))
	results := make(chan readResult, 2)
	startReaders(t, w, 2, results)
	body := bodyFor("cf", 200000)
	writeChunks(t, w, body, 3)
	fs.set(func(f *faultyFS) { f.renameErr = syscall.EIO })
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit succeeded though rename failed")
	}
	for range 2 {
		r := <-results
		if r.err != nil || !bytes.Equal(r.body, body) {
			t.Fatalf("reader: %d bytes, %v", len(r.body), r.err)
		}
	}
	if _, ok := tr.Get("cf"); ok {
		t.Fatal("object stored though Commit failed")
	}
}

// A purge during the write: the body completes for its readers but is not
// stored.
func TestWriterDeletedDuringWrite(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	w, _ := tr.Create(response("del", 0))
	results := make(chan readResult, 1)
	startReaders(t, w, 1, results)
	body := bodyFor("del", 300000)
	w.Write(body[:1000])
	tr.Delete("del")
	w.Write(body[1000:])
	if _, err := w.Commit(); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Commit after Delete: %v", err)
	}
	if r := <-results; r.err != nil || !bytes.Equal(r.body, body) {
		t.Fatalf("reader: %d bytes, %v", len(r.body), r.err)
	}
	if _, ok := tr.Get("del"); ok {
		t.Fatal("purged object stored")
	}
}

func TestWriterTooLarge(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Disk.MaxObjectBytes = 64 << 10
	tr := open(t, cfg, Options{})
	w, _ := tr.Create(response("huge", 0))
	defer w.Abort()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = w.Write(make([]byte, 4096))
	}
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("writing past max_object_bytes: %v", err)
	}
}

// Many writers and readers at once, with Gets and Deletes (run with -race).
func TestWriterConcurrentWriters(t *testing.T) {
	tr := open(t, testConfig(t.TempDir()), Options{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				key := "cw" + string(rune('a'+g)) + string(rune('0'+i))
				w, err := tr.Create(response(key, 0))
				if err != nil {
					t.Error(err)
					return
				}
				results := make(chan readResult, 2)
				startReaders(t, w, 2, results)
				body := bodyFor(key, 50000+g*1000)
				writeChunks(t, w, body, uint64(g*10+i))
				if i == 3 {
					tr.Delete(key)
				}
				_, err = w.Commit()
				if (err != nil) != (i == 3) {
					t.Errorf("%s: Commit %v", key, err)
				}
				for range 2 {
					if r := <-results; r.err != nil || !bytes.Equal(r.body, body) {
						t.Errorf("%s: reader %d bytes %v", key, len(r.body), r.err)
					}
				}
				if o, ok := tr.Get(key); ok != (i != 3) || ok && !bytes.Equal(readBody(t, o), body) {
					t.Errorf("%s: Get ok=%v", key, ok)
				}
			}
		}()
	}
	wg.Wait()
	checkIndexMatchesFiles(t, tr)
}
