//go:build !linux

package origin

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// fileID identifies one version of a file's content. Off Linux it
// falls back to name, size and mtime, which a same-size rewrite within the clock's
// resolution can defeat; and opening a FIFO in the root would block.
type fileID struct {
	name  string
	size  int64
	mtime int64
}

func idOf(fi fs.FileInfo) fileID {
	return fileID{name: fi.Name(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

const openFlags = os.O_RDONLY

// transientOpenError reports errors that say nothing about the file: a 503, not a 404.
func transientOpenError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.EIO)
}
