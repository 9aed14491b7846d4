package storage

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

func obj(key string, body int) *Object {
	return &Object{Key: key, Status: 200, Body: make([]byte, body)}
}

func TestRAMBasics(t *testing.T) {
	for _, p := range Policies {
		t.Run(string(p), func(t *testing.T) {
			r, err := NewRAMPolicy(1<<20, 4, p)
			if err != nil {
				t.Fatal(err)
			}
			a := obj("a", 100)
			if !r.Put(a) {
				t.Fatal("Put a")
			}
			if got, ok := r.Get("a"); !ok || got != a {
				t.Fatal("Get a")
			}
			if _, ok := r.Get("b"); ok {
				t.Fatal("Get b hit")
			}
			a2 := obj("a", 200)
			r.Put(a2)
			if got, _ := r.Get("a"); got != a2 {
				t.Fatal("replacement not served")
			}
			if st := r.Stats(); st.Objects != 1 || st.Bytes != a2.Size() {
				t.Fatalf("stats %+v, want 1 object of %d bytes", st, a2.Size())
			}
			n := 0
			r.Range(func(o *Object) bool { n++; return true })
			if n != 1 {
				t.Fatalf("Range visited %d", n)
			}
			if !r.Delete("a") || r.Delete("a") {
				t.Fatal("Delete")
			}
			if st := r.Stats(); st.Objects != 0 || st.Bytes != 0 {
				t.Fatalf("stats after delete %+v", st)
			}
			// too big for a shard: refused, and the old version goes
			r.Put(obj("big", 100))
			if r.Put(obj("big", int(r.MaxObject()))) {
				t.Fatal("stored an object larger than a shard")
			}
			if _, ok := r.Get("big"); ok {
				t.Fatal("old version survived a refused replacement")
			}
		})
	}
}

func TestRAMBudgetAndEvictions(t *testing.T) {
	for _, p := range Policies {
		t.Run(string(p), func(t *testing.T) {
			r, _ := NewRAMPolicy(256<<10, 2, p)
			var mu sync.Mutex
			evicted := map[string]bool{}
			r.OnEvict = func(o *Object) {
				mu.Lock()
				evicted[o.Key] = true
				mu.Unlock()
			}
			for i := range 2000 {
				r.Put(obj(fmt.Sprint("k", i), 1000))
				if b := r.Stats().Bytes; b > 256<<10 {
					t.Fatalf("after %d puts: %d bytes over budget", i, b)
				}
			}
			st := r.Stats()
			held := 0
			r.Range(func(o *Object) bool {
				held++
				if evicted[o.Key] {
					t.Errorf("%s is held and was reported evicted", o.Key)
				}
				return true
			})
			if int64(held) != st.Objects || held+len(evicted) != 2000 || st.Evictions != uint64(len(evicted)) {
				t.Fatalf("held %d, stats %+v, evicted %d: every object must be held or evicted once", held, st, len(evicted))
			}
		})
	}
}

// Concurrent Get, Put and Delete on shared keys (run with -race).
func TestRAMConcurrent(t *testing.T) {
	r := NewRAM(4<<20, 8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				k := fmt.Sprint("k", (i*7+g)%500)
				switch i % 5 {
				case 0:
					r.Put(obj(k, 2000))
				case 1:
					r.Delete(k)
				default:
					if o, ok := r.Get(k); ok && o.Key != k {
						t.Errorf("Get %s returned %s", k, o.Key)
					}
				}
			}
		}()
	}
	wg.Wait()
	st := r.Stats()
	n := int64(0)
	var bytes int64
	r.Range(func(o *Object) bool { n++; bytes += o.Size(); return true })
	if n != st.Objects || bytes != st.Bytes {
		t.Fatalf("stats %+v, Range counts %d objects %d bytes", st, n, bytes)
	}
}

// TestIndexOverhead measures what the RAM tier's index costs per object
// beyond the object itself (its struct, key and body are allocated before
// the measurement): the policy's list entries, map slots and sketch.
func TestIndexOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	const n = 200000
	for _, c := range []struct {
		policy Policy
		limit  float64
		full   bool // insert 2n objects into a budget for n, so ghost lists fill
	}{
		{PolicyTinyLFU, 150, false}, {PolicyTinyLFU, 150, true},
		{PolicyLRU, 150, false},
		{Policy2Q, 0, true}, {PolicyARC, 0, true},
	} {
		name := string(c.policy)
		if c.full {
			name += "/full"
		}
		t.Run(name, func(t *testing.T) {
			total := n
			if c.full {
				total = 2 * n
			}
			objs := make([]*Object, total)
			for i := range objs {
				objs[i] = &Object{Key: fmt.Sprintf("example.com/path/%08d", i), Status: 200}
			}
			budget := int64(n) * objs[0].Size()
			if !c.full {
				budget *= 2
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r, _ := NewRAMPolicy(budget, 1, c.policy)
			for _, o := range objs {
				r.Put(o)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := r.Stats().Objects
			per := float64(after.HeapAlloc-before.HeapAlloc) / float64(held)
			t.Logf("%s: %.0f bytes of index per object (%d objects held; Object struct itself: %d bytes)", name, per, held, unsafe.Sizeof(Object{}))
			if c.limit > 0 && per > c.limit {
				t.Errorf("index overhead %.0f bytes per object, goal < %.0f", per, c.limit)
			}
			runtime.KeepAlive(objs)
			runtime.KeepAlive(r)
		})
	}
}

// TestDiskIndexOverhead measures the disk tier's memory per file.
func TestDiskIndexOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	const n = 200000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d := &diskTier{}
	d.index, _ = simplelru.NewLRU[fileID, *diskEntry](1<<62, nil)
	for i := range n {
		id := idOf(fmt.Sprint(i))
		d.index.Add(id, &diskEntry{id: id, writeID: uint64(i) + 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("disk index: %.0f bytes per file", float64(after.HeapAlloc-before.HeapAlloc)/n)
	runtime.KeepAlive(d)
}

// The structures a hit writes are whole cache-line blocks, so shards do
// not share lines.
func TestHotStructsPadded(t *testing.T) {
	for name, size := range map[string]uintptr{
		"ramShard":      unsafe.Sizeof(ramShard{}),
		"frequency":     unsafe.Sizeof(frequency{}),
		"tinyLFUPolicy": unsafe.Sizeof(tinyLFUPolicy{}),
	} {
		if size%128 != 0 {
			t.Errorf("%s is %d bytes, not a multiple of 128", name, size)
		}
	}
}
