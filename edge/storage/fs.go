package storage

import (
	"io"
	"os"
	"syscall"
)

// fileSystem is every file operation the disk tier makes, so tests can put
// a full, read-only or failing disk under it. Reads return *os.File because
// the engine serves disk bodies with sendfile.
type fileSystem interface {
	// Create makes a new file for writing (it must not exist).
	Create(name string) (writeFile, error)
	Open(name string) (*os.File, error)
	Rename(from, to string) error
	Remove(name string) error
	MkdirAll(name string) error
	ReadDir(name string) ([]os.DirEntry, error)
	Stat(name string) (os.FileInfo, error)
}

// writeFile is a file being written.
type writeFile interface {
	io.Writer
	io.WriterAt
	Sync() error
	Stat() (os.FileInfo, error)
	Close() error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) Create(name string) (writeFile, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
}
func (osFS) Open(name string) (*os.File, error)         { return os.Open(name) }
func (osFS) Rename(from, to string) error               { return os.Rename(from, to) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) MkdirAll(name string) error                 { return os.MkdirAll(name, 0o755) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }
func (osFS) Stat(name string) (os.FileInfo, error)      { return os.Stat(name) }

// fileStamp identifies one version of a file: a file replaced by rename has
// a new inode, and one rewritten in place a new modification time.
type fileStamp struct {
	ino   uint64
	mtime int64 // nanoseconds
	size  int64
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}
