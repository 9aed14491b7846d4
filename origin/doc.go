// Package origin is Verge's origin server: the source of truth behind the CDN.
//
// A Server serves the files of one directory (the root) over HTTP with what a
// cache tier needs to store and revalidate them:
//
//   - a strong ETag (a hash of the content, computed once per file version and
//     cached by device, inode, size, mtime and ctime) and Last-Modified;
//   - Cache-Control, CDN-Cache-Control and Surrogate-Key headers from ordered
//     per-path rules (a path prefix or a glob; the first match wins), and an
//     optional artificial delay per rule for tests and demos;
//   - conditional requests (If-Match, If-Unmodified-Since, If-None-Match,
//     If-Modified-Since, evaluated in the order RFC 9110 section 13.2.2 gives)
//     and byte ranges (single, or several as multipart/byteranges, with
//     If-Range), capped in number, with overlapping sets rejected;
//   - HEAD, a Content-Type by file extension, and index files for directory
//     paths, but never a directory listing;
//   - an upload API: PUT writes a file atomically (a temporary file, then a
//     rename) and DELETE removes one, both under the content's own paths and
//     both requiring a bearer token.
//
// Every file access goes through an os.Root, so no request path, symlink or
// upload can reach outside the root; request paths are checked before that
// (no "..", no encoded slashes, no NUL or control bytes, no hidden segments).
package origin
