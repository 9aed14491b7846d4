package origin

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// FuzzServeRange sends any Range header through the handler and checks the
// answer against the file: a 200 is the whole file, a 416 names the size,
// and every byte of a 206 (single or multipart) is the file's byte at the
// position its Content-Range gives.
func FuzzServeRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=0-0,-1", "bytes=1-2,5-9,20-", "bytes=0-9,5-14",
		"bytes=999-", "bytes=1000-", "bytes=,,0-1", "bytes=x"} {
		f.Add(s)
	}
	body := content(1000)
	cfg := DefaultConfig()
	cfg.Root = f.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.Root, "f.bin"), body, 0o644); err != nil {
		f.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, rh string) {
		req := httptest.NewRequest("GET", "/f.bin", nil)
		req.Header.Set("Range", rh)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		res := w.Result()
		got := w.Body.Bytes()
		switch res.StatusCode {
		case 200:
			if !bytes.Equal(got, body) {
				t.Fatalf("%q: 200 with %d bytes", rh, len(got))
			}
		case 416:
			if res.Header.Get("Content-Range") != "bytes */1000" {
				t.Fatalf("%q: 416 Content-Range %q", rh, res.Header.Get("Content-Range"))
			}
		case 206:
			if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(got)) {
				t.Fatalf("%q: Content-Length %s for %d bytes", rh, cl, len(got))
			}
			mt, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
			if mt != "multipart/byteranges" {
				checkPart(t, rh, res.Header.Get("Content-Range"), got, body)
				return
			}
			mr := multipart.NewReader(bytes.NewReader(got), params["boundary"])
			n := 0
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%q: part %d: %v", rh, n, err)
				}
				pb, _ := io.ReadAll(p)
				checkPart(t, rh, p.Header.Get("Content-Range"), pb, body)
				n++
			}
			if n < 2 || n > cfg.MaxRanges {
				t.Fatalf("%q: %d parts", rh, n)
			}
		default:
			t.Fatalf("%q: status %d", rh, res.StatusCode)
		}
	})
}

func checkPart(t *testing.T, rh, cr string, got, body []byte) {
	t.Helper()
	var first, last, size int
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &size); err != nil || size != len(body) ||
		first < 0 || last < first || last >= size {
		t.Fatalf("%q: Content-Range %q", rh, cr)
	}
	if !bytes.Equal(got, body[first:last+1]) {
		t.Fatalf("%q: part %q does not hold those bytes", rh, cr)
	}
}
