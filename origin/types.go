package origin

import (
	"mime"
	"path"
	"strings"
	"sync"
)

// builtinTypes fixes the Content-Type of common web files, so answers do not
// depend on the host's mime.types files (consulted only for other extensions).
var builtinTypes = map[string]string{
	".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
	".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".mjs": "text/javascript; charset=utf-8", ".json": "application/json",
	".map": "application/json", ".txt": "text/plain; charset=utf-8",
	".md": "text/markdown; charset=utf-8", ".csv": "text/csv; charset=utf-8",
	".xml": "application/xml", ".webmanifest": "application/manifest+json",
	".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
	".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
	".avif": "image/avif", ".ico": "image/vnd.microsoft.icon",
	".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
	".wasm": "application/wasm", ".pdf": "application/pdf",
	".mp4": "video/mp4", ".m4s": "video/iso.segment", ".webm": "video/webm",
	".ts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml",
	".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wav": "audio/wav",
	".zip": "application/zip", ".gz": "application/gzip", ".tar": "application/x-tar",
	".bin": "application/octet-stream",
}

const defaultType = "application/octet-stream"

// typeTable maps extensions to Content-Type header values.
type typeTable struct {
	fixed map[string][]string // built-in and configured, lower-case extensions
	found sync.Map            // string -> []string: answers from package mime
}

func newTypeTable(extra map[string]string) *typeTable {
	t := &typeTable{fixed: make(map[string][]string, len(builtinTypes)+len(extra))}
	for ext, v := range builtinTypes {
		t.fixed[ext] = []string{v}
	}
	for ext, v := range extra {
		t.fixed[strings.ToLower(ext)] = []string{v}
	}
	return t
}

// lookup returns the Content-Type for a file name. It is called only for
// files that exist, so the cache of mime answers stays as small as the set of
// extensions in the root.
func (t *typeTable) lookup(name string) []string {
	ext := strings.ToLower(path.Ext(name))
	if v, ok := t.fixed[ext]; ok {
		return v
	}
	if v, ok := t.found.Load(ext); ok {
		return v.([]string)
	}
	typ := defaultType
	if ext != "" {
		if m := mime.TypeByExtension(ext); m != "" {
			typ = m
		}
	}
	v := []string{typ}
	t.found.Store(ext, v)
	return v
}
