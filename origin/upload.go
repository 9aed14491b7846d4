package origin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
)

// tmpPrefix starts the name of a file being uploaded. It begins with "." so
// the file is never served (hidden segments are not) and cannot be named by
// an upload.
const tmpPrefix = ".verge-upload-"

// serveUpload answers PUT and DELETE: first the token (401), then the path
// (400), then the method's own checks.
func (s *Server) serveUpload(w *recorder, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="verge-origin"`)
		s.fail(w, http.StatusUnauthorized, "missing or bad bearer token")
		return
	}
	p, err := parsePath(r.URL.Path, r.URL.EscapedPath(), "")
	if errors.Is(err, errHidden) {
		err = errors.New("bad path: a segment starts with \".\"")
	}
	if err == nil && p.dir {
		err = errors.New("bad path: a file path does not end in \"/\"")
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if r.Method == http.MethodDelete {
		s.remove(w, r, p.rel)
		return
	}
	s.put(w, r, p.rel)
}

// authorized compares the bearer token in constant time (over hashes, so the
// token's length does not leak either).
func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// httpError is an answer decided below the handler.
type httpError struct {
	code int
	msg  string
}

// target inspects what is at rel now and evaluates the request's
// preconditions against it. existed reports whether a file was there.
func (s *Server) target(r *http.Request, rel string) (existed bool, herr *httpError) {
	fi, err := s.root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, syscall.ENOTDIR):
		return false, &httpError{http.StatusConflict, "a parent of this path is a file"}
	case err != nil:
		return false, &httpError{http.StatusBadRequest, "bad path: " + pathErrText(err)}
	case fi.IsDir():
		return false, &httpError{http.StatusConflict, "a directory is at this path"}
	default:
		existed = true
	}
	_, im := r.Header["If-Match"]
	_, inm := r.Header["If-None-Match"]
	if !im && !inm && r.Header.Get("If-Unmodified-Since") == "" {
		return existed, nil
	}
	var v validators
	if existed {
		f, err := s.root.OpenFile(rel, openFlags, 0)
		if err != nil {
			return false, &httpError{http.StatusConflict, "cannot read the current file: " + pathErrText(err)}
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return false, &httpError{http.StatusConflict, "the current file is not a regular file"}
		}
		m, err := s.metas.get(r.Context(), f, fi)
		if err != nil {
			return false, &httpError{http.StatusServiceUnavailable, "cannot hash the current file"}
		}
		v = validators{etag: m.etag, modTime: m.modTime}
	}
	if evalPreconditions(r.Header, r.Method, existed, v) != condPass {
		return existed, &httpError{http.StatusPreconditionFailed, "precondition failed"}
	}
	return existed, nil
}

// put writes the body to a temporary file next to rel, syncs it, checks the
// preconditions again and renames it over rel: readers see the old file or
// the new one, never a part.
func (s *Server) put(w *recorder, r *http.Request, rel string) {
	max := int64(s.cfg.Upload.MaxSize)
	if r.ContentLength > max {
		s.fail(w, http.StatusRequestEntityTooLarge, "body larger than upload.max_size ("+s.cfg.Upload.MaxSize.String()+")")
		return
	}
	if _, herr := s.target(r, rel); herr != nil { // fail early, before reading the body
		s.fail(w, herr.code, herr.msg)
		return
	}
	dir := path.Dir(rel)
	if dir != "." {
		if err := s.root.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				s.fail(w, http.StatusConflict, "a parent of this path is a file")
				return
			}
			s.internal(w, r, "upload mkdir", err)
			return
		}
	}
	tmp := path.Join(dir, tmpPrefix+rand.Text())
	tf, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		s.internal(w, r, "upload create", err)
		return
	}
	renamed := false
	defer func() {
		tf.Close()
		if !renamed {
			s.root.Remove(tmp)
		}
	}()
	sum := sha256.New()
	bp := s.metas.bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(tf, sum), http.MaxBytesReader(w, r.Body, max), *bp)
	s.metas.bufs.Put(bp)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, http.StatusRequestEntityTooLarge, "body larger than upload.max_size ("+s.cfg.Upload.MaxSize.String()+")")
			return
		}
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			s.log.Error("origin: upload write", "path", r.URL.Path, "err", err)
			s.fail(w, http.StatusInsufficientStorage, "no space left for the upload")
			return
		}
		s.fail(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if err := tf.Sync(); err != nil {
		s.internal(w, r, "upload sync", err)
		return
	}

	s.uploadMu.Lock()
	existed, herr := s.target(r, rel)
	if herr == nil {
		err = s.root.Rename(tmp, rel)
		renamed = err == nil
	}
	s.uploadMu.Unlock()
	if herr != nil {
		s.fail(w, herr.code, herr.msg)
		return
	}
	if err != nil {
		s.internal(w, r, "upload rename", err)
		return
	}
	s.syncDir(dir)
	fi, err := tf.Stat() // after the rename, which changes the ctime
	if err != nil {
		s.internal(w, r, "upload stat", err)
		return
	}
	m := s.metas.prime(fi, sum.Sum(nil))
	s.m.uploadBytes.Add(float64(n))
	s.log.Info("origin: upload", "path", r.URL.Path, "bytes", n, "etag", m.etag, "replaced", existed)

	h := w.Header()
	h["Etag"] = m.hETag
	h["Last-Modified"] = m.hLastMod
	h["Cache-Control"] = hNoStore
	if existed {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusCreated)
}

// remove deletes the file at rel (never a directory).
func (s *Server) remove(w *recorder, r *http.Request, rel string) {
	s.uploadMu.Lock()
	existed, herr := s.target(r, rel)
	var err error
	if herr == nil && existed {
		err = s.root.Remove(rel)
	}
	s.uploadMu.Unlock()
	switch {
	case herr != nil:
		s.fail(w, herr.code, herr.msg)
	case !existed:
		s.notFound(w, nil)
	case err != nil:
		s.internal(w, r, "delete", err)
	default:
		s.syncDir(path.Dir(rel))
		s.log.Info("origin: delete", "path", r.URL.Path)
		w.Header()["Cache-Control"] = hNoStore
		w.WriteHeader(http.StatusNoContent)
	}
}

// syncDir makes a rename or remove in dir durable.
func (s *Server) syncDir(dir string) {
	d, err := s.root.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		s.log.Warn("origin: sync directory", "dir", dir, "err", err)
	}
}

// pathErrText is an error's text without the path (which may be an
// internal name).
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
