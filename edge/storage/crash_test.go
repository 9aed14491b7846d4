package storage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The crash test runs this test binary again as a child that writes under
// load, kills it with SIGKILL at several points, and checks what a restart
// finds: nothing torn or corrupt is served (every body matches the bytes
// its key and version determine), the index names exactly the files on
// disk, and the budget holds.
const (
	crashChildEnv = "VERGE_STORAGE_CRASH_DIR"
	crashSeedEnv  = "VERGE_STORAGE_CRASH_SEED"
)

func crashConfig(dir string) Config {
	c := testConfig(dir)
	c.Disk.Bytes = 8 << 20 // small: evictions all the time
	c.Disk.MaxObjectBytes = 2 << 20
	c.Disk.SaveRAMOnClose = false
	return c
}

// crashObject is version v of key: the body follows from both.
func crashObject(key string, v, size int) *Object {
	o := response(key, 0)
	o.Header = o.Header.Clone()
	o.Header["X-Version"] = []string{strconv.Itoa(v)}
	o.Body = bodyFor(key+"/"+strconv.Itoa(v), size)
	return o
}

func TestCrashKill(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashChild(dir, seed)
		return
	}
	if testing.Short() {
		t.Skip("runs child processes")
	}
	dir := t.TempDir()
	for round, killAfter := range []int{150, 600, 1500, 40} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill$", "-test.timeout=120s")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s=%d", crashSeedEnv, round+1))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		ops := 0
		for ops < killAfter && sc.Scan() {
			if bytes.HasPrefix(sc.Bytes(), []byte("op ")) {
				ops++
			}
		}
		cmd.Process.Kill() // SIGKILL: no cleanup of any kind
		cmd.Wait()
		if ops < killAfter {
			t.Fatalf("round %d: child stopped after %d operations", round, ops)
		}

		tr, err := Open(context.Background(), crashConfig(dir), Options{})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		checkIndexMatchesFiles(t, tr)
		if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
			t.Fatalf("round %d: %d temp files left", round, len(ents))
		}
		var keys []string
		tr.Range(func(o *Object) bool { keys = append(keys, o.Key); return true })
		for _, k := range keys {
			o, ok := tr.Get(k) // a first read checks the body's checksum
			if !ok {
				continue // dropped as corrupt: allowed, never served
			}
			v, _ := strconv.Atoi(o.Header.Get("X-Version"))
			want := bodyFor(k+"/"+strconv.Itoa(v), int(o.BodyLen()))
			if got := readBody(t, o); !bytes.Equal(got, want) {
				t.Fatalf("round %d: %s version %d: served body differs from what was written", round, k, v)
			}
		}
		st := tr.TierStats()["disk"]
		t.Logf("round %d: killed after %d operations; restart found %d objects, %d bytes (budget %d), recovery %v",
			round, ops, st.Objects, st.Bytes, st.Capacity, tr.disk.recoveryTime)
		if len(keys) == 0 {
			t.Fatalf("round %d: nothing survived the crash", round)
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// crashChild writes until it is killed: small objects through RAM (spilled
// when evicted), large ones straight to disk, streaming writes, new
// versions of old keys, deletes, and checkpoints, from several goroutines.
func crashChild(dir string, seed uint64) {
	tr, err := Open(context.Background(), crashConfig(dir), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	var mu sync.Mutex // serializes progress lines
	report := func(what string) {
		mu.Lock()
		fmt.Println("op", what)
		mu.Unlock()
	}
	for g := range 3 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := 0; ; i++ {
				key := fmt.Sprintf("c%d", r.IntN(400))
				v := r.IntN(1000)
				switch op := r.IntN(20); {
				case op < 12:
					tr.Put(crashObject(key, v, 1000+r.IntN(60000)))
				case op < 15:
					tr.Put(crashObject(key, v, 300<<10+r.IntN(400<<10)))
				case op < 17:
					o := crashObject(key, v, 0)
					o.Body = nil
					w, err := tr.Create(o)
					if err != nil {
						continue
					}
					body := bodyFor(key+"/"+strconv.Itoa(v), 100<<10+r.IntN(500<<10))
					for len(body) > 0 {
						n := min(len(body), 32<<10)
						w.Write(body[:n])
						body = body[n:]
					}
					w.Commit()
				case op < 19:
					tr.Delete(key)
				default:
					tr.Checkpoint()
				}
				report(key)
			}
		}()
	}
	select {}
}
