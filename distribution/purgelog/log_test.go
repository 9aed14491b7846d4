package purgelog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vergecdn/verge/edge"
)

// purge returns a distinct valid purge for i (no number).
func purge(i int) edge.Purge {
	switch i % 4 {
	case 0:
		return edge.Purge{Kind: edge.PurgeURL, Value: fmt.Sprintf("http://www.example.test/obj/%d", i)}
	case 1:
		return edge.Purge{Kind: edge.PurgePrefix, Value: fmt.Sprintf("https://www.example.test/dir%d/", i), Soft: true}
	case 2:
		return edge.Purge{Kind: edge.PurgeTag, Value: fmt.Sprintf("tag-%d", i)}
	}
	return edge.Purge{Kind: edge.PurgeHost, Value: fmt.Sprintf("h%d.example.test", i)}
}

func numbered(seq uint64) edge.Purge {
	p := purge(int(seq))
	p.Seq = seq
	return p
}

func openLog(t testing.TB, dir string) *Log {
	t.Helper()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendN(t testing.TB, l *Log, n int) {
	t.Helper()
	for range n {
		if _, err := l.Append(purge(int(l.Last()) + 1)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, p := range []edge.Purge{
		{Seq: 1, Kind: edge.PurgeAll},
		{Seq: 1 << 62, Kind: edge.PurgeURL, Value: "http://a.test/x?y=1", Soft: true},
		{Seq: 300, Kind: edge.PurgeTag, Value: "t"},
		{Seq: 7, Kind: edge.PurgePrefix, Value: "http://a.test/" + strings.Repeat("p", 8000)},
		{Seq: 9, Kind: edge.PurgeHost, Value: "a.test"},
	} {
		b := appendRecord(nil, p)
		got, n, err := decodeRecord(b)
		if err != nil || n != len(b) || got != p {
			t.Errorf("%+v: got %+v n=%d/%d err=%v", p, got, n, len(b), err)
		}
		for cut := range len(b) - 1 {
			if _, _, err := decodeRecord(b[:cut]); err == nil {
				t.Fatalf("%+v cut at %d decoded", p, cut)
			}
		}
	}
}

func TestAppendReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		p, err := l.Append(purge(i))
		if err != nil || p.Seq != uint64(i) {
			t.Fatalf("append %d: seq %d, %v", i, p.Seq, err)
		}
	}
	if _, err := l.Append(numbered(5)); err == nil || !strings.Contains(err.Error(), "assigns the sequence number") {
		t.Errorf("append with a number: %v", err)
	}
	if _, err := l.Append(edge.Purge{Kind: "nope"}); err == nil || !strings.Contains(err.Error(), `unknown kind "nope"`) {
		t.Errorf("append of a bad purge: %v", err)
	}
	sum := l.Summary()
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second open: %v", err)
	}
	l.Close()
	l2 := openLog(t, dir)
	if l2.Last() != 100 || l2.Len() != 100 || l2.Dropped() != 0 {
		t.Fatalf("reopened: last %d len %d dropped %d", l2.Last(), l2.Len(), l2.Dropped())
	}
	if got := l2.Summary(); fmt.Sprint(got) != fmt.Sprint(sum) {
		t.Errorf("summary changed across a reopen")
	}
	for i := uint64(1); i <= 100; i++ {
		if p, ok := l2.Get(i); !ok || p != numbered(i) {
			t.Fatalf("record %d: %+v %v", i, p, ok)
		}
	}
	if p, err := l2.Append(purge(101)); err != nil || p.Seq != 101 {
		t.Errorf("append after reopen: %d %v", p.Seq, err)
	}
}

// TestTornTail cuts the file at every byte of the last record, and flips
// each of its bytes: the log reopens with the other records, and the next
// append reuses the lost number.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	appendN(t, l, 10)
	full := l.Size()
	l.Close()
	path := filepath.Join(dir, FileName)
	data, _ := os.ReadFile(path)
	lastLen := len(appendRecord(nil, numbered(10)))
	for cut := 1; cut < lastLen; cut++ {
		os.WriteFile(path, data[:len(data)-cut], 0o644)
		l := openLog(t, dir)
		if l.Last() != 9 || l.Len() != 9 || l.Dropped() != int64(lastLen-cut) {
			t.Fatalf("cut %d: last %d len %d dropped %d", cut, l.Last(), l.Len(), l.Dropped())
		}
		if p, err := l.Append(purge(10)); err != nil || p.Seq != 10 || l.Size() != full {
			t.Fatalf("cut %d: append %d %v, size %d want %d", cut, p.Seq, err, l.Size(), full)
		}
		l.Close()
	}
	for i := len(data) - lastLen; i < len(data); i++ {
		bad := bytes.Clone(data)
		bad[i] ^= 0x40
		os.WriteFile(path, bad, 0o644)
		l := openLog(t, dir)
		if l.Len() != 9 || l.Dropped() != int64(lastLen) {
			t.Fatalf("flip at %d: len %d dropped %d", i, l.Len(), l.Dropped())
		}
		l.Close()
	}
}

