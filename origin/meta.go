package origin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// meta is what the origin knows about one version of a file: its validators
// and the header values built from them, shared by every response.
type meta struct {
	id      fileID
	size    int64
	etag    string    // strong: a quoted hash of the content
	modTime time.Time // UTC, whole seconds

	hETag    []string
	hLastMod []string
	hLength  []string
}

func newMeta(id fileID, modTime time.Time, sum []byte) *meta {
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	mt := modTime.UTC().Truncate(time.Second)
	return &meta{
		id:       id,
		size:     id.size,
		etag:     etag,
		modTime:  mt,
		hETag:    []string{etag},
		hLastMod: []string{mt.Format(http.TimeFormat)},
		hLength:  []string{strconv.FormatInt(id.size, 10)},
	}
}

// errChanging is returned when a file keeps changing while it is hashed.
var errChanging = errors.New("file changed while it was being hashed")

// metaCache maps file versions to their meta, hashing each version once:
// concurrent requests for a version not yet hashed wait for one hash.
type metaCache struct {
	lru *lru.Cache[fileID, *meta] // safe for concurrent use

	mu       sync.Mutex // guards inflight
	inflight map[fileID]*hashCall

	bufs sync.Pool // *[]byte read buffers for hashing

	hashed     func(bytes int64) // called after each hash (metrics)
	beforeHash func()            // test hook, nil in production
	onWait     func()            // test hook: a request joins a hash in flight
}

type hashCall struct {
	done chan struct{}
	m    *meta
	err  error
}

func newMetaCache(entries int, hashed func(int64)) (*metaCache, error) {
	l, err := lru.New[fileID, *meta](entries)
	if err != nil {
		return nil, fmt.Errorf("origin: etag cache: %w", err)
	}
	return &metaCache{
		lru:      l,
		inflight: map[fileID]*hashCall{},
		bufs:     sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }},
		hashed:   hashed,
	}, nil
}

// get returns the meta of the open file f, whose stat is fi, hashing its
// content if this version has not been seen. If the file changes while it is
// hashed, it is stat'ed and hashed again, a few times at most.
func (c *metaCache) get(ctx context.Context, f *os.File, fi fs.FileInfo) (*meta, error) {
	for attempt := 0; ; attempt++ {
		m, err := c.getOnce(ctx, f, fi)
		if !errors.Is(err, errChanging) || attempt == 2 {
			return m, err
		}
		if fi, err = f.Stat(); err != nil {
			return nil, err
		}
	}
}

func (c *metaCache) getOnce(ctx context.Context, f *os.File, fi fs.FileInfo) (*meta, error) {
	id := idOf(fi)
	if m, ok := c.lru.Get(id); ok {
		return m, nil
	}
	c.mu.Lock()
	if m, ok := c.lru.Get(id); ok { // finished between the Get above and the lock
		c.mu.Unlock()
		return m, nil
	}
	if call, ok := c.inflight[id]; ok {
		c.mu.Unlock()
		if c.onWait != nil {
			c.onWait()
		}
		select {
		case <-call.done:
			return call.m, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &hashCall{done: make(chan struct{})}
	c.inflight[id] = call
	c.mu.Unlock()

	call.m, call.err = c.hash(f, fi, id)
	if call.err == nil {
		c.lru.Add(id, call.m)
	}
	c.mu.Lock()
	delete(c.inflight, id)
	c.mu.Unlock()
	close(call.done)
	return call.m, call.err
}

func (c *metaCache) hash(f *os.File, fi fs.FileInfo, id fileID) (*meta, error) {
	if c.beforeHash != nil {
		c.beforeHash()
	}
	h := sha256.New()
	bp := c.bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, id.size), *bp)
	c.bufs.Put(bp)
	if c.hashed != nil {
		c.hashed(n)
	}
	if err != nil {
		return nil, fmt.Errorf("origin: hash %s: %w", fi.Name(), err)
	}
	after, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("origin: hash %s: %w", fi.Name(), err)
	}
	if n != id.size || idOf(after) != id {
		return nil, errChanging
	}
	return newMeta(id, fi.ModTime(), h.Sum(nil)), nil
}

// prime records the hash of a file version computed elsewhere (an upload).
func (c *metaCache) prime(fi fs.FileInfo, sum []byte) *meta {
	m := newMeta(idOf(fi), fi.ModTime(), sum)
	c.lru.Add(m.id, m)
	return m
}
