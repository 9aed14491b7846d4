package edge

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// sizedBody is a deterministic body for path p of n bytes.
func sizedBody(p string, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%s@%d;", p, b.Len())
	}
	return b.Bytes()[:n]
}

func withDisk(dir string) func(*Config) {
	return func(c *Config) {
		c.Cache.RAMBytes = 1 << 20
		c.Cache.Shards = 4 // 256 KiB per shard: the largest object RAM holds
		c.Cache.Disk.Dir = dir
		c.Cache.Disk.Bytes = 64 << 20
		c.Cache.Disk.MaxObjectBytes = 32 << 20
	}
}

// TestDiskTierWarmRestart fills a node with more than its RAM budget,
// restarts it on the same data dir, and gets hits for what was on disk.
func TestDiskTierWarmRestart(t *testing.T) {
	const n, size = 40, 64 << 10 // 2.5 MiB of objects for 1 MiB of RAM
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(sizedBody(r.URL.Path, size))
	})
	dir := t.TempDir()
	te := newEdge(t, o.URL, withDisk(dir))
	for i := 0; i < n; i++ {
		if _, body := te.get(t, fmt.Sprintf("/o/%d", i)); len(body) != size {
			t.Fatalf("object %d: %d bytes", i, len(body))
		}
	}
	if err := te.Close(); err != nil {
		t.Fatal(err)
	}
	te.srv.Close()

	te2 := newEdge(t, o.URL, withDisk(dir))
	hits := 0
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("/o/%d", i)
		resp, body := te2.get(t, p)
		if body != string(sizedBody(p, size)) {
			t.Fatalf("%s after restart: wrong bytes (%d)", p, len(body))
		}
		if cacheStatus(resp) == "edge1; hit" {
			hits++
		}
	}
	if hits < n*9/10 {
		t.Errorf("after a restart %d of %d objects were hits", hits, n)
	}
	t.Logf("warm restart: %d of %d objects hit after the restart (RAM budget 1 MiB, %d KiB of objects)", hits, n, n*size>>10)
	if got := o.count("/o/0"); got > 2 {
		t.Errorf("origin saw /o/0 %d times", got)
	}
}

// TestLargeAndChunkedBodiesStreamToDisk: an object larger than RAM holds, and
// one of unknown length, are streamed into the disk tier while two clients
// read them, then served from disk (ranges included).
func TestLargeAndChunkedBodiesStreamToDisk(t *testing.T) {
	big := sizedBody("/big", 3<<20)
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big[:1<<20])
			w.(http.Flusher).Flush()
			<-release
			w.Write(big[1<<20:])
		case "/chunked": // no Content-Length: chunked
			for i := 0; i < 50; i++ {
				fmt.Fprintf(w, "line %04d\n", i)
				w.(http.Flusher).Flush()
			}
		}
	})
	te := newEdge(t, o.URL, withDisk(t.TempDir()))
	var wg sync.WaitGroup
	for c := 0; c < 2; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", te.srv.URL+"/big", nil)
			req.Host = "www.example.test"
			resp, err := te.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Equal(b, big) {
				t.Errorf("streamed body: %d bytes, equal=%v", len(b), bytes.Equal(b, big))
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // both clients are reading the first MiB
	close(release)
	wg.Wait()

	waitFor(t, func() bool { r, _ := te.get(t, "/big"); return cacheStatus(r) == "edge1; hit" })
	resp, body := te.get(t, "/big")
	if body != string(big) || resp.Header.Get("Content-Length") != fmt.Sprint(len(big)) {
		t.Errorf("disk hit: %d bytes, Content-Length %q", len(body), resp.Header.Get("Content-Length"))
	}
	resp, body = te.get(t, "/big", "Range", "bytes=2097150-2097160")
	if resp.StatusCode != 206 || body != string(big[2097150:2097161]) {
		t.Errorf("range from disk: %d %q", resp.StatusCode, body)
	}
	if o.count("/big") != 1 {
		t.Errorf("origin saw /big %d times", o.count("/big"))
	}

	_, body = te.get(t, "/chunked")
	if !strings.HasPrefix(body, "line 0000\n") || !strings.HasSuffix(body, "line 0049\n") {
		t.Fatalf("chunked body: %q", body)
	}
	waitFor(t, func() bool { r, _ := te.get(t, "/chunked"); return cacheStatus(r) == "edge1; hit" })
	resp, body2 := te.get(t, "/chunked", "Range", "bytes=0-9")
	if resp.StatusCode != 206 || body2 != "line 0000\n" {
		t.Errorf("range of the stored chunked body: %d %q", resp.StatusCode, body2)
	}
	// A purge removes it from the disk tier too.
	if _, err := te.Purge(Purge{Kind: PurgeURL, Value: "http://www.example.test/big"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := te.get(t, "/big"); cacheStatus(r) == "edge1; hit" {
		t.Error("purged disk object still a hit")
	}
}
