package httprange

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		size int64
		want []Range
		err  error
	}{
		{"bytes=0-4", 10, []Range{{0, 5}}, nil},
		{"bytes=5-", 10, []Range{{5, 5}}, nil},
		{"bytes=-3", 10, []Range{{7, 3}}, nil},
		{"bytes=-30", 10, []Range{{0, 10}}, nil},
		{"bytes=8-100", 10, []Range{{8, 2}}, nil},
		{"BYTES = 0-0", 10, []Range{{0, 1}}, nil},
		{"bytes=0-1, 5-6", 10, []Range{{0, 2}, {5, 2}}, nil},
		{"bytes=5-6,0-1", 10, []Range{{5, 2}, {0, 2}}, nil},
		{"bytes=0-4,2-8", 10, []Range{{0, 9}}, nil},
		{"bytes=0-1,2-3", 10, []Range{{0, 4}}, nil}, // adjacent
		{"bytes=4-5,0-1,1-4", 10, []Range{{0, 6}}, nil},
		{"bytes=20-30,0-0", 10, []Range{{0, 1}}, nil},
		{"bytes=20-", 10, nil, ErrUnsatisfiable},
		{"bytes=-0", 10, nil, ErrUnsatisfiable},
		{"bytes=0-", 0, nil, ErrUnsatisfiable},
		{"bytes=5-1", 10, nil, ErrIgnore},
		{"bytes=a-b", 10, nil, ErrIgnore},
		{"bytes=-", 10, nil, ErrIgnore},
		{"bytes=1", 10, nil, ErrIgnore},
		{"bytes=", 10, nil, ErrIgnore},
		{"items=0-1", 10, nil, ErrIgnore},
		{"bytes=+1-2", 10, nil, ErrIgnore},
		{"bytes=99999999999999999999-", 10, nil, ErrIgnore},
	}
	for _, c := range cases {
		got, err := Parse(c.in, c.size, 16)
		if !errors.Is(err, c.err) || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Parse(%q, %d) = %v, %v; want %v, %v", c.in, c.size, got, err, c.want, c.err)
		}
	}
	many := "bytes=" + strings.Repeat("0-0,", 17)
	if _, err := Parse(many, 10, 16); err != ErrIgnore {
		t.Errorf("17 ranges: %v", err)
	}
}

func TestMultipartLength(t *testing.T) {
	rs := []Range{{0, 2}, {10, 5}}
	parts, trailer, n := Multipart(rs, 100, "text/plain", "B")
	var total int64
	for _, p := range parts {
		total += int64(len(p.Header)) + p.Range.Length
	}
	total += int64(len(trailer))
	if total != n || !strings.Contains(parts[1].Header, "Content-Range: bytes 10-14/100") {
		t.Errorf("length %d vs %d; %q", total, n, parts[1].Header)
	}
}

// FuzzParse checks that whatever a client sends, the ranges returned are
// inside the representation, disjoint, at most max, and never add up to
// more than the representation.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"bytes=0-4", "bytes=-5", "bytes=5-", "bytes=0-1,1-2,3-4", "bytes=,,,", "bytes=9999999999-"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, s string, size int64) {
		if size < 0 || size > 1<<40 {
			return
		}
		rs, err := Parse(s, size, 16)
		if err != nil {
			if len(rs) != 0 {
				t.Fatal("ranges with an error")
			}
			return
		}
		if len(rs) == 0 || len(rs) > 16 {
			t.Fatalf("%q: %d ranges", s, len(rs))
		}
		var sum int64
		for i, r := range rs {
			if r.Start < 0 || r.Length <= 0 || r.Start+r.Length > size {
				t.Fatalf("%q size %d: range %v outside", s, size, r)
			}
			for _, o := range rs[i+1:] {
				if r.Start < o.Start+o.Length && o.Start < r.Start+r.Length {
					t.Fatalf("%q: overlapping %v %v", s, r, o)
				}
			}
			sum += r.Length
		}
		if sum > size {
			t.Fatalf("%q: %d bytes of %d", s, sum, size)
		}
	})
}
