package edge

import (
	"context"
	"io"
	"net/http"
	"os"

	"github.com/vergecdn/verge/edge/storage"
)

// bodySource is where a response body comes from: a stored body in RAM, a
// stored body on disk, or a body still arriving from upstream (in memory,
// or streaming into the disk tier).
type bodySource interface {
	// size is the body's length, or -1 while it is arriving without one.
	size() int64
	// complete waits until the whole body is there and returns its length.
	complete(ctx context.Context) (int64, error)
	// write copies n bytes from off (n < 0: to the end) to w, waiting for
	// bytes still arriving. A client that goes away ends it without error.
	write(ctx context.Context, w http.ResponseWriter, off, n int64) (int64, error)
}

var (
	_ bodySource = (*memBody)(nil)
	_ bodySource = (*fileBody)(nil)
	_ bodySource = (*growBody)(nil)
	_ bodySource = writerBody{}
)

// memBody is a stored object whose whole body is in RAM. It is the object
// itself, converted, so a hit builds no value to serve it.
type memBody storage.Object

func (b *memBody) size() int64                             { return int64(len(b.Body)) }
func (b *memBody) complete(context.Context) (int64, error) { return int64(len(b.Body)), nil }
func (b *memBody) write(_ context.Context, w http.ResponseWriter, off, n int64) (int64, error) {
	end := int64(len(b.Body))
	if n >= 0 && off+n < end {
		end = off + n
	}
	k, _ := w.Write(b.Body[off:end])
	return int64(k), nil
}

// fileBody is a stored body in the disk tier, opened for one response; its
// bytes go out with sendfile where the connection allows.
type fileBody struct {
	f    *os.File
	base int64 // file offset of the body
	n    int64
}

// openBody opens obj's disk body. storage.ErrGone means it left the tier
// since the lookup: the caller treats that as a miss.
func openBody(obj *storage.Object) (*fileBody, error) {
	f, n, err := obj.OpenBody()
	if err != nil {
		return nil, err
	}
	base, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileBody{f: f, base: base, n: n}, nil
}

func (b *fileBody) size() int64                             { return b.n }
func (b *fileBody) complete(context.Context) (int64, error) { return b.n, nil }
func (b *fileBody) close()                                  { b.f.Close() }

func (b *fileBody) write(_ context.Context, w http.ResponseWriter, off, n int64) (int64, error) {
	if n < 0 || off+n > b.n {
		n = b.n - off
	}
	if _, err := b.f.Seek(b.base+off, io.SeekStart); err != nil {
		return 0, err
	}
	// io.Copy hands a LimitedReader of an *os.File to the connection's
	// ReadFrom, which net/http turns into sendfile.
	k, err := io.Copy(w, io.LimitReader(b.f, n))
	if err != nil && k < n {
		if _, werr := w.Write(nil); werr != nil {
			return k, nil // the client went away
		}
		return k, err
	}
	return k, nil
}

// writerBody is a body streaming into the disk tier; each response reads it
// as it arrives.
type writerBody struct{ w *storage.Writer }

func (b writerBody) size() int64 { return -1 }

func (b writerBody) complete(ctx context.Context) (int64, error) {
	for {
		n, whole, err := b.w.Wait(ctx, 1<<62)
		if err != nil || whole {
			return n, err
		}
	}
}

func (b writerBody) write(ctx context.Context, w http.ResponseWriter, off, n int64) (int64, error) {
	rd, err := b.w.NewReader(ctx)
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	buf := make([]byte, 32<<10)
	rc := http.NewResponseController(w)
	var written int64
	for n < 0 || written < n {
		pos := off + written
		avail, whole, err := b.w.Wait(ctx, pos)
		if err != nil {
			if ctx.Err() != nil {
				return written, nil // the client left
			}
			return written, err
		}
		if avail <= pos {
			if whole {
				break
			}
			continue
		}
		chunk := min(int64(len(buf)), avail-pos)
		if n >= 0 {
			chunk = min(chunk, n-written)
		}
		k, rerr := rd.ReadAt(buf[:chunk], pos)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			written += int64(m)
			if werr != nil {
				return written, nil
			}
			rc.Flush()
		}
		if rerr != nil && rerr != io.EOF {
			return written, rerr
		}
	}
	return written, nil
}
