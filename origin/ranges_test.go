package origin

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	br := func(start, length int64) byteRange { return byteRange{start, length} }
	many := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = strings.Repeat("1", 0) + itoa(int64(i*10)) + "-" + itoa(int64(i*10+4))
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	cases := []struct {
		h    string
		size int64
		want []byteRange
		res  rangeResult
	}{
		{"bytes=0-99", 1000, []byteRange{br(0, 100)}, rangeOK},
		{"bytes=900-", 1000, []byteRange{br(900, 100)}, rangeOK},
		{"bytes=-100", 1000, []byteRange{br(900, 100)}, rangeOK},
		{"bytes=-2000", 1000, []byteRange{br(0, 1000)}, rangeOK},
		{"bytes=990-2000", 1000, []byteRange{br(990, 10)}, rangeOK},
		{"bytes=999-999", 1000, []byteRange{br(999, 1)}, rangeOK},
		{"BYTES=0-1", 1000, []byteRange{br(0, 2)}, rangeOK},
		{" bytes=0-1 ", 1000, []byteRange{br(0, 2)}, rangeOK},
		{"bytes=,0-1,,", 1000, []byteRange{br(0, 2)}, rangeOK},
		{"bytes= 0-1 , 5-6", 1000, []byteRange{br(0, 2), br(5, 2)}, rangeOK},
		{"bytes=20-29,0-9", 1000, []byteRange{br(20, 10), br(0, 10)}, rangeOK}, // client's order kept
		{"bytes=0-9,10-19", 1000, []byteRange{br(0, 10), br(10, 10)}, rangeOK}, // adjacent is fine
		{"bytes=0-0,-1", 1000, []byteRange{br(0, 1), br(999, 1)}, rangeOK},
		{"bytes=0-9,1000-1010,20-29", 1000, []byteRange{br(0, 10), br(20, 10)}, rangeOK},
		{"bytes=0-99999999999999999999999", 1000, []byteRange{br(0, 1000)}, rangeOK},
		{"bytes=-99999999999999999999999", 1000, []byteRange{br(0, 1000)}, rangeOK},
		{many(16), 1000, nil, rangeOK},
		// unsatisfiable: 416
		{"bytes=1000-", 1000, nil, rangeUnsatisfiable},
		{"bytes=1000-1000", 1000, nil, rangeUnsatisfiable},
		{"bytes=-0", 1000, nil, rangeUnsatisfiable},
		{"bytes=0-", 0, nil, rangeUnsatisfiable},
		{"bytes=-5", 0, nil, rangeUnsatisfiable},
		{"bytes=99999999999999999999999-", 1000, nil, rangeUnsatisfiable},
		// rejected: 416
		{many(17), 1000, nil, rangeTooMany},
		{"bytes=0-9,5-14", 1000, nil, rangeOverlap},
		{"bytes=0-,-1", 1000, nil, rangeOverlap},
		{"bytes=0-9,0-9", 1000, nil, rangeOverlap},
		{"bytes=" + strings.Repeat("0-0,", 100), 1000, nil, rangeTooMany},
		// ignored: 200
		{"", 1000, nil, rangeIgnore},
		{"bytes=", 1000, nil, rangeIgnore},
		{"bytes=,,", 1000, nil, rangeIgnore},
		{"items=0-5", 1000, nil, rangeIgnore},
		{"bytes 0-5", 1000, nil, rangeIgnore},
		{"bytes=5-2", 1000, nil, rangeIgnore},
		{"bytes=abc", 1000, nil, rangeIgnore},
		{"bytes=0-1,abc", 1000, nil, rangeIgnore},
		{"bytes=-", 1000, nil, rangeIgnore},
		{"bytes=1", 1000, nil, rangeIgnore},
		{"bytes=+1-2", 1000, nil, rangeIgnore},
		{"bytes=1--2", 1000, nil, rangeIgnore},
		{"bytes=0x10-0x20", 1000, nil, rangeIgnore},
		{"bytes=--1", 1000, nil, rangeIgnore},
	}
	for _, c := range cases {
		t.Run(c.h, func(t *testing.T) {
			got, res := parseRange(c.h, c.size, 16)
			if res != c.res {
				t.Fatalf("result %d, want %d (ranges %v)", res, c.res, got)
			}
			if c.want != nil && !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ranges %v, want %v", got, c.want)
			}
			checkRanges(t, got, res, c.size, 16)
		})
	}
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// checkRanges asserts what every answer of parseRange must satisfy.
func checkRanges(t *testing.T, rs []byteRange, res rangeResult, size int64, max int) {
	t.Helper()
	if (res == rangeOK) != (len(rs) > 0) {
		t.Fatalf("result %d with %d ranges", res, len(rs))
	}
	if len(rs) > max {
		t.Fatalf("%d ranges, max %d", len(rs), max)
	}
	total := int64(0)
	for _, r := range rs {
		if r.start < 0 || r.length <= 0 || r.end() > size {
			t.Fatalf("range %+v outside size %d", r, size)
		}
		total += r.length
	}
	if total > size {
		t.Fatalf("ranges cover %d bytes of %d", total, size)
	}
	if overlapping(rs) {
		t.Fatalf("overlapping ranges %v", rs)
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=5-", "bytes=0-0,-1", "bytes=1-2,3-4,5-6",
		"bytes=0-9,5-14", "bytes=99999999999999999999-", "bytes=5-2", "BYTES= 1 - 2 ,", "bytes=,,,"} {
		f.Add(s, int64(1000), uint8(16))
	}
	f.Add("bytes=0-", int64(0), uint8(1))
	f.Fuzz(func(t *testing.T, h string, size int64, max uint8) {
		if size < 0 || max == 0 {
			return
		}
		rs, res := parseRange(h, size, int(max))
		checkRanges(t, rs, res, size, int(max))
	})
}