func TestNotALog(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("hello, this is not a purge log"), 0o644)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "is not a purge log") {
		t.Errorf("foreign file: %v", err)
	}
	// A header torn while the log was created is rewritten.
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte(magic[:3]), 0o644)
	l := openLog(t, dir)
	if l.Len() != 0 || l.Size() != int64(len(magic)) {
		t.Errorf("torn header: len %d size %d", l.Len(), l.Size())
	}
	if _, err := Open("", Options{}); err == nil {
		t.Error("empty dir accepted")
	}
}

func TestPut(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	for _, seq := range []uint64{5, 1, 3, 9, 2} {
		if added, err := l.Put(numbered(seq)); !added || err != nil {
			t.Fatalf("put %d: %v %v", seq, added, err)
		}
	}
	if added, err := l.Put(numbered(3)); added || err != nil {
		t.Errorf("put again: %v %v", added, err)
	}
	changed := numbered(3)
	changed.Soft = !changed.Soft
	if added, err := l.Put(changed); !added || err != nil {
		t.Errorf("put a different purge under 3: %v %v", added, err)
	}
	if _, err := l.Put(purge(4)); err == nil {
		t.Error("put without a number accepted")
	}
	var seqs []uint64
	for _, p := range l.Records(0, 100, 0) {
		seqs = append(seqs, p.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 3 5 9]" || l.Last() != 9 {
		t.Errorf("records %v last %d", seqs, l.Last())
	}
	if got := l.Records(2, 5, 2); len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Errorf("records 2-5 limit 2: %+v", got)
	}
	l.Close()
	l2 := openLog(t, dir)
	if p, _ := l2.Get(3); p != changed || l2.Len() != 5 {
		t.Errorf("after reopen the replacement is lost: %+v, %d records", p, l2.Len())
	}
}

func TestMerkle(t *testing.T) {
	a, b := openLog(t, t.TempDir()), openLog(t, t.TempDir())
	for seq := uint64(1); seq <= 5000; seq++ {
		a.Put(numbered(seq))
	}
	for seq := uint64(5000); seq >= 1; seq-- { // other order, same records
		b.Put(numbered(seq))
	}
	sa, sb := a.Summary(), b.Summary()
	if sa.Level != 1 || len(sa.Hashes) != 5 || fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Fatalf("summaries: %v / %v", sa, sb)
	}
	// One changed record changes one node per level, and nothing else.
	p := numbered(1234)
	p.Soft = !p.Soft
	b.Put(p)
	for level := 0; level <= 2; level++ {
		for i := range uint64(100) {
			differs := a.Hash(level, i) != b.Hash(level, i)
			if want := i == 1234>>shift(level); differs != want {
				t.Errorf("level %d node %d: differs %v, want %v", level, i, differs, want)
			}
		}
	}
	if a.Hash(0, 1000) != (Hash{}) || a.Hash(MaxLevel, 3) != (Hash{}) || a.Hash(MaxLevel+1, 0) != (Hash{}) {
		t.Error("empty ranges must hash to zero")
	}
	if a.Hash(MaxLevel, 0) == (Hash{}) {
		t.Error("the root of a non-empty log is zero")
	}
	for _, c := range []struct {
		last  uint64
		level int
	}{{0, 0}, {1023, 0}, {1024, 1}, {16383, 1}, {16384, 2}, {1<<64 - 1, MaxLevel}} {
		if got := topLevel(c.last); got != c.level {
			t.Errorf("topLevel(%d) = %d, want %d", c.last, got, c.level)
		}
	}
	if s := openLog(t, t.TempDir()).Summary(); s.Count != 0 || len(s.Hashes) != 0 {
		t.Errorf("empty summary %+v", s)
	}
}

func TestHashText(t *testing.T) {
	h := Hash{1, 2, 3}
	got, err := ParseHash(h.String())
	if err != nil || got != h {
		t.Errorf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"00", strings.Repeat("zz", 32), strings.Repeat("00", 32)} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, p := range []edge.Purge{numbered(1), numbered(2), numbered(3), numbered(4), {Seq: 5, Kind: edge.PurgeAll}} {
		f.Add(appendRecord(nil, p))
	}
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := decodeRecord(b)
		if err != nil {
			return
		}
		if n > len(b) || p.Validate() != nil || p.Seq == 0 {
			t.Fatalf("decoded %+v (n %d of %d) that is not valid", p, n, len(b))
		}
		if again := appendRecord(nil, p); !bytes.Equal(again, b[:n]) {
			t.Fatalf("%+v re-encodes differently", p)
		}
	})
}

// FuzzOpen opens a log file with arbitrary records after the header: Open
// never fails on it, keeps exactly the valid prefix, and leaves a file that
// reopens the same.
func FuzzOpen(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, numbered(1)), numbered(2)))
	f.Add(append(appendRecord(nil, numbered(1)), 0, 0, 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, FileName), append([]byte(magic), tail...), 0o644)
		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		n, size := l.Len(), l.Size()
		if size+l.Dropped() != int64(len(magic)+len(tail)) {
			t.Fatalf("size %d + dropped %d != %d", size, l.Dropped(), len(magic)+len(tail))
		}
		l.Close()
		l2, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if l2.Len() != n || l2.Dropped() != 0 || l2.Size() != size {
			t.Fatalf("reopen: %d records dropped %d, want %d and 0", l2.Len(), l2.Dropped(), n)
		}
	})
}
