//go:build linux

package origin

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// fileID identifies one version of a file's content: a write changes size,
// mtime or ctime (and a user cannot set ctime), a replacement changes the inode.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func idOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino)
		id.ctime = int64(st.Ctim.Sec)*1e9 + int64(st.Ctim.Nsec)
	}
	return id
}

// openFlags keeps opening a FIFO from blocking; non-regular files are refused
// once open.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK

// transientOpenError reports errors that say nothing about the file (the
// process is out of descriptors or memory, or the disk failed): a 503, not a 404.
func transientOpenError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EIO)
}
